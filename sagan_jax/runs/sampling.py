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

import dataclasses
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
from sagan_jax.ops.compiler_options import compiler_options
from sagan_jax.runtime import workdir as workdir_lib
from sagan_jax.runs.best_checkpoint import SUBDIR as BEST_SUBDIR
from sagan_jax.runs.errors import ArgumentError, SamplingError
from sagan_jax.interop.torch_file import TorchFileError, read_state_dict
from sagan_jax.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from sagan_jax.train.config import image_shape, uses_ema, validate

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

    options = compiler_options(self.mesh.devices.flat[0].platform)
    self._generate = jax.jit(
        generate, in_shardings=(self._replicated, self._batched, self._batched),
        out_shardings=self._batched, compiler_options=options)
    self._sample = jax.jit(
        lambda variables, seed, indices, labels: generate(
            variables, latents(seed, indices, self.z_dim), labels),
        in_shardings=(self._replicated, None, self._batched, self._batched),
        out_shardings=self._batched, compiler_options=options)

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
              batch_size: int = 500, labels: Optional[Any] = None,
              start: int = 0) -> Iterator[Samples]:
    """Yields samples ``start … start+num_samples-1`` of ``seed``, ``batch_size`` at a
    time (the last batch may be smaller). Sample ``i``'s noise and default class depend
    on ``(seed, i)`` alone, so drawing ``0 … n-1`` in shares (one per process, each its
    ``start``) draws the very samples one call would. Each call is padded to a multiple
    of the device count and the padding dropped. ``labels``: the ``num_samples`` classes
    of a conditional generator's samples (default `default_labels`)."""
    variables = self.place(variables)
    all_labels = self._labels(labels, np.arange(start, start + num_samples))
    if len(all_labels) != num_samples:
      raise ValueError(f"{len(all_labels)} labels for {num_samples} samples")
    per_call = sharding.padded_size(batch_size, self.mesh)
    for offset in range(0, num_samples, batch_size):
      n = min(batch_size, num_samples - offset)
      indices = np.arange(start + offset, start + offset + per_call, dtype=np.uint32)
      batch_labels = np.zeros(per_call, np.int32)
      batch_labels[:n] = all_labels[offset:offset + n]
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
    ConfigError: ``config`` has a value no run could use.
    FileNotFoundError: no file at ``path``.
    SamplingError: the file is unreadable or not the weights of this generator.
  """
  validate(config)  # a bad --config value: one line (ConfigError), before the file is read
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


# --- the files: one naming scheme, one writer ---------------------------------------------------

# What a file in ``samples/`` shows: its name starts with it (`sample_file_name`).
SAMPLES, LABELS, CLASSES, INTERPOLATION = "samples", "labels", "classes", "interpolation"
ATTENTION = "attention"  # the attention figure of a `SAMPLES` grid ("<kind>-attention" of others)


def sample_file_name(kind: str, step: int, seed: Optional[int] = None, ext: str = ".png") -> str:
  """``<kind>_<step:06d>[_seed<seed>]<ext>``: the name of every file in a run's ``samples/``.

  The trainer's files carry no seed (theirs is the run's, ``config.seed``), e.g.
  ``samples_000300.png`` and ``attention_000300.png``; ``sample.py``'s name the seed
  they drew, e.g. ``labels_000300_seed0.png``. So no two kinds, and no ``sample.py``
  command and the trainer, write the same file.
  """
  return f"{kind}_{step:06d}" + ("" if seed is None else f"_seed{seed}") + ext


def attention_kind(grid_kind: str) -> str:
  """The kind of the attention figure that belongs to a grid of ``grid_kind``."""
  return ATTENTION if grid_kind == SAMPLES else f"{grid_kind}-{ATTENTION}"


@dataclasses.dataclass(frozen=True)
class WrittenFile:
  """A file a run wrote: what it holds, for the person at the console, and where.

  ``os.fspath(written)`` is its path, so it opens like one.
  """
  what: str  # e.g. "sample grid: 64 samples of seed 0, step 300"
  path: str  # absolute

  def __fspath__(self) -> str:
    return self.path

  def line(self) -> str:
    """``<what>: <path>`` — the line a command prints for it."""
    return f"{self.what}: {self.path}"


class Grid(NamedTuple):
  """What a sample grid shows. ``z`` None: samples ``0 … count-1`` of ``seed``, drawn a
  batch at a time; else those latents (and ``labels``), in one call."""
  kind: str  # SAMPLES, LABELS, CLASSES or INTERPOLATION
  count: int  # images
  z: Optional[np.ndarray]
  labels: Optional[np.ndarray]
  ncols: Optional[int]  # images a row (None: a near-square grid)
  description: str  # what the images are, e.g. "64 samples of seed 0"


class GridFiles(NamedTuple):
  files: list[WrittenFile]  # the grid, then its attention figure if drawn
  figures: dict[str, np.ndarray]  # the same as uint8 images, for a metric writer


def training_grid(config: ml_collections.ConfigDict, num_classes: Optional[int]) -> Grid:
  """The trainer's grid: ``config.num_samples`` samples of ``config.seed`` (what
  ``sample.py --seed <config.seed>`` redraws), or for a class-conditional run a row per
  class of one latent a column (as ``sample.py --class_grid``)."""
  if num_classes is None:
    return Grid(SAMPLES, config.num_samples, _first_latents(config, config.num_samples), None,
                None, f"{config.num_samples} samples of seed {config.seed}")
  per_class = max(1, config.num_samples // num_classes)
  z, labels = class_grid_inputs(config.model.z_dim, num_classes, per_class, config.seed)
  return Grid(SAMPLES, len(z), z, labels, per_class,
              f"a row per class, {per_class} latents of seed {config.seed}")


def _first_latents(config: ml_collections.ConfigDict, count: int) -> np.ndarray:
  return np.asarray(latents(config.seed, jnp.arange(count), config.model.z_dim))


def write_grid(images: np.ndarray, maps: Optional[Sequence[Any]], grid: Grid, path: str,
               attention_path: str, step: int) -> GridFiles:
  """Writes ``images`` as ``grid``'s PNG at ``path`` and, with the generator's attention
  ``maps`` (of the first samples), the figure of its last layer at ``attention_path``."""
  figures = {"samples": viz.image_grid(images, ncols=grid.ncols)}
  files = [WrittenFile(f"{grid.kind} grid: {grid.description}, step {step}",
                       os.path.abspath(viz.save_png(path, figures["samples"])))]
  if maps:
    last = np.asarray(maps[-1])
    figures["attention"] = viz.attention_figure(
        images[:len(last)], last, caption=attention_layer_caption(maps, step))
    files.append(WrittenFile(
        f"attention figure: where generator attention layer {len(maps)} of {len(maps)} looks "
        f"in the first {len(last)} images of the {grid.kind} grid, step {step}",
        os.path.abspath(viz.save_png(attention_path, figures["attention"]))))
  return GridFiles(files, figures)


def figure_maps(attention_sampler: Sampler, variables: Any, grid: Grid, seed: int
                ) -> Optional[tuple[jax.Array, ...]]:
  """The attention maps of the grid's first `ATTENTION_FIGURE_SAMPLES` samples (only
  those: an N×N map per image and layer), None for a generator without attention."""
  shown = min(ATTENTION_FIGURE_SAMPLES, grid.count)
  z = grid.z if grid.z is not None else np.asarray(
      latents(seed, jnp.arange(shown), attention_sampler.z_dim))
  labels = None if grid.labels is None else grid.labels[:shown]
  return attention_sampler.generate(variables, z[:shown], labels).attention or None


def write_training_samples(sampler: Sampler, attention_sampler: Sampler, variables: Any,
                           config: ml_collections.ConfigDict, workdir: str, step: int
                           ) -> GridFiles:
  """The trainer's grid (`training_grid`) and attention figure of ``variables`` at ``step``,
  in ``<workdir>/samples/`` (`sample_file_name`, no seed)."""
  grid = training_grid(config, sampler.num_classes)
  images = np.asarray(sampler.generate(variables, grid.z, grid.labels).images)
  folder = workdir_lib.samples_dir(workdir)
  return write_grid(images, figure_maps(attention_sampler, variables, grid, config.seed), grid,
                    os.path.join(folder, sample_file_name(grid.kind, step)),
                    os.path.join(folder, sample_file_name(attention_kind(grid.kind), step)),
                    step)


def _check_sampling_arguments(num_samples: Any, seed: Any, batch_size: Any,
                              step: Any) -> None:
  """Raises `ArgumentError` in one line for a count, seed or step that is no valid int."""
  require_int(num_samples, "num_samples", 1, ArgumentError)
  require_int(seed, "seed", 0, ArgumentError)
  require_int(batch_size, "batch_size", 1, ArgumentError)
  if step is not None:
    require_int(step, "step", 0, ArgumentError)


def _check_grid_request(class_grid: bool, interpolate: Optional[int], per_class: Any) -> None:
  if class_grid and interpolate:
    raise SamplingError("choose one of class_grid and interpolate")
  if interpolate is not None:
    require_int(interpolate, "interpolate", 2, ArgumentError)
  if class_grid:
    require_int(per_class, "per_class", 1, ArgumentError)


def _check_labels(labels: Optional[Sequence[int]], num_classes: Optional[int]) -> None:
  if labels is None:
    return
  if num_classes is None:
    raise SamplingError("--labels needs a class-conditional run (config.model.num_classes)")
  bad = [label for label in labels if not 0 <= label < num_classes]
  if bad or not labels:
    raise SamplingError(f"labels must be classes in [0, {num_classes}), got "
                     f"{', '.join(map(str, labels)) or 'none'}")


def requested_grid(run: RestoredGenerator, num_samples: int, seed: int,
                   labels: Optional[Sequence[int]] = None, class_grid: bool = False,
                   per_class: int = 8, interpolate: Optional[int] = None) -> Grid:
  """The grid ``sample.py`` asked for (see `write_sample_files`)."""
  num_classes, z_dim = run.num_classes, run.config.model.z_dim
  _check_labels(labels, num_classes)
  if class_grid:
    if num_classes is None:
      raise SamplingError("a class grid needs a class-conditional run (config.model.num_classes)")
    z, grid_labels = class_grid_inputs(z_dim, num_classes, per_class, seed)
    return Grid(CLASSES, len(z), z, grid_labels, per_class,
                f"{num_classes} classes × {per_class} latents of seed {seed}")
  if interpolate:
    rows = list(labels) if labels is not None else (
        list(range(num_classes)) if num_classes is not None else [None])
    z = interpolation_inputs(z_dim, interpolate, len(rows), seed)
    grid_labels = None if num_classes is None else np.repeat(np.asarray(rows, np.int32),
                                                             interpolate)
    return Grid(INTERPOLATION, len(z), z, grid_labels, interpolate,
                f"{len(rows)} row(s) of {interpolate} images from sample 0's latent to "
                f"sample 1's (seed {seed})")
  if labels is not None:
    z = np.asarray(latents(seed, jnp.arange(len(labels)), z_dim))
    return Grid(LABELS, len(labels), z, np.asarray(labels, np.int32), None,
                f"classes {','.join(map(str, labels))} of seed {seed}")
  return Grid(SAMPLES, num_samples, None, None, None, f"{num_samples} samples of seed {seed}")


def _draw(run: RestoredGenerator, grid: Grid, seed: int, batch_size: int) -> np.ndarray:
  """The grid's images, as float32 (B, H, W, C)."""
  sampler = run.sampler()
  if grid.z is not None:
    return np.asarray(sampler.generate(run.variables, grid.z, grid.labels).images)
  images = np.empty((grid.count, *image_shape(run.config)), np.float32)
  start = 0
  for batch in sampler.batches(run.variables, grid.count, seed=seed, batch_size=batch_size):
    images[start:start + len(batch.images)] = np.asarray(batch.images)
    start += len(batch.images)
  return images


