"""Metrics of a class-conditional generator: does G(z, y) look like class y?

* **Conditional accuracy**: the share of samples ``G(z, y)`` that the classifier
  (the extractor's ``probs``, columns named by its ``labels``) reads as ``y``,
  overall and per class.
* **Intra-FID**: FID between the generated and the real images *of one class*,
  with the same features as the overall FID, per class and averaged over the
  classes (Miyato & Koyama 2018; the SAGAN paper reports it on ImageNet).

`ClassTally` wraps a feature extractor: each call also files the batch's
features and classifier readings under the classes the samples were drawn
for, so per-class statistics stream with the overall ones (no features kept).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from sagan_jax.eval import metrics, stats
from sagan_jax.eval.errors import EvalError
from sagan_jax.eval.features import FeatureExtractor, check_output


class ClassCounts(NamedTuple):
  """Per expected class: the features' moments, the samples read as that class, all samples."""
  moments: dict[Any, stats.Moments]
  correct: dict[Any, int]  # empty when the extractor has no class readings
  count: dict[Any, int]


def merge_counts(a: ClassCounts, b: ClassCounts) -> ClassCounts:
  """The counts of the union of two disjoint sets of samples."""
  moments = dict(a.moments)
  for c, m in b.moments.items():
    moments[c] = stats.merge(moments[c], m) if c in moments else m
  add = lambda x, y: {c: x.get(c, 0) + y.get(c, 0) for c in {**x, **y}}
  return ClassCounts(moments, add(a.correct, b.correct), add(a.count, b.count))


class ClassTally:
  """A feature extractor that also tallies, per expected class, features and readings.

  Args:
    extractor: the wrapped `FeatureExtractor` (its ``probs`` columns named by
      its ``labels`` attribute, needed for the accuracy).
    expected: the class each sample was drawn for, in the order the batches
      arrive (class *values*, e.g. digits, as in ``extractor.labels``).
    class_moments: also file each class's feature moments (intra-FID's generated
      side). A d×d float64 matrix per class: 33 GB for ImageNet's 1,000 classes of
      2,048-d Inception features, so off where no intra-FID can be computed.
  """

  def __init__(self, extractor: FeatureExtractor, expected: Sequence[Any], *,
               class_moments: bool = True):
    self.extractor = extractor
    self.class_moments = class_moments
    self.name = getattr(extractor, "name", type(extractor).__name__)
    self.labels = getattr(extractor, "labels", None)
    self.expected = np.asarray(expected)
    self.seen = 0
    self.moments: dict[Any, stats.Moments] = {}
    self.correct: dict[Any, int] = {}
    self.count: dict[Any, int] = {}

  def __call__(self, images: Any) -> dict[str, Any]:
    out = self.extractor(images)
    batch = int(np.shape(images)[0])
    features, probs = check_output(out, batch)
    expected = self.expected[self.seen:self.seen + batch]
    if len(expected) != batch:
      raise EvalError(f"{self.seen + batch} samples but only {len(self.expected)} classes given")
    self.seen += batch
    read = None
    if probs is not None and self.labels is not None:
      read = np.asarray(self.labels)[probs.argmax(axis=1)]
    for c in np.unique(expected):
      of_class = expected == c
      key = c.item()
      if self.class_moments:
        self.moments[key] = stats.update(
            self.moments.get(key, stats.init(features.shape[1])), features[of_class])
      self.count[key] = self.count.get(key, 0) + int(of_class.sum())
      if read is not None:
        self.correct[key] = self.correct.get(key, 0) + int((read[of_class] == c).sum())
    return out

  def counts(self) -> ClassCounts:
    """What the tally has gathered so far."""
    return ClassCounts(dict(self.moments), dict(self.correct), dict(self.count))


def accuracy(correct: Mapping[Any, int], count: Mapping[Any, int], classes: Sequence[Any]
             ) -> dict[str, float]:
  """``conditional_accuracy`` (all samples) and ``conditional_accuracy/<c>`` per class."""
  out = {"conditional_accuracy": sum(correct.get(c, 0) for c in classes)
                                 / max(1, sum(count.get(c, 0) for c in classes))}
  for c in classes:
    if count.get(c):
      out[f"conditional_accuracy/{c}"] = correct.get(c, 0) / count[c]
  return out


def intra_fid(fake: Mapping[Any, stats.Moments], real: Mapping[Any, stats.Moments],
              classes: Sequence[Any]) -> dict[str, float]:
  """``intra_fid`` (the mean over classes) and ``intra_fid/<c>``: per class, the FID of
  ``fake[c]`` against ``real[c]`` (each needs ≥ 2 samples)."""
  out: dict[str, float] = {}
  for c in classes:
    if c not in fake or c not in real or min(fake[c].count, real[c].count) < 2:
      raise EvalError(f"intra-FID of class {c} needs ≥ 2 generated and real samples, got "
                      f"{fake[c].count if c in fake else 0} and "
                      f"{real[c].count if c in real else 0}")
    mu_f, cov_f = stats.mean_cov(fake[c])
    mu_r, cov_r = stats.mean_cov(real[c])
    out[f"intra_fid/{c}"] = metrics.frechet_distance(mu_f, cov_f, mu_r, cov_r)
  out["intra_fid"] = float(np.mean([out[f"intra_fid/{c}"] for c in classes]))
  return out


def class_moments(features: np.ndarray, labels: np.ndarray, classes: Sequence[Any]
                  ) -> dict[Any, stats.Moments]:
  """Per-class moments of kept ``features`` with their ``labels``."""
  return {c: stats.of(features[labels == c]) for c in classes}


def real_readings(probs: Optional[np.ndarray], labels: np.ndarray, extractor_labels,
                  classes: Sequence[Any]) -> dict[str, float]:
  """The classifier's conditional accuracy on real labelled images (the floor's)."""
  if probs is None or extractor_labels is None:
    return {}
  read = np.asarray(extractor_labels)[probs.argmax(axis=1)]
  correct = {c: int(np.sum((labels == c) & (read == c))) for c in classes}
  count = {c: int(np.sum(labels == c)) for c in classes}
  return accuracy(correct, count, classes)
