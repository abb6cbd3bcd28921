"""One way to draw samples — the trainer's grids, ``sample.py`` and evaluation all use it.

The noise scheme: sample ``i`` of seed ``s`` has latent
``normal(fold_in(fold_in(key(s), NOISE_STREAM), i))``, so an image depends on
the weights, the seed and its index only — not on the batch size, the device
count or who asked. ``sample.py --seed 0`` therefore redraws the training
grid's samples, and evaluation's first images are those too.

`restore_generator` reads just the generator's variables from a checkpoint
(no discriminator, no optimizer state), so sampling from a large run needs
only the generator's memory.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sagan_jax import sharding, viz
from sagan_jax.atomic_file import atomic_write, check_writable, check_writable_folder
from sagan_jax.checks import require_int
from sagan_jax.interop.torch import as_state_dict, from_torch
from sagan_jax.models import build_generator
from sagan_jax.runtime import workdir as workdir_lib
from sagan_jax.runs.best_checkpoint import SUBDIR as BEST_SUBDIR
from sagan_jax.runs.errors import ArgumentError, SamplingError
from sagan_jax.torch_file import TorchFileError, read_state_dict
from sagan_jax.train.checkpoint import Checkpointer, CheckpointError, abstract_like

# Folded into key(seed): keeps sampling noise apart from the training keys,
# which derive from the same seed.
NOISE_STREAM = 0xE7A1
ATTENTION_FIGURE_SAMPLES = 4  # samples whose attention maps a figure shows

logger = logging.getLogger(__name__)


def latents(seed: int, indices: jax.Array, z_dim: int) -> jax.Array:
  """``(len(indices), z_dim)`` latents of samples ``indices`` (see module docstring)."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), NOISE_STREAM)
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (z_dim,)))(indices)


class Samples(NamedTuple):
  images: jax.Array  # (B, H, W, C) in [-1, 1]
  attention: Optional[tuple[jax.Array, ...]]  # the generator's maps, (B, N, M) each, if asked


def default_labels(indices: np.ndarray, num_classes: int) -> np.ndarray:
  """The class of samples ``indices`` when none is asked for: ``i mod num_classes``, so any
  run of consecutive samples is balanced over the classes (evaluation's per-class metrics)."""
  return (np.asarray(indices, np.int64) % num_classes).astype(np.int32)