def write_sample_files(workdir: str, num_samples: int = 64, seed: int = 0,
                       out: Optional[str] = None, attention: bool = False,
                       step: Optional[int] = None, batch_size: int = 256,
                       labels: Optional[Sequence[int]] = None, class_grid: bool = False,
                       per_class: int = 8, interpolate: Optional[int] = None,
                       use_ema: Optional[bool] = None, best: bool = False,
                       run: Optional[RestoredGenerator] = None, beside: Optional[str] = None
                       ) -> list[WrittenFile]:
  """Writes a sample grid (and an attention figure) of a run's checkpoint — or of ``run``
  (e.g. `torch_generator`'s, with ``out`` given; ``workdir`` is then unused) — and
  returns the files.

  What the grid shows, and the kind that names its file (`sample_file_name`):

  * default (``samples``): samples ``0 … num_samples-1`` of ``seed`` (a conditional
    run's sample ``i`` has class ``i mod num_classes``), ``batch_size`` at a time;
  * ``labels`` (``labels``): one sample per listed class (conditional runs), e.g. ``[3, 3, 7]``;
  * ``class_grid`` (``classes``): a row per class, ``per_class`` columns, one latent per column;
  * ``interpolate=N`` (``interpolation``): rows of N images from sample 0's latent to
    sample 1's, at a fixed class per row (each of ``labels``, default every class; one
    row for an unconditional run).

  The files go to ``<workdir>/samples/<kind>_<step>_seed<seed>.png`` and, with
  ``attention``, its figure to ``…/attention_<step>_seed<seed>.png`` (``<kind>-attention``
  for the other kinds); with ``out``, the grid goes to ``out`` and the figure beside it
  (``<out>_attention.png``); with ``beside`` (a file, e.g. the PyTorch generator ``run``
  came from), the default names go beside it after its stem (``G_ema_classes_000000_seed0.png``).
  Attention maps are drawn only for the samples the figure
  shows, so memory does not grow with ``num_samples`` beyond the images themselves (16 KB
  each at 64×64). ``use_ema``, ``best``: see `restore_generator`. Every argument, and
  whether the output can be written, is checked before the checkpoint is read.

  Raises:
    ArgumentError: a count, seed or step that is not a valid integer.
    SamplingError: a request the run cannot serve (classes it lacks, …).
    OSError: the output cannot be written there.
  """
  _check_sampling_arguments(num_samples, seed, batch_size, step)
  _check_grid_request(class_grid, interpolate, per_class)
  folder, prefix = workdir_lib.samples_dir(workdir) if workdir is not None else None, ""
  if beside is not None:
    folder = os.path.dirname(os.path.abspath(beside))
    prefix = os.path.splitext(os.path.basename(beside))[0] + "_"
  if out is not None:
    check_writable(out)
  elif folder is None:
    raise ArgumentError("sampling a given generator needs the output path (out) or beside")
  else:  # the default file's name holds the step, known once restored: check its folder
    check_writable_folder(folder)
  if run is None:
    run = restore_generator(workdir, step, use_ema=use_ema, best=best)
  grid = requested_grid(run, num_samples, seed, labels, class_grid, per_class, interpolate)
  images = _draw(run, grid, seed, batch_size)
  maps = None
  if attention:
    maps = figure_maps(run.sampler(return_attention=True), run.variables, grid, seed)
    if maps is None:
      raise SamplingError("the generator has no attention layer to draw")
  if out is None:
    out = os.path.join(folder, prefix + sample_file_name(grid.kind, run.step, seed))
    attention_path = os.path.join(folder, prefix + sample_file_name(attention_kind(grid.kind),
                                                                    run.step, seed))
  else:
    root, ext = os.path.splitext(out)
    attention_path = f"{root}_{ATTENTION}{ext or '.png'}"
  return write_grid(images, maps, grid, out, attention_path, run.step).files


def write_samples_npz(workdir: str, path: str, num_samples: int, seed: int = 0,
                      step: Optional[int] = None, batch_size: int = 256,
                      use_ema: Optional[bool] = None, best: bool = False) -> WrittenFile:
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
  return WrittenFile(f"samples as .npz: {num_samples} uint8 images "
                     f"{'×'.join(map(str, images.shape[1:]))} of seed {seed}, step {run.step}",
                     os.path.abspath(atomic_write(path, buffer.getvalue())))
