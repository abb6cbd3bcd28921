"""What an evaluation measures of generated samples, and the merge of disjoint shares.

`Evaluator.measure` turns a stream of generated images into a `Measurement`:
the features' streaming moments, the first samples' features (KID,
precision/recall), the class probabilities (the Inception/classifier score)
and, for a class-conditional generator, the per-class counts. `Evaluator.score`
turns one into metrics. Between the two, `merge` joins the measurements of
disjoint shares of the samples — one per process of a multi-host evaluation —
into the measurement of all of them::

  parts = [evaluator.measure(batches_of(share)) for share in shares]  # one per process
  result = evaluator.score(merge(parts, keep=evaluator.settings["max_kept"]))

Shares given in sample order (share ``p`` holds samples before share ``p + 1``'s)
give the same kept features and probabilities, in the same order, as one
measurement of all samples; the moments agree up to the round-off of Chan's
float64 merge (`sagan_jax.eval.stats.merge`). How the shares travel between
processes is the caller's business (`sagan_jax.runs.shared_evaluation`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence

import numpy as np

from sagan_jax.eval import conditional, stats
from sagan_jax.eval.errors import EvalError
from sagan_jax.eval.features import FeatureSet

__all__ = ["Measurement", "merge"]


class Measurement(NamedTuple):
  """What `Evaluator.measure` gathers of one stream of generated samples."""
  features: FeatureSet  # moments of all samples; kept features and probs in sample order
  classes: Optional[conditional.ClassCounts]  # per expected class (a conditional generator)

  @property
  def count(self) -> int:
    return self.features.count


def _concatenated(arrays: Sequence[Optional[np.ndarray]], what: str) -> Optional[np.ndarray]:
  if all(a is None for a in arrays):
    return None
  if any(a is None for a in arrays):
    raise EvalError(f"some shares of the evaluation have {what} and others none: they were "
                    "measured with different feature networks")
  return np.concatenate(arrays)


def merge(parts: Sequence[Optional[Measurement]], keep: Optional[int] = None) -> Measurement:
  """The measurement of the union of disjoint shares of the samples.

  Args:
    parts: the shares' measurements in sample order; None for a share that
      held no samples.
    keep: how many samples' features the merged measurement keeps (the first
      ones, as `sagan_jax.eval.features.extract`'s ``keep``); None: all kept.
  """
  parts = [p for p in parts if p is not None]
  if not parts:
    raise EvalError("no share of the evaluation held any samples")
  if len({p.classes is None for p in parts}) > 1:
    raise EvalError("some shares of the evaluation have per-class counts and others none")
  moments = functools.reduce(stats.merge, [p.features.moments for p in parts])
  kept = np.concatenate([p.features.features for p in parts])
  probs = _concatenated([p.features.probs for p in parts], "class probabilities")
  classes = (None if parts[0].classes is None else
             functools.reduce(conditional.merge_counts, [p.classes for p in parts]))
  return Measurement(FeatureSet(moments, kept if keep is None else kept[:keep], probs), classes)