class Sampler:
  """Eval-mode samples of one generator, a batch at a time, split over devices.

  The jitted program is built once per sampler (per batch shape), so a trainer
  keeps one and samples every few hundred steps without recompiling.

  Args:
    generator: the Flax generator (``apply(variables, z[, labels], train=False)``).
    z_dim: its latent size.
    devices: this process's devices to sample on (default: all local ones).
    return_attention: also return the attention maps (N×N per image and
      layer: ask for them only for the few samples a figure shows).
    num_classes: a class-conditional generator's classes (None: unconditional).
      Sample ``i`` then has class ``labels[i]`` if labels are given, else
      `default_labels` (``i mod num_classes``).
  """

  def __init__(self, generator: Any, z_dim: int, *,
               devices: Optional[Sequence[jax.Device]] = None, return_attention: bool = False,
               num_classes: Optional[int] = None):
    self.z_dim = int(z_dim)
    self.num_classes = num_classes
    self.return_attention = bool(return_attention)
    self.mesh = sharding.make_mesh(list(devices) if devices is not None else jax.local_devices())
    self._replicated = sharding.replicated(self.mesh)
    self._batched = sharding.batch_sharded(self.mesh)

    def generate(variables, z, labels):
      inputs = (z,) if num_classes is None else (z, labels)  # labels unused if unconditional
      if self.return_attention:
        return generator.apply(variables, *inputs, train=False, return_attention=True)
      return generator.apply(variables, *inputs, train=False), None

    self._generate = jax.jit(
        generate, in_shardings=(self._replicated, self._batched, self._batched),
        out_shardings=self._batched)
    self._sample = jax.jit(
        lambda variables, seed, indices, labels: generate(
            variables, latents(seed, indices, self.z_dim), labels),
        in_shardings=(self._replicated, None, self._batched, self._batched),
        out_shardings=self._batched)

  def place(self, variables: Any) -> Any:
    """``variables`` replicated on this sampler's devices (through the host: the
    state may live on another mesh, e.g. a multi-host training one)."""
    return jax.device_put(jax.device_get(variables), self._replicated)

  def _labels(self, labels: Optional[Any], indices: np.ndarray) -> np.ndarray:
    """The classes of samples ``indices`` (zeros for an unconditional generator)."""
    if self.num_classes is None:
      if labels is not None:
        raise ValueError("labels given to an unconditional generator's sampler")
      return np.zeros(len(indices), np.int32)
    if labels is None:
      return default_labels(indices, self.num_classes)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
      raise ValueError(f"labels must be in [0, {self.num_classes}), got {labels.min()} … "
                       f"{labels.max()}")
    return labels.astype(np.int32)

  def batches(self, variables: Any, num_samples: int, *, seed: int = 0,
              batch_size: int = 500, labels: Optional[Any] = None) -> Iterator[Samples]:
    """Yields samples ``0 … num_samples-1`` of ``seed``, ``batch_size`` at a time
    (the last batch may be smaller). Each call is padded to a multiple of the
    device count and the padding dropped. ``labels``: the ``num_samples`` classes
    of a conditional generator's samples (default `default_labels`)."""
    variables = self.place(variables)
    all_labels = self._labels(labels, np.arange(num_samples))
    if len(all_labels) != num_samples:
      raise ValueError(f"{len(all_labels)} labels for {num_samples} samples")
    per_call = sharding.padded_size(batch_size, self.mesh)
    for start in range(0, num_samples, batch_size):
      n = min(batch_size, num_samples - start)
      indices = np.arange(start, start + per_call, dtype=np.uint32)
      batch_labels = np.zeros(per_call, np.int32)
      batch_labels[:n] = all_labels[start:start + n]
      images, maps = self._sample(variables, seed, jax.device_put(indices, self._batched),
                                  jax.device_put(batch_labels, self._batched))
      yield _trimmed(images, maps, n, per_call)

  def sample(self, variables: Any, num_samples: int, *, seed: int = 0,
             labels: Optional[Any] = None) -> Samples:
    """Samples ``0 … num_samples-1`` of ``seed`` in one call."""
    return next(self.batches(variables, num_samples, seed=seed, batch_size=num_samples,
                             labels=labels))

  def generate(self, variables: Any, z: Any, labels: Optional[Any] = None) -> Samples:
    """Samples from given latents ``z`` (n, z_dim) (and classes), in one call: for
    figures that hold z or the class fixed (class grids, interpolations)."""
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != self.z_dim:
      raise ValueError(f"z must be (n, {self.z_dim}), got {z.shape}")
    n = z.shape[0]
    labels = self._labels(labels, np.arange(n))
    per_call = sharding.padded_size(n, self.mesh)
    padding = per_call - n
    z = np.concatenate([z, np.zeros((padding, self.z_dim), np.float32)])
    labels = np.concatenate([labels, np.zeros(padding, np.int32)])
    images, maps = self._generate(self.place(variables), jax.device_put(z, self._batched),
                                  jax.device_put(labels, self._batched))
    return _trimmed(images, maps, n, per_call)


def _trimmed(images, maps, n: int, per_call: int) -> Samples:
  if n != per_call:
    images = images[:n]
    maps = None if maps is None else tuple(m[:n] for m in maps)
  return Samples(images, maps)


