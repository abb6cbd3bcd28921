"""The feature-extractor interface, and streaming feature extraction.

Any callable with this contract can drive the evaluation::

  extractor(images)  # images: float (B, H, W, C) in [-1, 1], NumPy or JAX
  -> {"features": (B, D) array, "probs": (B, K) array or None}

plus a ``name`` attribute (recorded in the results) and, optionally,
``labels``: the class of each column of ``probs`` (the MNIST classifier's are
0-9), which turns on the per-digit readings (``confident_fraction``,
``share_<d>``, ``ratio_<a>_to_<b>``). ``features`` feed FID,
KID and precision/recall; ``probs`` (class probabilities, rows summing to 1)
feed the classifier score and the class-share metrics, which are skipped
when an extractor returns ``None``. The extractor resizes and converts
channels itself: it sees exactly what the generator makes.

The packaged default is `sagan_jax.eval.mnist_classifier.MnistClassifier`
(64×64 grayscale MNIST; features = its 64-d penultimate layer).

The standard FID network, `sagan_jax.eval.inception.FIDInception`
(pytorch-fid's InceptionV3, loaded from its weight file), follows the same
contract: 2048-d pool3 ``features`` and the 1008-way softmax as ``probs``.
FID values are only comparable between runs measured with the same
extractor.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Optional, Protocol, runtime_checkable

import numpy as np

from sagan_jax.eval import stats

__all__ = ["FeatureExtractor", "FeatureSet", "check_output", "extract"]


@runtime_checkable
class FeatureExtractor(Protocol):
  """``images (B, H, W, C) in [-1, 1] -> {'features': (B, D), 'probs': (B, K) | None}``."""

  name: str

  def __call__(self, images: Any) -> dict[str, Any]:
    ...


class FeatureSet(NamedTuple):
  """What `extract` gathers from a stream of image batches."""
  moments: stats.Moments  # running float64 mean/covariance of all features
  features: np.ndarray  # (min(n, keep), D) float32: the first samples' features
  probs: Optional[np.ndarray]  # (n, K) float32, or None when the extractor has none

  @property
  def count(self) -> int:
    return self.moments.count


def check_output(out: Any, batch: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """Validates one extractor output; returns ``(features, probs)`` as float32 NumPy."""
  if not isinstance(out, dict) or "features" not in out:
    raise TypeError("a feature extractor must return a dict with 'features' (and 'probs'), "
                    f"got {type(out).__name__}")
  features = np.asarray(out["features"], dtype=np.float32)
  if features.ndim != 2 or features.shape[0] != batch:
    raise ValueError(f"extractor features must be ({batch}, D), got {features.shape}")
  probs = out.get("probs")
  if probs is not None:
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[0] != batch:
      raise ValueError(f"extractor probs must be ({batch}, K), got {probs.shape}")
  return features, probs


def extract(extractor: FeatureExtractor, batches: Iterable[Any],
            keep: Optional[int] = None) -> FeatureSet:
  """Runs ``extractor`` over image batches, accumulating streaming statistics.

  Args:
    extractor: see `FeatureExtractor`.
    batches: an iterable of image batches (B, H, W, C) in [-1, 1], e.g. a
      generator that produces each batch on demand.
    keep: how many samples' features to keep for the metrics that need the
      samples themselves (KID, precision/recall); None keeps all, 0 none. The
      mean/covariance always cover every sample.

  Returns:
    A `FeatureSet`.
  """
  moments = None
  kept, kept_count, probs = [], 0, []
  has_probs = None
  for images in batches:
    batch = int(np.shape(images)[0])
    if batch == 0:
      continue
    features, p = check_output(extractor(images), batch)
    if has_probs is None:
      has_probs = p is not None
    elif has_probs != (p is not None):
      raise ValueError("the extractor returned probs for some batches and None for others")
    moments = stats.update(stats.init(features.shape[1]) if moments is None else moments,
                           features)
    if keep is None or kept_count < keep:
      take = batch if keep is None else min(batch, keep - kept_count)
      kept.append(features[:take])
      kept_count += take
    elif not kept:  # keep=0: none kept, but the (0, D) array says D
      kept.append(features[:0])
    if p is not None:
      probs.append(p)
  if moments is None:
    raise ValueError("no images to extract features from")
  return FeatureSet(moments, np.concatenate(kept),
                    np.concatenate(probs) if has_probs else None)
