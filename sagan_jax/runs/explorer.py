"""``write_explorer(workdir, path)``: the attention explorer page of a run's generator.

Samples ``num_samples`` images from the checkpoint by the one noise scheme
(`sagan_jax.runs.sampling`: sample ``i`` of seed ``s`` is the training grid's),
with every attention layer's maps, and writes them as one self-contained HTML
file (`sagan_jax.viz.explorer_page`).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from sagan_jax.atomic_file import atomic_write, check_writable
from sagan_jax.viz import explorer_page
from sagan_jax.runs.errors import SamplingError
from sagan_jax.runs.sampling import WrittenFile, restore_generator

DEFAULT_SAMPLES = 8  # the maps of a 32×32 layer cost ~0.5 MB a sample in the page


def write_explorer(workdir: str, path: str, num_samples: int = DEFAULT_SAMPLES, seed: int = 0,
                   step: Optional[int] = None, best: bool = False,
                   use_ema: Optional[bool] = None) -> WrittenFile:
  """Writes the explorer page of the checkpoint at ``step`` (default: latest; ``best``:
  the best evaluated one; ``use_ema``: see `restore_generator`) to ``path``. A
  class-conditional run's sample ``i`` has class ``i mod num_classes``. Returns the file."""
  check_writable(path)  # before the work, not after it
  run = restore_generator(workdir, step, use_ema=use_ema, best=best)
  samples = run.sampler(return_attention=True).sample(run.variables, num_samples, seed=seed)
  if not samples.attention:
    raise SamplingError(f"the generator of {workdir} has no attention layers to explore")
  maps = [np.asarray(m) for m in samples.attention]
  names = [f"attention layer {k} of {len(maps)}" for k in range(1, len(maps) + 1)]
  page = explorer_page.explorer_html(
      np.asarray(samples.images), maps, layer_names=names,
      title=f"{os.path.basename(os.path.abspath(workdir))}: generator attention, step {run.step}",
      caption=(f"{num_samples} samples of seed {seed} from {os.path.abspath(workdir)} "
               f"(step {run.step}); model {run.config.model.name}."))
  return WrittenFile(f"attention explorer: {num_samples} samples of seed {seed} and every "
                     f"attention layer's maps, step {run.step}",
                     os.path.abspath(atomic_write(path, page.encode("utf-8"))))
