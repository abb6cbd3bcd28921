"""Load a workdir's latest generator and draw samples (and attention maps)."""

from __future__ import annotations

import functools
import os
from typing import NamedTuple, Optional

import jax
import ml_collections
import numpy as np

from sagan_jax import viz
from sagan_jax.models import build_gan
from sagan_jax.train.checkpoint import Checkpointer, abstract_like
from sagan_jax.train.optimizers import make_optimizers
from sagan_jax.train.state import GANState, init_gan_state


class LoadedRun(NamedTuple):
  config: ml_collections.ConfigDict
  state: GANState
  generator: object  # the flax module
  step: int


def load_run(workdir: str, step: Optional[int] = None) -> LoadedRun:
  """The config and the state at ``step`` (default: latest) of a training workdir."""
  from sagan_jax.train.loop import load_config  # avoid an import cycle

  config = load_config(workdir)
  # Read-only: safe while a trainer is writing to the same workdir.
  checkpointer = Checkpointer(workdir, read_only=True)
  try:
    steps = checkpointer.all_steps()
    step = checkpointer.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}")
    if step not in steps:
      raise FileNotFoundError(
          f"no checkpoint of step {step} in {checkpointer.directory} (it holds "
          f"{', '.join(map(str, sorted(steps))) or 'none'})")
    generator, discriminator = build_gan(config.model, config.data.channels)
    g_tx, d_tx = make_optimizers(config)
    image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
    abstract = jax.eval_shape(functools.partial(
        init_gan_state, generator, discriminator, seed=config.seed, z_dim=config.model.z_dim,
        image_shape=image_shape, g_tx=g_tx, d_tx=d_tx))
    # Onto one local device, whatever the device count of the run that wrote it.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    state = checkpointer.restore(step, abstract_like(abstract, device))
  finally:
    checkpointer.close()
  return LoadedRun(config, state, generator, step)


def generate(run: LoadedRun, num_samples: int, seed: int = 0, batch_size: int = 256):
  """``(images, (map1, map2))`` as NumPy, in eval mode, ``batch_size`` at a time."""
  sample = jax.jit(functools.partial(run.generator.apply, return_attention=True))
  variables = run.state.generator.variables()
  z = jax.random.normal(jax.random.PRNGKey(seed), (num_samples, run.config.model.z_dim))
  images, maps1, maps2 = [], [], []
  for start in range(0, num_samples, batch_size):
    out, (m1, m2) = sample(variables, z[start:start + batch_size])
    images.append(np.asarray(out))
    maps1.append(np.asarray(m1))
    maps2.append(np.asarray(m2))
  return np.concatenate(images), (np.concatenate(maps1), np.concatenate(maps2))


def write_sample_files(workdir: str, num_samples: int = 64, seed: int = 0,
                       out: Optional[str] = None, attention: bool = False,
                       step: Optional[int] = None) -> list[str]:
  """Writes a sample grid (and an attention figure); returns the paths."""
  run = load_run(workdir, step)
  images, (_, map2) = generate(run, num_samples, seed)
  out = out or os.path.join(workdir, "samples", f"sample_step{run.step:06d}_seed{seed}.png")
  paths = [viz.save_png(out, viz.image_grid(images))]
  if attention:
    root, ext = os.path.splitext(out)
    paths.append(viz.save_png(f"{root}_attention{ext or '.png'}",
                              viz.attention_figure(images[:4], map2[:4])))
  return paths