def class_grid_inputs(z_dim: int, num_classes: int, per_class: int, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
  """``(z, labels)`` of a class grid, ``num_classes`` rows of ``per_class``: row ``c``
  draws class ``c`` and column ``j`` the latent of sample ``j`` of ``seed``, so each
  column shows one z across the classes."""
  z = np.asarray(latents(seed, jnp.arange(per_class), z_dim))
  return np.tile(z, (num_classes, 1)), np.repeat(np.arange(num_classes, dtype=np.int32),
                                                 per_class)


def interpolation_inputs(z_dim: int, steps: int, num_rows: int, seed: int = 0) -> np.ndarray:
  """Latents of ``num_rows`` rows of ``steps`` images moving linearly from sample 0's
  latent to sample 1's (of ``seed``): a row per class when each row gets one class."""
  ends = np.asarray(latents(seed, jnp.arange(2), z_dim), np.float32)
  t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
  return np.tile((1 - t) * ends[0] + t * ends[1], (num_rows, 1))


class RestoredGenerator(NamedTuple):
  config: ml_collections.ConfigDict  # the run's config
  generator: Any  # the Flax module
  variables: Any  # its eval-mode variables: params, spectral, batch_stats
  step: int  # the checkpoint's step
  ema: bool = False  # whether ``variables`` are the generator's moving average

  @property
  def num_classes(self) -> Optional[int]:
    """The classes of a conditional generator (None: unconditional)."""
    return self.config.model.get("num_classes")

  def sampler(self, return_attention: bool = False) -> "Sampler":
    return Sampler(self.generator, self.config.model.z_dim, num_classes=self.num_classes,
                   return_attention=return_attention)


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """``(H, W, C)`` of the images a run's data (and generator) have."""
  return (config.data.image_size, config.data.image_size, config.data.channels)


def uses_ema(config: ml_collections.ConfigDict, use_ema: Optional[bool] = None) -> bool:
  """Whether sampling a run's checkpoints reads its EMA generator: when the run keeps
  one (``ema.decay``) and ``use_ema`` (default: the run's ``ema.use_for_eval``) says so."""
  ema = config.get("ema")
  if ema is None or ema.get("decay") is None:
    return False
  return bool(ema.get("use_for_eval", True) if use_ema is None else use_ema)


def restore_generator(workdir: str, step: Optional[int] = None, *,
                      use_ema: Optional[bool] = None, best: bool = False) -> RestoredGenerator:
  """The generator of the checkpoint at ``step`` (default: the newest that
  restores) of a training workdir, or with ``best=True`` of the best evaluated
  one (`sagan_jax.runs.best_checkpoint`): its moving average when the run keeps
  one (see `uses_ema`; ``use_ema=False`` reads the trained weights instead).

  Read-only, so safe beside a running trainer: if the trainer deletes the
  chosen checkpoint while it is being read, the newest one then on disk is
  read instead (an explicit ``step`` that vanishes is an error). A damaged
  checkpoint is skipped with a warning (the trainer moves it aside when it
  next starts). Restores onto one local device, whatever the device count of
  the run that wrote it.

  Raises:
    FileNotFoundError: no config, no checkpoint, or no checkpoint of ``step``.
    CheckpointError: no checkpoint (or that of ``step``) restores.
  """
  config = workdir_lib.load_config(workdir)
  checkpointer = Checkpointer(workdir, read_only=True,
                              subdir=BEST_SUBDIR if best else "checkpoints")
  try:
    steps = checkpointer.all_steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}")
    if step is not None and step not in steps:
      raise FileNotFoundError(
          f"no checkpoint of step {step} in {checkpointer.directory} (it holds "
          f"{', '.join(map(str, sorted(steps)))})")
    generator = build_generator(config.model, image_shape(config))
    example = [jax.ShapeDtypeStruct((1, config.model.z_dim), np.float32)]
    if config.model.get("num_classes") is not None:
      example.append(jax.ShapeDtypeStruct((1,), np.int32))
    abstract = jax.eval_shape(generator.init, jax.random.PRNGKey(0), *example)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    ema = uses_ema(config, use_ema)
    read = functools.partial(checkpointer.restore_generator,
                             abstract_variables=abstract_like(abstract, device), ema=ema)
    if step is not None:
      variables = checkpointer.read_step(step, read)
    else:
      step, variables, damaged = checkpointer.read_newest(read)
      for entry in damaged:
        logger.warning("Checkpoint step %d in %s does not restore (%s); reading an older one.",
                       entry.step, checkpointer.directory, entry.reason)
      if step is None:
        raise CheckpointError(f"no checkpoint in {checkpointer.directory} restores: "
                              + "; ".join(f"step {d.step}: {d.reason}" for d in damaged))
  finally:
    checkpointer.close()
  return RestoredGenerator(config, generator, variables, step, ema)


