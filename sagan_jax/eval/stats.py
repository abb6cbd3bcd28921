"""Streaming mean and covariance in float64: fit a Gaussian batch by batch.

The state is a `Moments` tuple — count, mean, and the sum of outer products
of deviations from the mean (``M2``) — merged with Chan et al.'s parallel
update, which stays accurate where accumulating raw ``Σx`` and ``ΣxxT``
would cancel catastrophically (features with a large mean). Merging is
associative up to round-off, so batches can be processed in any grouping
(per device, per host, per call) and 50,000 samples never sit in memory::

  moments = stats.init(dim)
  for batch in batches:
    moments = stats.update(moments, extractor(batch)["features"])
  mean, cov = stats.mean_cov(moments)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["Moments", "init", "mean_cov", "merge", "of", "update"]


class Moments(NamedTuple):
  count: int  # samples seen
  mean: np.ndarray  # (d,) float64
  m2: np.ndarray  # (d, d) float64: Σ (x − mean)(x − mean)ᵀ


def init(dim: int) -> Moments:
  """Moments of no samples, for ``dim``-dimensional features."""
  if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
    raise ValueError(f"dim must be a positive integer, got {dim!r}")
  return Moments(0, np.zeros(int(dim)), np.zeros((int(dim), int(dim))))


def of(features: Any) -> Moments:
  """The moments of one ``(n, d)`` batch."""
  x = np.asarray(features, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f"features must be (num_samples, dim), got shape {x.shape}")
  if x.shape[0] == 0:
    return init(x.shape[1])
  mean = x.mean(axis=0)
  centered = x - mean
  return Moments(x.shape[0], mean, centered.T @ centered)


def merge(a: Moments, b: Moments) -> Moments:
  """The moments of the union of two disjoint sets of samples (Chan et al., 1979)."""
  if a.mean.shape != b.mean.shape:
    raise ValueError(f"feature dimensions differ: {a.mean.shape[0]} vs {b.mean.shape[0]}")
  if b.count == 0:
    return a
  if a.count == 0:
    return b
  count = a.count + b.count
  delta = b.mean - a.mean
  mean = a.mean + delta * (b.count / count)
  m2 = a.m2 + b.m2 + np.outer(delta, delta) * (a.count * b.count / count)
  return Moments(count, mean, m2)


def update(moments: Moments, features: Any) -> Moments:
  """``moments`` with one more ``(n, d)`` batch of features."""
  return merge(moments, of(features))


def mean_cov(moments: Moments) -> tuple[np.ndarray, np.ndarray]:
  """``(mean, covariance)``, the covariance unbiased (divided by ``n − 1``)."""
  if moments.count < 2:
    raise ValueError(f"a covariance needs at least 2 samples, got {moments.count}")
  return moments.mean.copy(), moments.m2 / (moments.count - 1)
