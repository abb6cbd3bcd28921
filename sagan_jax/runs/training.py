"""``train_and_evaluate(config, workdir)``: the whole training run.

Validates the config, builds data, models and the jitted, sharded step,
resumes from the workdir's latest checkpoint if there is one, then trains to
``num_steps`` (or ``num_epochs``), writing scalars through the metric writers
(``config.logging``), sample grids, attention figures and checkpoints of the whole state. Rerunning the same
command continues where it stopped; raising ``num_steps`` extends a run.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from sagan_jax import data as data_lib
from sagan_jax import sharding
from sagan_jax.eval.evaluator import min_generated_samples
from sagan_jax.losses import get_loss
from sagan_jax.models import build_gan, is_conditional
from sagan_jax.ops.compiler_options import compiler_options
from sagan_jax.runs import evaluation, sampling, shared_evaluation
from sagan_jax.runtime import workdir as workdir_lib
from sagan_jax.runs.best_checkpoint import BestCheckpoint
from sagan_jax.runs.cadence import Cadence
from sagan_jax.runtime.compilation import RUN_ONCE, CompiledByShape, compile_waiting
from sagan_jax.runs.errors import NonFiniteLossError
from sagan_jax.runtime.metric_writer import MetricWriter, flat_hparams
from sagan_jax.runtime.progress import ConsoleProgress, DataWait
from sagan_jax.runs.sampling import Sampler
from sagan_jax.runtime.stop_signals import GracefulStop, TrainingStopped, signal_name
from sagan_jax.runtime.workdir import WorkdirError
from sagan_jax.runtime.workdir_lock import WorkdirLock, WorkdirLockedError
from sagan_jax.train.checkpoint import (Checkpointer, CheckpointError,
                                        IncompatibleCheckpointError, abstract_like)
from sagan_jax.train.config import ConfigError, ema_settings, total_steps, validate
from sagan_jax.train.optimizers import make_optimizers
from sagan_jax.train.state import GANState, init_gan_state
from sagan_jax.train.step import make_multi_step, make_train_step

logger = logging.getLogger(__name__)
CONSOLE_METRICS = ("d_loss", "g_loss", "d_real", "d_fake")  # the rest go to TensorBoard


def _check_finite(step: int, metrics: dict[str, Any], last_checkpoint: Optional[int]) -> None:
  """Raises if a loss of the dispatch that ended at ``step`` is not finite.

  A K-step dispatch carries every step's losses (``all_d_loss``/``all_g_loss``);
  the error names the first bad step.
  """
  # One device→host transfer for every loss (a cut-short dispatch's are a list of device
  # scalars: converting each alone would wait on the device once per step).
  metrics = jax.device_get({k: metrics[k] for k in ("d_loss", "g_loss", "all_d_loss",
                                                    "all_g_loss") if k in metrics})
  if "all_d_loss" in metrics:
    all_losses = np.stack([np.asarray(metrics["all_d_loss"]), np.asarray(metrics["all_g_loss"])])
    bad = np.flatnonzero(~np.all(np.isfinite(all_losses), axis=0))
    if bad.size:
      first = int(bad[0])
      step = step - all_losses.shape[1] + 1 + first
      metrics = {"d_loss": all_losses[0, first], "g_loss": all_losses[1, first]}
  losses = {k: float(metrics[k]) for k in ("d_loss", "g_loss")}
  if not all(np.isfinite(v) for v in losses.values()):
    kept = (f"the last checkpoint (step {last_checkpoint}) is intact"
            if last_checkpoint is not None else "no checkpoint was written")
    raise NonFiniteLossError(
        f"non-finite loss at step {step}: "
        + ", ".join(f"{k}={v}" for k, v in losses.items())
        + f"; training stopped and {kept}. Lower the learning rates or check the data.")


def _check_state_finite(trainer: "Trainer", step: int, state: GANState,
                        metrics: dict[str, Any], last_checkpoint: Optional[int]) -> None:
  """Refuses to checkpoint a state that is already NaN/inf although its step's
  losses were finite (e.g. an overflowing gradient): the next run would resume
  from it."""
  if trainer.state_is_finite(state):
    return
  kept = (f"the last checkpoint (step {last_checkpoint}) is intact"
          if last_checkpoint is not None else "no checkpoint was written")
  raise NonFiniteLossError(
      f"non-finite values in the training state after step {step} (its losses were "
      f"d_loss={float(metrics['d_loss'])}, g_loss={float(metrics['g_loss'])}); training "
      f"stopped without saving it and {kept}. Lower the learning rates or check the data.")


def _all_finite(tree) -> jax.Array:
  flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
           if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(flags)) if flags else jnp.bool_(True)


@dataclasses.dataclass(frozen=True)
class TrainSteps:
  """The jitted programs of a run and how their batches are sharded.

  Attributes:
    init: ``init() -> GANState``, the fresh state.
    train_step: ``train_step(state, batch) -> (state, metrics)``, one step; the state is
      donated (its buffers are reused for the new state).
    multi_step: the same over K batches stacked on a leading axis (a ``lax.scan``).
    batch_axis: the batch's axis in a step's input: 0, or 1 with d_steps > 1 (one real
      batch per D update stacked in front).
    batch_sharding: ``train_step``'s batch sharding (split over the mesh on ``batch_axis``).
    stacked_sharding: ``multi_step``'s (split on the axis after the stacking one).
  """
  init: Any
  train_step: Any
  multi_step: Any
  batch_axis: int
  batch_sharding: Any
  stacked_sharding: Any


def build_data(config: ml_collections.ConfigDict, mesh=None
               ) -> tuple[data_lib.Source, data_lib.Batcher]:
  """The run's images (``config.data``) and their batcher (``config.batching``): this
  process's part of each global batch, which must split over ``mesh`` (default: all
  devices). Raises `ConfigError` for a batch or labels that do not fit."""
  mesh = mesh if mesh is not None else sharding.make_mesh()
  source = data_lib.make_source(config.data)
  batcher = data_lib.Batcher(
      source, config.batching.batch_size, config.seed,
      drop_remainder=config.batching.drop_remainder, random_flip=config.data.random_flip,
      process_index=jax.process_index(), process_count=jax.process_count())
  try:
    sharding.check_divisible(config.batching.batch_size, mesh)
    if batcher.last_batch_size != config.batching.batch_size:
      sharding.check_divisible(batcher.last_batch_size, mesh, "final partial batch of each epoch")
    if config.model.num_classes is not None:  # before any compute: labels that fit the model
      data_lib.check_class_labels(source, config.model.num_classes)
  except (ValueError, data_lib.DataError) as error:  # one line, by train.py
    raise ConfigError(str(error)) from None
  return source, batcher


def build_models_and_optimizers(config: ml_collections.ConfigDict, image_shape):
  """``(generator, discriminator, g_tx, d_tx)``: the Flax modules ``config.model`` describes
  for images of ``image_shape`` (H, W, C), and their optax optimizers."""
  generator, discriminator = build_gan(config.model, image_shape)
  g_tx, d_tx = make_optimizers(config)
  return generator, discriminator, g_tx, d_tx


def build_steps(config: ml_collections.ConfigDict, generator, discriminator, g_tx, d_tx,
                image_shape, mesh=None) -> TrainSteps:
  """The jitted initial state, train step and K-step scan, sharded over ``mesh`` (default:
  all devices): the state replicated, each batch split over the devices."""
  mesh = mesh if mesh is not None else sharding.make_mesh()
  replicated = sharding.replicated(mesh)
  batch_axis = 0 if config.optimizer.d_steps == 1 else 1
  batch_sharding = sharding.batch_sharded_at(mesh, batch_axis)
  stacked_sharding = sharding.batch_sharded_at(mesh, batch_axis + 1)
  ema = ema_settings(config)
  options = compiler_options(mesh.devices.flat[0].platform)
  step_fn = make_train_step(generator, discriminator, g_tx, d_tx, get_loss(config.loss),
                            config.model.z_dim, num_classes=config.model.num_classes,
                            d_steps=config.optimizer.d_steps, ema=ema)
  init = jax.jit(functools.partial(
      init_gan_state, generator, discriminator, seed=config.seed, z_dim=config.model.z_dim,
      image_shape=image_shape, g_tx=g_tx, d_tx=d_tx, conditional=is_conditional(config.model),
      ema=ema is not None), out_shardings=replicated, compiler_options=options)
  train_step = jax.jit(step_fn, in_shardings=(replicated, batch_sharding),
                       out_shardings=(replicated, replicated), donate_argnums=0,
                       compiler_options=options)
  multi_step = jax.jit(make_multi_step(step_fn), in_shardings=(replicated, stacked_sharding),
                       out_shardings=(replicated, replicated), donate_argnums=0,
                       compiler_options=options)
  return TrainSteps(init, train_step, multi_step, batch_axis, batch_sharding, stacked_sharding)


def build_samplers(config: ml_collections.ConfigDict, generator) -> tuple[Sampler, Sampler]:
  """``(sampler, attention_sampler)``: the grid's images, and the attention maps of the
  few samples a figure shows."""
  sampler = Sampler(generator, config.model.z_dim, num_classes=config.model.num_classes)
  attention_sampler = Sampler(generator, config.model.z_dim, return_attention=True,
                              num_classes=config.model.num_classes)
  return sampler, attention_sampler


class Trainer:
  """The pieces of a run, built once from the config (no training loop state).

  Each piece comes from a builder above that a notebook can call alone.
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh=None):
    validate(config)
    self.config = config
    self.mesh = mesh if mesh is not None else sharding.make_mesh()
    self.source, self.batcher = build_data(config, self.mesh)
    self.data_record = data_lib.data_record(self.source, config.data)  # kept with checkpoints
    if config.eval.every and config.eval.num_samples < min_generated_samples():
      raise ConfigError(f"config.eval.num_samples must be at least {min_generated_samples()} "
                        f"(precision/recall's k-NN), got {config.eval.num_samples}")
    self.num_classes = config.model.num_classes
    self.d_steps = config.optimizer.d_steps
    self.total_steps = total_steps(config, self.batcher)
    self.image_shape = self.source.image_shape
    self.ema = ema_settings(config)
    self.generator, self.discriminator, self.g_tx, self.d_tx = build_models_and_optimizers(
        config, self.image_shape)
    steps = build_steps(config, self.generator, self.discriminator, self.g_tx, self.d_tx,
                        self.image_shape, self.mesh)
    self._init, self.train_step, self.multi_step = steps.init, steps.train_step, steps.multi_step
    self.batch_axis, self.batch_sharding = steps.batch_axis, steps.batch_sharding
    self.stacked_sharding = steps.stacked_sharding
    self.sampler, self.attention_sampler = build_samplers(config, self.generator)
    # Called while the main thread waits for a compilation (the loop's stop check).
    self.while_compiling: Optional[Callable[[], None]] = None
    # What `dispatch` runs, each compiled once per batch shape: at most one K-step scan,
    # one step, and one step of the epoch's partial batch.
    self._compiled_step = CompiledByShape(self.train_step, self._describe_program,
                                          while_waiting=self._while_compiling)
    self._compiled_multi_step = CompiledByShape(self.multi_step, self._describe_program,
                                                while_waiting=self._while_compiling)
    self._all_finite = jax.jit(_all_finite)
    self._compiled_all_finite = None
    self._abstract_state = None

  def _while_compiling(self) -> None:
    if self.while_compiling is not None:
      self.while_compiling()

  def _describe_program(self, batch) -> str:
    """The log's name of the program that runs ``batch`` (arrays or shape structs)."""
    shape = batch["image"].shape
    stacked = len(shape) - len(self.image_shape) - self.batch_axis > 1
    size = shape[self.batch_axis + stacked]
    if stacked:
      return f"the train step scanned over {shape[0]} batches"
    if size != self.batcher.batch_size and self.batcher.batches_per_epoch > 1:
      return f"the train step on each epoch's last, partial batch ({size} images)"
    return "the train step"

  def state_is_finite(self, state: GANState) -> bool:
    """Whether every float in ``state`` (params, SN/BN state, Adam moments) is finite."""
    if self._compiled_all_finite is None:
      self._compiled_all_finite = self._all_finite.lower(state).compile(RUN_ONCE)
    return bool(self._compiled_all_finite(state))

  def abstract_state(self) -> GANState:
    """The state's shapes and dtypes (``jax.ShapeDtypeStruct``s): a restore target."""
    return jax.eval_shape(self._init)

  def abstract_batch(self, steps: int, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The shapes of a dispatch's device batch: one step's (``steps == 1``), or ``steps``
    batches stacked, each of ``batch_size`` images (per D update)."""
    leading = (batch_size,) if self.d_steps == 1 else (self.d_steps, batch_size)
    where = self.batch_sharding
    if steps > 1:
      leading, where = (steps, *leading), self.stacked_sharding
    batch = {"image": jax.ShapeDtypeStruct((*leading, *self.image_shape), jnp.float32,
                                           sharding=where)}
    if self.num_classes is not None:
      batch["label"] = jax.ShapeDtypeStruct(leading, jnp.int32, sharding=where)
    return batch

  def compile_in_background(self, steps: int, batch_size: int) -> None:
    """Starts compiling the program of a dispatch of ``steps`` steps of ``batch_size``
    (see `dispatch`) on a thread, unless it is compiled or compiling already: it then
    overlaps other work (the initial state's compilation, the data, earlier steps)."""
    compiled = self._compiled_multi_step if steps > 1 else self._compiled_step
    batch = self.abstract_batch(steps, batch_size)
    if not compiled.has(batch):
      if self._abstract_state is None:  # (traced once: it takes seconds for a large model)
        self._abstract_state = abstract_like(self.abstract_state(),
                                             sharding.replicated(self.mesh))
      compiled.compile_in_background(self._abstract_state, batch)

  def init_state(self) -> GANState:
    """A fresh state, compiled at XLA's -O0 (it runs once: compiling dominates)."""
    return compile_waiting(self._init, what="the initial state", compiler_options=RUN_ONCE,
                           while_waiting=self._while_compiling)()

  @property
  def batch_keys(self) -> tuple[str, ...]:
    """What a step reads of a batch: images, and their labels for a conditional model."""
    return ("image",) if self.num_classes is None else ("image", "label")

  def host_batch(self, step: int) -> dict[str, Any]:
    """This process's part of the batch of training step ``step``: the batcher's batch,
    or with d_steps > 1 its batches ``step·d … step·d + d − 1`` stacked."""
    if self.d_steps == 1:
      batch = self.batcher.batch(step)
    else:
      parts = [self.batcher.batch(step * self.d_steps + i) for i in range(self.d_steps)]
      batch = {key: np.stack([part[key] for part in parts]) for key in self.batch_keys}
    if self.num_classes is not None and getattr(self.source, "labels", None) is None:
      # A streaming source's labels arrive with its batches: checked here, not up front.
      data_lib.check_label_range(batch["label"].reshape(-1), self.num_classes,
                                 f"batch of step {step}: {self.source.description}")
    return batch

  def device_batch(self, host_batch: dict[str, Any]) -> dict[str, jax.Array]:
    """A host batch (this process's slice) → the global batch, sharded over the mesh."""
    return {key: sharding.global_batch(host_batch[key], self.batch_sharding)
            for key in self.batch_keys}

  def stacked_device_batch(self, host_batches: list[dict[str, Any]]) -> dict[str, jax.Array]:
    """K host batches → one (K, B, …) global array per key for ``multi_step``."""
    return {key: sharding.global_batch(np.stack([b[key] for b in host_batches]),
                                       self.stacked_sharding) for key in self.batch_keys}

  def dispatch(self, state: GANState, host_batches: list[dict[str, Any]]):
    """Runs the steps of ``host_batches``: one scan when they are K
    (``steps_per_dispatch``), else one jitted step each.

    A dispatch cut short (where the loop logs, samples or saves) thus reuses the
    one-step program instead of compiling a scan of its length: a run compiles at most
    a K-step scan and a step per batch shape. Metrics are the last step's, with every
    step's losses (``all_d_loss``/``all_g_loss``) for the finiteness check.
    """
    if len(host_batches) == self.config.steps_per_dispatch > 1:
      return self._compiled_multi_step(state, self.stacked_device_batch(host_batches))
    every = []
    for host_batch in host_batches:
      state, metrics = self._compiled_step(state, self.device_batch(host_batch))
      every.append(metrics)
    if len(every) > 1:  # (device scalars, read on the host when checked)
      metrics = {**metrics, "all_d_loss": [m["d_loss"] for m in every],
                 "all_g_loss": [m["g_loss"] for m in every]}
    return state, metrics

  def batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of ``step``, sharded over the mesh."""
    return self.device_batch(self.host_batch(step))


def make_run_evaluator(trainer: Trainer, workdir: str):
  """The evaluator of ``config.eval`` for this process: process 0's scores (against the
  reference: the training data's statistics from the trainer's own source when those
  are the reference), the others' only measure their share (`shared_evaluation`)."""
  config = trainer.config
  return evaluation.make_evaluator(config, workdir=workdir, source=trainer.source,
                                   measure_only=jax.process_index() != 0,
                                   batch_size=config.eval.batch_size, seed=config.seed)


def evaluate_state(evaluator, trainer: Trainer, state: GANState, step: int, workdir: str,
                   writer: MetricWriter) -> Optional[dict[str, Any]]:
  """Scores ``state``'s generator as ``config.eval`` says → eval/eval_<step>_….json and the
  ``eval/*`` scalars; returns the result. A collective: every process generates and
  extracts its share of the samples; process 0 scores, writes and returns the result,
  the others return None."""
  config = trainer.config
  scored = shared_evaluation.evaluate_in_shares(
      evaluator, trainer.generator, state.generator_variables(config.ema.use_for_eval), config,
      num_samples=config.eval.num_samples, batch_size=config.eval.batch_size, seed=config.seed)
  if scored is None:
    return None
  result = {"step": step, "workdir": os.path.abspath(workdir), "seed": config.seed, **scored}
  evaluation.write_results(workdir, result, writer)
  logger.info("eval step %d: %s", step, evaluation.summary_line(result))
  if result.get("collapsed"):
    logger.warning("eval step %d: collapsed output: %s", step,
                   "; ".join(result["collapse_reasons"]))
  return result


def write_samples(trainer: Trainer, state: GANState, workdir: str, writer: MetricWriter) -> None:
  """Sample grid and attention figure of ``state`` (process 0 only), from the
  run's fixed noise (seed ``config.seed``: what ``sample.py --seed`` redraws), by
  the one sample-writing path (`sampling.write_training_samples`)."""
  if jax.process_index() != 0:
    return
  step = int(state.step)
  written = sampling.write_training_samples(
      trainer.sampler, trainer.attention_sampler,
      state.generator_variables(trainer.config.ema.use_for_eval), trainer.config, workdir, step)
  writer.write_images(step, written.figures)
  logger.info("step %d: wrote %s", step,
              " and ".join(os.path.abspath(f.path) for f in written.files))


def _batch_description(batcher: data_lib.Batcher) -> str:
  """The batch size each step really uses (the config's, or less)."""
  if batcher.batches_per_epoch == 1 and batcher.last_batch_size < batcher.batch_size:
    return (f"batch {batcher.last_batch_size} (all {batcher.num_examples} images: "
            f"batch_size {batcher.batch_size} is larger than the data)")
  if batcher.last_batch_size != batcher.batch_size:
    return f"batch {batcher.batch_size} (the last of each epoch {batcher.last_batch_size})"
  return f"batch {batcher.batch_size}"


def _restore_newest(trainer: Trainer, workdir: str):
  """The newest intact checkpoint's state, read-only (a workdir whose checkpoint
  belongs to another config is left untouched: a writable checkpointer would
  already clean up temporary folders). Returns ``(step, state, damaged)``;
  raises if every checkpoint is damaged."""
  reader = Checkpointer(workdir, read_only=True)
  try:
    def read(step):
      reader.check_compatible(trainer.config, step, trainer.data_record)  # before any tracing
      abstract = abstract_like(trainer.abstract_state(), sharding.replicated(trainer.mesh))
      return reader.restore(step, abstract)
    step, state, damaged = reader.read_newest(read, propagate=(IncompatibleCheckpointError,))
  finally:
    reader.close()
  if step is None and damaged:
    raise CheckpointError(
        f"no checkpoint in {reader.directory} restores ("
        + "; ".join(f"step {d.step}: {d.reason}" for d in damaged)
        + "); nothing was moved or deleted. Move the folder away to start afresh.")
  return step, state, damaged


def _move_damaged_aside(checkpointer: Checkpointer, damaged) -> None:
  """Moves the damaged steps newer than the one resumed into checkpoints/corrupt/
  (process 0; the others wait), so saves never meet them again."""
  if jax.process_index() == 0:
    for entry in damaged:
      where = checkpointer.move_aside(entry.step)
      logger.warning("Checkpoint step %d is damaged (%s): moved to %s.", entry.step,
                     entry.reason, where)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("sagan_jax: damaged checkpoints moved aside")
    checkpointer.reload()


def _lock_workdir(workdir: str) -> Optional[WorkdirLock]:
  """Process 0 takes the workdir's lock; every process learns whether it got it,
  so a refused multi-host run stops everywhere instead of hanging."""
  lock, refusal = None, ""
  if jax.process_index() == 0:
    try:
      lock = WorkdirLock(workdir).acquire()
    except (WorkdirLockedError, WorkdirError) as error:
      if jax.process_count() == 1:
        raise
      refusal = str(error)
  if jax.process_count() > 1:
    refused = bool(multihost_utils.broadcast_one_to_all(np.int32(bool(refusal))))
    if refused:
      raise WorkdirLockedError(refusal or f"process 0 could not lock {workdir} (see its log)")
  return lock


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  """Trains (or resumes) the run described by ``config`` in ``workdir``.

  One trainer per workdir (a lock, taken before anything is written). SIGTERM
  or Ctrl-C stop it after the current step with a checkpoint
  (`TrainingStopped`); rerunning continues exactly where it stopped.
  """
  trainer = Trainer(config)
  workdir_lib.prepare(workdir)
  lock = _lock_workdir(workdir)
  try:
    with GracefulStop() as stop:
      return _train(trainer, workdir, stop)
  finally:
    if lock is not None:
      lock.release()


@dataclasses.dataclass
class _Progress:
  """Where a run stands: its last dispatched and last checkpointed steps."""
  dispatched: int
  last_checkpoint: Optional[int]

  @property
  def nothing_unsaved(self) -> bool:
    return self.dispatched == (self.last_checkpoint or 0)


def _stop_while_compiling(stop: GracefulStop, run: _Progress) -> None:
  """Called while the loop waits for a compilation: a stop request with nothing trained
  since the last checkpoint (or at all) ends the run now instead of after the compile.
  (One process only: several must stop after the same step, see stop_signals.)"""
  if stop.received is None or not run.nothing_unsaved or jax.process_count() > 1:
    return
  kept = (f"the checkpoint of step {run.last_checkpoint} is the latest state"
          if run.last_checkpoint is not None else "no step had run")
  message = (f"Stopped by {signal_name(stop.received)} while compiling: {kept}, nothing to "
             "save; rerun the same command to continue.")
  logger.warning(message)
  raise TrainingStopped(stop.received, run.dispatched, message)


_LOOKAHEAD_STEPS = 10_000  # how far ahead the programs a run needs are looked for


def _program(cadence: Cadence, trainer: Trainer, last: int, size: int) -> tuple[int, int]:
  """``(steps, batch size)`` of the program of a dispatch of ``size`` steps ending at
  ``last``: a K-step scan when it holds K, else single steps (see `Trainer.dispatch`)."""
  batch = (trainer.batcher.last_batch_size if cadence.is_partial(last - 1)
           else trainer.batcher.batch_size)
  return (size if size == cadence.steps_per_dispatch else 1), batch


def _compile_ahead(trainer: Trainer, cadence: Cadence, start: int, first_only: bool) -> None:
  """Starts compiling, on threads, the programs of the dispatches after ``start``: the
  first one's (overlapping the initial state's compilation), or all the others (the
  epoch's partial batch, a dispatch cut short), overlapping the first steps."""
  programs = []
  for last, size in cadence.dispatches(start, limit=_LOOKAHEAD_STEPS):
    if _program(cadence, trainer, last, size) not in programs:
      programs.append(_program(cadence, trainer, last, size))
    if first_only:
      break
  for program in programs:
    trainer.compile_in_background(*program)


def _train(trainer: Trainer, workdir: str, stop: GracefulStop) -> GANState:
  config = trainer.config
  latest, state, damaged = _restore_newest(trainer, workdir)
  checkpointer = Checkpointer(workdir, keep=config.keep_checkpoints,
                              data_record=trainer.data_record)
  run = _Progress(dispatched=latest or 0, last_checkpoint=latest)
  trainer.while_compiling = functools.partial(_stop_while_compiling, stop, run)
  cadence = Cadence.of(config, trainer.total_steps, trainer.batcher)
  try:
    _compile_ahead(trainer, cadence, latest or 0, first_only=True)
    _move_damaged_aside(checkpointer, damaged)
    if latest is not None:
      logger.info("Resumed from %s at step %d.", checkpointer.directory, latest)
    else:
      state = trainer.init_state()
    logger.info("Data: %s; %d steps of %s on %d device(s) (%d step(s) per epoch).",
                trainer.source.description, cadence.total, _batch_description(trainer.batcher),
                trainer.mesh.devices.size, trainer.batcher.batches_per_epoch)
    if int(state.step) >= cadence.total:  # not a start: config.json and its history stay
      logger.info("Nothing to do: the checkpoint is at step %d of %d.", int(state.step),
                  cadence.total)
      return state
    if jax.process_index() == 0:
      workdir_lib.write_config(config, workdir, start_step=latest or 0,
                               data_record=trainer.data_record)
    return _run_steps(trainer, cadence, state, workdir, checkpointer, stop, run)
  finally:
    trainer.while_compiling = None
    _close_quietly(checkpointer)


def _run_steps(trainer: Trainer, cadence: Cadence, state: GANState, workdir: str,
               checkpointer: Checkpointer, stop: GracefulStop, run: _Progress) -> GANState:
  """Steps ``state.step + 1 … total`` in dispatches, each followed by what `Cadence` says
  is due there; returns the last state (raises `TrainingStopped` after a stop's save)."""
  config, start, total = trainer.config, int(state.step), cadence.total
  is_chief = jax.process_index() == 0
  evaluator = best = None
  if config.eval.every:  # first: a missing weight file stops before any writer
    evaluator = make_run_evaluator(trainer, workdir)
    best = BestCheckpoint(workdir, config.eval.best_metric)
  writer = evaluation.run_writer(config, workdir, enabled=is_chief,
                                 resume_step=start if start else None)
  progress, waits = ConsoleProgress(total), DataWait()
  pending = None  # (step, metrics) of a dispatch with nothing due: checked one dispatch
  group: list[dict[str, Any]] = []  # late, so the device never idles
  stopped_by = None
  try:
    writer.write_hparams(flat_hparams(config.to_dict()))
    with data_lib.Prefetcher(trainer.host_batch, start_step=start, stop_step=total,
                             buffer_size=max(config.batching.prefetch, 1)) as batches:
      for step in range(start + 1, total + 1):
        group.append(waits.next(batches))
        if not cadence.ends_dispatch(step, len(group)):
          continue
        first = step - len(group) == start  # the run's first dispatch
        state, metrics = trainer.dispatch(state, group)
        run.dispatched, group = step, []
        if first:
          _compile_ahead(trainer, cadence, step, first_only=False)
        checkpointer.check_for_errors()  # a failed background save stops the run here
        if pending is not None:
          _check_finite(*pending, run.last_checkpoint)
        stopped_by = stop.agreed(after=metrics)
        duties = cadence.duties(step)
        save = duties.checkpoint or stopped_by is not None
        pending = None if duties.any or save else (step, metrics)
        if pending is None:  # never log, sample, evaluate or save a diverged state
          _check_finite(step, metrics, run.last_checkpoint)
        _report(step, metrics, progress, waits, writer, log=duties.log, first=first)
        if save:  # a finite loss can come with non-finite gradients: check the state too
          _check_state_finite(trainer, step, state, metrics, run.last_checkpoint)
        if stopped_by is None and duties.sample:
          write_samples(trainer, state, workdir, writer)
        if stopped_by is None and duties.evaluate and evaluator is not None:
          best.update(step, evaluate_state(evaluator, trainer, state, step, workdir, writer),
                      state, config)
        if save:
          checkpointer.save(step, state, config)
          run.last_checkpoint = step
          logger.info("step %d: saving checkpoint %s (in the background)", step,
                      os.path.join(checkpointer.directory, str(step)))
        if stopped_by is not None:
          break
    checkpointer.wait()  # a failure of the last save is reported like any other
  finally:
    if best is not None:
      best.close()
    writer.close()
  if stopped_by is not None and run.last_checkpoint < total:  # (at the last step: just done)
    message = (f"Stopped by {signal_name(stopped_by)} after step {run.last_checkpoint}: "
               f"checkpoint saved; rerun the same command to continue.")
    logger.warning(message)
    raise TrainingStopped(stopped_by, run.last_checkpoint, message)
  if is_chief:
    where = os.path.abspath(workdir)
    curves = (f"; `tensorboard --logdir {where}`"
              if "tensorboard" in evaluation.logging_settings(config).writers else "")
    logger.info("done: %d steps, checkpoints in %s, samples in %s%s", total,
                os.path.abspath(checkpointer.directory),
                os.path.abspath(workdir_lib.samples_dir(workdir)), curves)
  return state


def _report(step: int, metrics: dict[str, Any], progress: ConsoleProgress, waits: DataWait,
            writer: MetricWriter, *, log: bool, first: bool) -> None:
  """The progress line and scalars where ``log`` is due, the line alone after the run's
  ``first`` dispatch (a newcomer sees the run move right after the compilation), and
  one warning when the steps wait on the input pipeline."""
  if not (log or first):
    progress.update(step)
    return
  scalars = jax.device_get({k: v for k, v in metrics.items() if not k.startswith("all_")})
  line = progress.update(step, {k: scalars[k] for k in CONSOLE_METRICS})
  if jax.process_index() == 0:  # one progress line per run, not one per host
    logger.info(line)
  if first:
    waits.start()  # the first dispatch's wall time is mostly compilation
  if not log:
    return
  if progress.tracker.rate is not None:
    scalars["steps_per_sec"] = progress.tracker.rate
  scalars["data_wait"] = waits.interval()
  writer.write_scalars(step, scalars)
  if waits.starved():
    logger.warning("step %d: %.0f%% of the time since the first step went to waiting for the "
                   "next batch: the input pipeline is the bottleneck (raise "
                   "config.batching.prefetch, or keep the images in a faster format, e.g. "
                   "in memory).", step, 100 * waits.fraction)


def _close_quietly(checkpointer: Checkpointer) -> None:
  """Closes the checkpointer on the way out. If an error is already on its way,
  a failing save must not replace it (the error says which checkpoint is intact);
  otherwise `Checkpointer.wait` has already reported any failure."""
  try:
    checkpointer.close()
  except CheckpointError as error:
    logger.warning("%s", error)