def torch_generator(path: str, config: ml_collections.ConfigDict) -> RestoredGenerator:
  """``config.model``'s generator with the weights of a PyTorch file, read without torch:
  the chapter's ``Generator`` or StudioGAN's SAGAN (``model=G_ema-best-weights-step=N.pth``),
  a bare ``state_dict`` or a checkpoint dict holding one under ``'state_dict'`` (its
  ``'step'``, when present, is the result's step; else 0).

  Raises:
    FileNotFoundError: no file at ``path``.
    SamplingError: the file is unreadable or not the weights of this generator.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no PyTorch generator file at {path}")
  generator = build_generator(config.model, image_shape(config))
  try:
    contents = read_state_dict(path)
  except TorchFileError as error:
    raise SamplingError(f"cannot read {path} as a PyTorch state_dict: {error}") from error
  step = contents.get("step") if isinstance(contents, dict) else None
  try:
    variables = from_torch(generator, as_state_dict(contents))
  except (KeyError, ValueError, TypeError) as error:
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    raise SamplingError(f"{path} is not the weights of config.model's generator "
                        f"({type(generator).__name__}): {message}") from error
  return RestoredGenerator(config, generator, variables, step if isinstance(step, int) else 0)


def attention_layer_caption(maps: Sequence[Any], step: Optional[int] = None) -> str:
  """The caption of a figure of the generator's last attention map of ``maps``."""
  side = math.isqrt(maps[-1].shape[1])
  return viz.attention_caption(f"generator attention layer {len(maps)} of {len(maps)}",
                               (side, side), step)


def sample_files(images: np.ndarray, attention_maps: Optional[Sequence[np.ndarray]], path: str,
                 step: Optional[int] = None, ncols: Optional[int] = None) -> list[str]:
  """Writes a grid of ``images`` (``ncols`` a row) to ``path`` and, with the generator's
  attention maps, the figure of the last layer for the first samples beside it
  (``<path>_attention.png``); returns the paths."""
  paths = [viz.save_png(path, viz.image_grid(images, ncols=ncols))]
  if attention_maps is not None:
    root, ext = os.path.splitext(path)
    last = np.asarray(attention_maps[-1])
    paths.append(viz.save_png(f"{root}_attention{ext or '.png'}", viz.attention_figure(
        images[:len(last)], last, caption=attention_layer_caption(attention_maps, step))))
  return paths


def _check_sampling_arguments(num_samples: Any, seed: Any, batch_size: Any,
                              step: Any) -> None:
  """Raises `ArgumentError` in one line for a count, seed or step that is no valid int."""
  require_int(num_samples, "num_samples", 1, ArgumentError)
  require_int(seed, "seed", 0, ArgumentError)
  require_int(batch_size, "batch_size", 1, ArgumentError)
  if step is not None:
    require_int(step, "step", 0, ArgumentError)


def _check_labels(labels: Optional[Sequence[int]], num_classes: Optional[int]) -> None:
  if labels is None:
    return
  if num_classes is None:
    raise SamplingError("--labels needs a class-conditional run (config.model.num_classes)")
  bad = [label for label in labels if not 0 <= label < num_classes]
  if bad or not labels:
    raise SamplingError(f"labels must be classes in [0, {num_classes}), got "
                     f"{', '.join(map(str, labels)) or 'none'}")


