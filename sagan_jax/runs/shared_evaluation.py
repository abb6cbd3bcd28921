"""Evaluation split over the processes of a multi-host run: each measures its share.

With ``jax.process_count() > 1`` every process draws its share of the
``num_samples`` generated images (`process_share`: a contiguous range of
sample indices) on its own devices and extracts their features
(`sagan_jax.runs.evaluation.measure_generator`). The measurements travel to
every process bit-exactly (`sagan_jax.runtime.gather.allgather_objects`: the
float64 moments as bytes) and process 0 merges them in sample order
(`sagan_jax.eval.measurement.merge`) and scores them. Sample ``i``'s noise and
class depend only on ``(seed, i)`` (`sagan_jax.runs.sampling.Sampler.batches`),
so the union of the shares is the set of samples one process would draw:
the FID equals a one-process evaluation's up to the round-off of Chan's
float64 merge; the kept features (KID, precision/recall) and the class
probabilities (IS) are the same arrays in the same order.

Only process 0 needs the real reference (it alone scores): the others build
a measure-only `Evaluator` and never read the held-out images or compute the
training data's statistics, so there is nothing to wait for.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import jax
import ml_collections

from sagan_jax.eval import Evaluator, measurement
from sagan_jax.runs import evaluation
from sagan_jax.runtime.gather import allgather_objects

__all__ = ["evaluate_in_shares", "process_share"]

logger = logging.getLogger(__name__)


def process_share(num_samples: int, index: int, count: int) -> tuple[int, int]:
  """``(start, stop)``: the sample indices process ``index`` of ``count`` draws — contiguous,
  in process order, sizes differing by at most one (the first ``num_samples % count``
  processes draw one more)."""
  base, extra = divmod(int(num_samples), int(count))
  start = index * base + min(index, extra)
  return start, start + base + (1 if index < extra else 0)


def evaluate_in_shares(evaluator: Evaluator, generator: Any, variables: Any,
                       config: ml_collections.ConfigDict, *, num_samples: int,
                       batch_size: int, seed: int) -> Optional[dict[str, Any]]:
  """The metrics of ``num_samples`` samples, each process measuring its share.

  A collective: every process calls it (process 0 with the scoring evaluator, the
  others with a measure-only one, see `evaluation.make_evaluator`). Returns the
  result on process 0 — with ``samples_per_process``, how many samples each measured —
  and None on the others.
  """
  began = time.monotonic()
  start, stop = process_share(num_samples, jax.process_index(), jax.process_count())
  local = None
  if stop > start:
    local = evaluation.measure_generator(generator, variables, config, evaluator,
                                         num_samples=stop - start, batch_size=batch_size,
                                         seed=seed, start=start)
  parts = allgather_objects(local)
  if jax.process_count() > 1:
    logger.info("eval: process %d of %d measured samples %d…%d", jax.process_index(),
                jax.process_count(), start, stop - 1)
  if jax.process_index() != 0:
    return None
  result = evaluator.score(measurement.merge(parts, keep=evaluator.settings["max_kept"]))
  result["samples_per_process"] = [0 if p is None else p.count for p in parts]
  result["seconds"] = round(time.monotonic() - began, 2)  # generation and extraction too
  return result
