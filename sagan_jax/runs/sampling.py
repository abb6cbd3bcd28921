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
import ml_collections
import numpy as np

from sagan_jax import sharding, viz
from sagan_jax.atomic_file import atomic_write, check_writable, check_writable_folder
from sagan_jax.checks import require_int
from sagan_jax.models import build_generator
from sagan_jax.runs import workdir as workdir_lib
from sagan_jax.runs.best_checkpoint import SUBDIR as BEST_SUBDIR
from sagan_jax.runs.errors import ArgumentError
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


class Sampler:
  """Eval-mode samples of one generator, a batch at a time, split over devices.

  The jitted program is built once per sampler (per batch shape), so a trainer
  keeps one and samples every few hundred steps without recompiling.

  Args:
    generator: the Flax generator (``apply(variables, z, train=False)``).
    z_dim: its latent size.
    devices: this process's devices to sample on (default: all local ones).
    return_attention: also return the attention maps (N×N per image and
      layer: ask for them only for the few samples a figure shows).
  """

  def __init__(self, generator: Any, z_dim: int, *,
               devices: Optional[Sequence[jax.Device]] = None, return_attention: bool = False):
    self.z_dim = int(z_dim)
    self.return_attention = bool(return_attention)
    self.mesh = sharding.make_mesh(list(devices) if devices is not None else jax.local_devices())
    self._replicated = sharding.replicated(self.mesh)
    self._batched = sharding.batch_sharded(self.mesh)

    def sample(variables, seed, indices):
      z = latents(seed, indices, self.z_dim)
      if self.return_attention:
        return generator.apply(variables, z, train=False, return_attention=True)
      return generator.apply(variables, z, train=False), None

    self._sample = jax.jit(sample, in_shardings=(self._replicated, None, self._batched),
                           out_shardings=self._batched)

  def place(self, variables: Any) -> Any:
    """``variables`` replicated on this sampler's devices (through the host: the
    state may live on another mesh, e.g. a multi-host training one)."""
    return jax.device_put(jax.device_get(variables), self._replicated)

  def batches(self, variables: Any, num_samples: int, *, seed: int = 0,
              batch_size: int = 500) -> Iterator[Samples]:
    """Yields samples ``0 … num_samples-1`` of ``seed``, ``batch_size`` at a time
    (the last batch may be smaller). Each call is padded to a multiple of the
    device count and the padding dropped."""
    variables = self.place(variables)
    per_call = sharding.padded_size(batch_size, self.mesh)
    for start in range(0, num_samples, batch_size):
      n = min(batch_size, num_samples - start)
      indices = jax.device_put(np.arange(start, start + per_call, dtype=np.uint32),
                               self._batched)
      images, maps = self._sample(variables, seed, indices)
      if n != per_call:
        images = images[:n]
        maps = None if maps is None else tuple(m[:n] for m in maps)
      yield Samples(images, maps)

  def sample(self, variables: Any, num_samples: int, *, seed: int = 0) -> Samples:
    """Samples ``0 … num_samples-1`` of ``seed`` in one call."""
    return next(self.batches(variables, num_samples, seed=seed, batch_size=num_samples))


class RestoredGenerator(NamedTuple):
  config: ml_collections.ConfigDict  # the run's config
  generator: Any  # the Flax module
  variables: Any  # its eval-mode variables: params, spectral, batch_stats
  step: int  # the checkpoint's step


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """``(H, W, C)`` of the images a run's data (and generator) have."""
  return (config.data.image_size, config.data.image_size, config.data.channels)