def write_sample_files(workdir: str, num_samples: int = 64, seed: int = 0,
                       out: Optional[str] = None, attention: bool = False,
                       step: Optional[int] = None, batch_size: int = 256,
                       labels: Optional[Sequence[int]] = None, class_grid: bool = False,
                       per_class: int = 8, interpolate: Optional[int] = None,
                       use_ema: Optional[bool] = None, best: bool = False,
                       run: Optional[RestoredGenerator] = None) -> list[str]:
  """Writes a sample grid (and an attention figure) of a run's checkpoint — or of ``run``
  (e.g. `torch_generator`'s, with ``out`` given; ``workdir`` is then unused) — and
  returns the paths.

  What the grid shows:

  * default: samples ``0 … num_samples-1`` of ``seed`` (a conditional run's
    sample ``i`` has class ``i mod num_classes``), ``batch_size`` at a time;
  * ``labels``: one sample per listed class (conditional runs), e.g. ``[3, 3, 7]``;
  * ``class_grid``: a row per class, ``per_class`` columns, one latent per column;
  * ``interpolate=N``: rows of N images from sample 0's latent to sample 1's, at a
    fixed class per row (each of ``labels``, default every class; one row for
    an unconditional run).

  Attention maps are drawn only for the samples the figure shows, so memory
  does not grow with ``num_samples`` beyond the images themselves (16 KB each
  at 64×64). ``use_ema``, ``best``: see `restore_generator`. Every argument,
  and whether the output can be written, is checked before the checkpoint is read.

  Raises:
    ArgumentError: a count, seed or step that is not a valid integer.
    SamplingError: a request the run cannot serve (classes it lacks, …).
    OSError: the output cannot be written there.
  """
  _check_sampling_arguments(num_samples, seed, batch_size, step)
  if class_grid and interpolate:
    raise SamplingError("choose one of class_grid and interpolate")
  if interpolate is not None:
    require_int(interpolate, "interpolate", 2, ArgumentError)
  if class_grid:
    require_int(per_class, "per_class", 1, ArgumentError)
  if out is not None:
    check_writable(out)
  elif run is not None:
    raise ArgumentError("sampling a given generator needs the output path (out)")
  else:  # the default file's name holds the step, known once restored: check its folder
    check_writable_folder(workdir_lib.samples_dir(workdir))
  if run is None:
    run = restore_generator(workdir, step, use_ema=use_ema, best=best)
  num_classes = run.num_classes
  _check_labels(labels, num_classes)
  sampler = run.sampler()
  ncols, kind = None, ""
  z = None
  if class_grid:
    if num_classes is None:
      raise SamplingError("a class grid needs a class-conditional run (config.model.num_classes)")
    z, grid_labels = class_grid_inputs(run.config.model.z_dim, num_classes, per_class, seed)
    ncols, kind = per_class, "_classes"
  elif interpolate:
    rows = list(labels) if labels is not None else (
        list(range(num_classes)) if num_classes is not None else [None])
    z = interpolation_inputs(run.config.model.z_dim, interpolate, len(rows), seed)
    grid_labels = None if num_classes is None else np.repeat(np.asarray(rows, np.int32),
                                                             interpolate)
    ncols, kind = interpolate, "_interpolation"
  elif labels is not None:
    z = np.asarray(latents(seed, jnp.arange(len(labels)), run.config.model.z_dim))
    grid_labels = np.asarray(labels, np.int32)
  if z is None:
    images = np.empty((num_samples, *image_shape(run.config)), np.float32)
    start = 0
    for batch in sampler.batches(run.variables, num_samples, seed=seed, batch_size=batch_size):
      images[start:start + len(batch.images)] = np.asarray(batch.images)
      start += len(batch.images)
    grid_labels = None
  else:
    images = np.asarray(sampler.generate(run.variables, z, grid_labels).images)
  maps = None
  if attention:
    shown = min(ATTENTION_FIGURE_SAMPLES, len(images))
    if z is None:
      z = np.asarray(latents(seed, jnp.arange(shown), run.config.model.z_dim))
    found = run.sampler(return_attention=True).generate(
        run.variables, z[:shown], None if grid_labels is None else grid_labels[:shown]).attention
    if not found:
      raise SamplingError("the generator has no attention layer to draw")
    maps = found
  out = out or os.path.join(workdir_lib.samples_dir(workdir),
                            f"sample_step{run.step:06d}_seed{seed}{kind}.png")
  return sample_files(images, maps, out, run.step, ncols)


def write_samples_npz(workdir: str, path: str, num_samples: int, seed: int = 0,
                      step: Optional[int] = None, batch_size: int = 256,
                      use_ema: Optional[bool] = None, best: bool = False) -> str:
  """Writes ``num_samples`` samples of a run's checkpoint to ``path`` as ``.npz`` for
  external tools (FID/IS suites): ``images`` uint8 (N, H, W, C) as the PNGs have them,
  plus ``seed``, ``step`` and, for a class-conditional run, each sample's class in
  ``labels`` (`default_labels`: ``i mod num_classes``). Generated ``batch_size`` at a
  time; only the uint8 images are held."""
  _check_sampling_arguments(num_samples, seed, batch_size, step)
  check_writable(path)
  run = restore_generator(workdir, step, use_ema=use_ema, best=best)
  images = np.empty((num_samples, *image_shape(run.config)), np.uint8)
  start = 0
  for batch in run.sampler().batches(run.variables, num_samples, seed=seed,
                                     batch_size=batch_size):
    images[start:start + len(batch.images)] = viz.to_uint8(np.asarray(batch.images))
    start += len(batch.images)
  extra = {}
  if run.num_classes is not None:
    extra["labels"] = default_labels(np.arange(num_samples), run.num_classes)
  buffer = io.BytesIO()
  np.savez(buffer, images=images, seed=np.int64(seed), step=np.int64(run.step), **extra)
  return atomic_write(path, buffer.getvalue())
