"""``train_and_evaluate(config, workdir)``: the whole training run.

Validates the config, builds data, models and the jitted, sharded step,
resumes from the workdir's latest checkpoint if there is one, then trains to
``num_steps`` (or ``num_epochs``), writing TensorBoard scalars, sample grids,
attention figures and checkpoints of the whole state. Rerunning the same
command continues where it stopped; raising ``num_steps`` extends a run.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Optional

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
from sagan_jax.runs import evaluation, sampling
from sagan_jax.runtime import workdir as workdir_lib
from sagan_jax.runs.best_checkpoint import BestCheckpoint
from sagan_jax.runtime.compilation import RUN_ONCE, CompiledByShape, compile_reported
from sagan_jax.runs.errors import NonFiniteLossError
from sagan_jax.runtime.metric_writer import MetricWriter, flat_hparams
from sagan_jax.runtime.progress import ConsoleProgress
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


class Trainer:
  """The pieces of a run, built once from the config (no training loop state)."""

  def __init__(self, config: ml_collections.ConfigDict, mesh=None):
    validate(config)
    self.config = config
    self.mesh = mesh if mesh is not None else sharding.make_mesh()
    self.source = data_lib.make_source(config.data)
    self.data_record = data_lib.data_record(self.source, config.data)  # kept with checkpoints
    self.batcher = data_lib.Batcher(
        self.source, config.batching.batch_size, config.seed,
        drop_remainder=config.batching.drop_remainder, random_flip=config.data.random_flip,
        process_index=jax.process_index(), process_count=jax.process_count())
    try:
      sharding.check_divisible(config.batching.batch_size, self.mesh)
      if self.batcher.last_batch_size != config.batching.batch_size:
        sharding.check_divisible(self.batcher.last_batch_size, self.mesh,
                                 "final partial batch of each epoch")
    except ValueError as error:  # a config error: reported as one line by train.py
      raise ConfigError(str(error)) from None
    if config.eval.every and config.eval.num_samples < min_generated_samples():
      raise ConfigError(f"config.eval.num_samples must be at least {min_generated_samples()} "
                        f"(precision/recall's k-NN), got {config.eval.num_samples}")
    self.num_classes = config.model.num_classes
    if self.num_classes is not None:  # before any compute: labels that fit the model
      try:
        data_lib.check_class_labels(self.source, self.num_classes)
      except data_lib.DataError as error:
        raise ConfigError(str(error)) from None
    self.d_steps = config.optimizer.d_steps
    self.total_steps = total_steps(config, self.batcher)
    self.image_shape = self.source.image_shape
    self.generator, self.discriminator = build_gan(config.model, self.image_shape)
    self.g_tx, self.d_tx = make_optimizers(config)
    replicated = sharding.replicated(self.mesh)
    # A step's batch: (B, …), or (d_steps, B, …) with one real batch per D update.
    self.batch_axis = 0 if self.d_steps == 1 else 1
    self.batch_sharding = sharding.batch_sharded_at(self.mesh, self.batch_axis)
    self.ema = ema_settings(config)
    step_fn = make_train_step(self.generator, self.discriminator, self.g_tx, self.d_tx,
                              get_loss(config.loss), config.model.z_dim,
                              num_classes=self.num_classes, d_steps=self.d_steps, ema=self.ema)
    # The state is donated: its buffers are reused for the new state.
    self.train_step = jax.jit(step_fn, in_shardings=(replicated, self.batch_sharding),
                              out_shardings=(replicated, replicated), donate_argnums=0)
    # K steps per dispatch: batches stacked on a leading axis, split on the next.
    self.stacked_sharding = sharding.batch_sharded_at(self.mesh, self.batch_axis + 1)
    self.multi_step = jax.jit(make_multi_step(step_fn),
                              in_shardings=(replicated, self.stacked_sharding),
                              out_shardings=(replicated, replicated), donate_argnums=0)
    # What `dispatch` runs: compiled once per batch shape, with a line before and after.
    self._compiled_step = CompiledByShape(self.train_step, "the train step")
    self._compiled_multi_step = CompiledByShape(
        self.multi_step, f"the train step scanned over {config.steps_per_dispatch} batches")
    self._init = jax.jit(functools.partial(
        init_gan_state, self.generator, self.discriminator, seed=config.seed,
        z_dim=config.model.z_dim, image_shape=self.image_shape, g_tx=self.g_tx,
        d_tx=self.d_tx, conditional=is_conditional(config.model), ema=self.ema is not None),
        out_shardings=replicated)
    # The grid's images, and the attention maps of the few samples a figure shows.
    self.sampler = Sampler(self.generator, config.model.z_dim, num_classes=self.num_classes)
    self.attention_sampler = Sampler(self.generator, config.model.z_dim, return_attention=True,
                                     num_classes=self.num_classes)
    self._all_finite = jax.jit(_all_finite)
    self._compiled_all_finite = None

  def state_is_finite(self, state: GANState) -> bool:
    """Whether every float in ``state`` (params, SN/BN state, Adam moments) is finite."""
    if self._compiled_all_finite is None:
      self._compiled_all_finite = self._all_finite.lower(state).compile(RUN_ONCE)
    return bool(self._compiled_all_finite(state))

  def abstract_state(self) -> GANState:
    """The state's shapes and dtypes (``jax.ShapeDtypeStruct``s): a restore target."""
    return jax.eval_shape(self._init)

  def compile_first_step_in_background(self) -> None:
    """Starts compiling the first dispatch's program (one step of the full batch) on a
    thread, so that it overlaps the initial state's compilation and the data loading."""
    if self.config.steps_per_dispatch != 1:
      return  # the first dispatch may be a scan of several steps: compiled on first use
    leading = (self.config.batching.batch_size,)
    if self.d_steps > 1:
      leading = (self.d_steps, *leading)
    batch = {"image": jax.ShapeDtypeStruct((*leading, *self.image_shape), jnp.float32,
                                           sharding=self.batch_sharding)}
    if self.num_classes is not None:
      batch["label"] = jax.ShapeDtypeStruct(leading, jnp.int32, sharding=self.batch_sharding)
    state = abstract_like(self.abstract_state(), sharding.replicated(self.mesh))
    self._compiled_step.compile_in_background(state, batch)

  def init_state(self) -> GANState:
    """A fresh state, compiled at XLA's -O0 (it runs once: compiling dominates)."""
    return compile_reported(self._init, what="the initial state",
                            compiler_options=RUN_ONCE)()

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
    """Runs the steps of ``host_batches``: one jitted step, or a scan over several."""
    if len(host_batches) == 1:
      return self._compiled_step(state, self.device_batch(host_batches[0]))
    return self._compiled_multi_step(state, self.stacked_device_batch(host_batches))

  def batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of ``step``, sharded over the mesh."""
    return self.device_batch(self.host_batch(step))


def _ends_dispatch(step: int, config, total: int, batcher: data_lib.Batcher,
                   group_size: int) -> bool:
  """Whether the dispatch group ends after (1-based) ``step``.

  A group ends when it holds ``steps_per_dispatch`` steps, at every step where
  the loop logs, samples, evaluates or checkpoints (so those happen exactly
  where configured), and before a batch of another size (the partial batch
  at an epoch's end), since a scan needs equal shapes.
  """
  if group_size >= config.steps_per_dispatch or step == total:
    return True
  for every in (config.log_every, config.sample_every, config.checkpoint_every,
                config.eval.every):
    if every and step % every == 0:
      return True
  # ``step`` steps are done; the next one is index ``step`` (0-based). Only an
  # epoch's last batch can be smaller, so its size follows from the position
  # alone (no need to build the epoch's permutation here).
  def size(index):
    last = index % batcher.batches_per_epoch == batcher.batches_per_epoch - 1
    return batcher.last_batch_size if last else batcher.batch_size
  return size(step) != size(step - 1)


def evaluate_state(evaluator, trainer: Trainer, state: GANState, step: int, workdir: str,
                   writer: MetricWriter) -> dict[str, Any]:
  """Scores ``state``'s generator as ``config.eval`` says → eval/eval_<step>_….json and the
  ``eval/*`` scalars; returns the result."""
  config = trainer.config
  result = {"step": step, "workdir": os.path.abspath(workdir), "seed": config.seed}
  result.update(evaluation.evaluate_generator(
      trainer.generator, state.generator_variables(config.ema.use_for_eval), config,
      num_samples=config.eval.num_samples, batch_size=config.eval.batch_size, seed=config.seed,
      evaluator=evaluator))
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
  logger.info("step %d: wrote %s", step, " and ".join(f.path for f in written.files))


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


def _train(trainer: Trainer, workdir: str, stop: GracefulStop) -> GANState:
  config = trainer.config
  is_chief = jax.process_index() == 0
  latest, state, damaged = _restore_newest(trainer, workdir)
  checkpointer = Checkpointer(workdir, keep=config.keep_checkpoints,
                              data_record=trainer.data_record)
  if (latest or 0) < trainer.total_steps:
    trainer.compile_first_step_in_background()
  _move_damaged_aside(checkpointer, damaged)
  if latest is not None:
    logger.info("Resumed from %s at step %d.", checkpointer.directory, latest)
  else:
    state = trainer.init_state()
  if is_chief:
    workdir_lib.write_config(config, workdir, start_step=latest or 0,
                             data_record=trainer.data_record)
  start = int(state.step)
  total = trainer.total_steps
  logger.info("Data: %s; %d steps of %s on %d device(s) (%d step(s) per epoch).",
              trainer.source.description, total, _batch_description(trainer.batcher),
              trainer.mesh.devices.size, trainer.batcher.batches_per_epoch)
  if start >= total:
    logger.info("Nothing to do: the checkpoint is at step %d of %d.", start, total)
    checkpointer.close()
    return state

  evaluator = best = None
  if config.eval.every and is_chief:  # first: a missing weight file stops before any writer
    evaluator = evaluation.make_evaluator(config, workdir=workdir,
                                          batch_size=config.eval.batch_size, seed=config.seed)
    best = BestCheckpoint(workdir, config.eval.best_metric)
  writer = evaluation.run_writer(config, workdir, enabled=is_chief,
                                 resume_step=start if start else None)
  writer.write_hparams(flat_hparams(config.to_dict()))
  progress = ConsoleProgress(total)
  last_checkpoint = latest
  pending = None  # (step, metrics) checked one dispatch late so the device never idles
  group: list[dict[str, Any]] = []
  stopped_by = None
  try:
    with data_lib.Prefetcher(trainer.host_batch, start_step=start, stop_step=total,
                             buffer_size=max(config.batching.prefetch, 1)) as batches:
      for step in range(start + 1, total + 1):
        group.append(next(batches))
        if not _ends_dispatch(step, config, total, trainer.batcher, len(group)):
          continue
        state, metrics = trainer.dispatch(state, group)
        group = []
        checkpointer.check_for_errors()  # a failed background save stops the run here
        if pending is not None:
          _check_finite(*pending, last_checkpoint)
        pending = (step, metrics)
        stopped_by = stop.agreed(after=metrics)
        if step % config.log_every == 0 or step == total:
          _check_finite(step, metrics, last_checkpoint)
          scalars = {k: v for k, v in jax.device_get(metrics).items()
                     if not k.startswith("all_")}
          line = progress.update(step, {k: scalars[k] for k in CONSOLE_METRICS})
          if progress.tracker.rate is not None:
            scalars["steps_per_sec"] = progress.tracker.rate
          writer.write_scalars(step, scalars)
          if is_chief:  # one progress line per run, not one per host
            logger.info(line)
        else:
          progress.update(step)
        save = step % config.checkpoint_every == 0 or step == total or stopped_by is not None
        if save:
          # Never save (or sample) a diverged state: check this step's losses and
          # the state itself (a finite loss can come with non-finite gradients).
          _check_finite(step, metrics, last_checkpoint)
          _check_state_finite(trainer, step, state, metrics, last_checkpoint)
        if stopped_by is None:
          if step % config.sample_every == 0 or step == total:
            _check_finite(step, metrics, last_checkpoint)
            write_samples(trainer, state, workdir, writer)
          if evaluator is not None and (step % config.eval.every == 0 or step == total):
            _check_finite(step, metrics, last_checkpoint)
            result = evaluate_state(evaluator, trainer, state, step, workdir, writer)
            best.update(step, result, state, config)
        if save:
          checkpointer.save(step, state, config)
          last_checkpoint = step
          logger.info("step %d: saving checkpoint %s (in the background)", step,
                      os.path.join(checkpointer.directory, str(step)))
        if stopped_by is not None:
          break
    checkpointer.wait()  # a failure of the last save is reported like any other
  finally:
    _close_quietly(checkpointer)
    if best is not None:
      best.close()
    writer.close()
  if stopped_by is not None and last_checkpoint < total:  # (at the last step: just done)
    message = (f"Stopped by {signal_name(stopped_by)} after step {last_checkpoint}: checkpoint "
               f"saved; rerun the same command to continue.")
    logger.warning(message)
    raise TrainingStopped(stopped_by, last_checkpoint, message)
  return state


def _close_quietly(checkpointer: Checkpointer) -> None:
  """Closes the checkpointer on the way out. If an error is already on its way,
  a failing save must not replace it (the error says which checkpoint is intact);
  otherwise `Checkpointer.wait` has already reported any failure."""
  try:
    checkpointer.close()
  except CheckpointError as error:
    logger.warning("%s", error)