def restore_generator(workdir: str, step: Optional[int] = None,
                      best: bool = False) -> RestoredGenerator:
  """The generator of the checkpoint at ``step`` (default: the newest that
  restores) of a training workdir, or with ``best=True`` of the best evaluated
  one (`sagan_jax.runs.best_checkpoint`).

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
          f"{', '.join(map(str, sorted(steps))) or 'none'})")
    generator = build_generator(config.model, image_shape(config))
    abstract = jax.eval_shape(
        generator.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, config.model.z_dim),
                                                                    np.float32))
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = abstract_like(abstract, device)
    read = functools.partial(checkpointer.restore_generator, abstract_variables=target)
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
  return RestoredGenerator(config, generator, variables, step)


def attention_layer_caption(maps: Sequence[Any], step: Optional[int] = None) -> str:
  """The caption of a figure of the generator's last attention map of ``maps``."""
  side = math.isqrt(maps[-1].shape[1])
  return viz.attention_caption(f"generator attention layer {len(maps)} of {len(maps)}",
                               (side, side), step)


def sample_files(images: np.ndarray, attention_maps: Optional[Sequence[np.ndarray]], path: str,
                 step: Optional[int] = None) -> list[str]:
  """Writes a grid of ``images`` to ``path`` and, with the generator's attention maps,
  the figure of the last layer for the first samples beside it
  (``<path>_attention.png``); returns the paths."""
  paths = [viz.save_png(path, viz.image_grid(images))]
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


def write_sample_files(workdir: str, num_samples: int = 64, seed: int = 0,
                       out: Optional[str] = None, attention: bool = False,
                       step: Optional[int] = None, batch_size: int = 256,
                       best: bool = False) -> list[str]:
  """Writes a sample grid (and an attention figure) of a run's checkpoint; returns the paths.

  Images are generated ``batch_size`` at a time; attention maps only for the
  samples the figure shows, so memory does not grow with ``num_samples`` beyond
  the images themselves (16 KB each at 64×64). Every argument, and whether the
  output can be written, is checked before the checkpoint is read.

  Raises:
    ArgumentError: a count, seed or step that is not a valid integer.
    OSError: the output cannot be written there.
  """
  _check_sampling_arguments(num_samples, seed, batch_size, step)
  if out is not None:
    check_writable(out)
  else:  # the default file's name holds the step, known once restored: check its folder
    check_writable_folder(workdir_lib.samples_dir(workdir))
  run = restore_generator(workdir, step, best)
  sampler = Sampler(run.generator, run.config.model.z_dim)
  images = np.empty((num_samples, *image_shape(run.config)), np.float32)
  start = 0
  for batch in sampler.batches(run.variables, num_samples, seed=seed, batch_size=batch_size):
    images[start:start + len(batch.images)] = np.asarray(batch.images)
    start += len(batch.images)
  maps = None
  if attention:
    with_maps = Sampler(run.generator, run.config.model.z_dim, return_attention=True)
    shown = min(ATTENTION_FIGURE_SAMPLES, num_samples)
    maps = with_maps.sample(run.variables, shown, seed=seed).attention
  out = out or os.path.join(workdir_lib.samples_dir(workdir),
                            f"sample_step{run.step:06d}_seed{seed}.png")
  return sample_files(images, maps, out, run.step)


def write_samples_npz(workdir: str, path: str, num_samples: int, seed: int = 0,
                      step: Optional[int] = None, batch_size: int = 256,
                      best: bool = False) -> str:
  """Writes ``num_samples`` samples of a run's checkpoint to ``path`` as ``.npz`` for
  external tools (FID/IS suites): ``images`` uint8 (N, H, W, C) as the PNGs have them,
  plus ``seed`` and ``step``. Generated ``batch_size`` at a time; only the uint8
  images are held."""
  _check_sampling_arguments(num_samples, seed, batch_size, step)
  check_writable(path)
  run = restore_generator(workdir, step, best)
  sampler = Sampler(run.generator, run.config.model.z_dim)
  images = np.empty((num_samples, *image_shape(run.config)), np.uint8)
  start = 0
  for batch in sampler.batches(run.variables, num_samples, seed=seed, batch_size=batch_size):
    images[start:start + len(batch.images)] = viz.to_uint8(np.asarray(batch.images))
    start += len(batch.images)
  buffer = io.BytesIO()
  np.savez(buffer, images=images, seed=np.int64(seed), step=np.int64(run.step))
  return atomic_write(path, buffer.getvalue())
