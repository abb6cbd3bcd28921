"""Sample-quality metrics as pure functions on feature arrays (NumPy, float64).

Every function takes NumPy or JAX arrays (JAX arrays come to the host through
``np.asarray``) and computes in float64: Fréchet distances and kernel sums of
thousands of samples lose digits in float32, and JAX's default float64 is
off. Nothing here needs SciPy.

* `frechet_distance` / `fid`: the Fréchet distance between Gaussian fits
  (Heusel et al., 2017), with the trace of the matrix square root taken from
  the eigenvalues of the symmetric PSD matrix ``√Σ₁ Σ₂ √Σ₁`` (no complex
  round-off, no ``sqrtm`` iteration, robust to singular covariances).
* `kernel_mmd2` / `kid`: the unbiased squared MMD with the cubic polynomial
  kernel ``k(x, y) = (xᵀy / d + 1)³``, averaged over random subsets
  (Bińkowski et al., 2018).
* `classifier_score`: the Inception-Score formula ``exp E_x KL(p(y|x) ‖ p(y))``
  on any classifier's probabilities (Salimans et al., 2016), over splits; on
  the FID Inception's 1008-way softmax it is the Inception Score, reported
  with 10 splits (TF's and BigGAN's convention) and 1 split (StudioGAN's).
* `precision_recall`: k-NN manifold precision and recall (Kynkäänniemi et al.,
  2019), in row blocks so no N×N matrix is built.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

__all__ = [
    "MeanStd",
    "PrecisionRecall",
    "classifier_score",
    "fid",
    "frechet_distance",
    "gaussian_fit",
    "kernel_mmd2",
    "kid",
    "knn_radii",
    "pairwise_sq_distances",
    "precision_recall",
    "sqrtm_psd",
    "trace_sqrt_product",
]

# Row blocks of the k-NN searches hold at most this many distances (≈ 64 MB in float64).
_BLOCK_ELEMENTS = 1 << 23


class MeanStd(NamedTuple):
  """A metric averaged over subsets or splits, and its standard deviation across them."""
  mean: float
  std: float


class PrecisionRecall(NamedTuple):
  precision: float  # share of generated samples inside the real manifold
  recall: float  # share of real samples inside the generated manifold


def _features(x: Any, name: str) -> np.ndarray:
  a = np.asarray(x, dtype=np.float64)
  if a.ndim != 2:
    raise ValueError(f"{name} must be a 2-D (num_samples, dim) array, got shape {a.shape}")
  if not np.all(np.isfinite(a)):
    raise ValueError(f"{name} holds non-finite values")
  return a


def _same_dim(a: np.ndarray, b: np.ndarray) -> None:
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")


def gaussian_fit(features: Any) -> tuple[np.ndarray, np.ndarray]:
  """``(mean, covariance)`` of ``(n, d)`` features in float64 (unbiased, ``n − 1``).

  For data that does not fit in memory, accumulate
  `sagan_jax.eval.stats.Moments` batch by batch instead; the result is the same.
  """
  x = _features(features, "features")
  if x.shape[0] < 2:
    raise ValueError(f"a covariance needs at least 2 samples, got {x.shape[0]}")
  mean = x.mean(axis=0)
  centered = x - mean
  return mean, centered.T @ centered / (x.shape[0] - 1)


def _symmetric(a: Any, name: str) -> np.ndarray:
  m = np.asarray(a, dtype=np.float64)
  if m.ndim != 2 or m.shape[0] != m.shape[1]:
    raise ValueError(f"{name} must be a square matrix, got shape {m.shape}")
  if not np.all(np.isfinite(m)):
    raise ValueError(f"{name} holds non-finite values")
  return (m + m.T) / 2


def sqrtm_psd(matrix: Any) -> np.ndarray:
  """The symmetric PSD square root of a symmetric PSD matrix, by eigendecomposition.

  Eigenvalues below zero (round-off in a covariance of rank < d) are clipped
  to zero, so the result is real and PSD.
  """
  m = _symmetric(matrix, "matrix")
  eigenvalues, eigenvectors = np.linalg.eigh(m)
  root = np.sqrt(np.clip(eigenvalues, 0.0, None))
  return (eigenvectors * root) @ eigenvectors.T


def trace_sqrt_product(sigma1: Any, sigma2: Any) -> float:
  """``tr √(Σ₁ Σ₂)`` for PSD ``Σ₁``, ``Σ₂``.

  ``Σ₁ Σ₂`` is similar to the symmetric PSD ``√Σ₁ Σ₂ √Σ₁`` (same eigenvalues),
  so the trace is the sum of the square roots of that matrix's eigenvalues —
  real by construction, where ``sqrtm(Σ₁ Σ₂)`` returns complex round-off.
  """
  s1 = _symmetric(sigma1, "sigma1")
  s2 = _symmetric(sigma2, "sigma2")
  if s1.shape != s2.shape:
    raise ValueError(f"covariance shapes differ: {s1.shape} vs {s2.shape}")
  root1 = sqrtm_psd(s1)
  product = root1 @ s2 @ root1
  eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
  return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
  """``‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁ Σ₂)``: the Fréchet (2-Wasserstein)
  distance² between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)``.

  Clipped at 0 (round-off can make identical statistics give −1e−13).
  """
  mu1 = np.asarray(mu1, dtype=np.float64).reshape(-1)
  mu2 = np.asarray(mu2, dtype=np.float64).reshape(-1)
  s1 = _symmetric(sigma1, "sigma1")
  s2 = _symmetric(sigma2, "sigma2")
  if not (mu1.shape == mu2.shape and s1.shape == s2.shape == (mu1.size, mu1.size)):
    raise ValueError(f"inconsistent shapes: mu {mu1.shape}, {mu2.shape}; "
                     f"sigma {s1.shape}, {s2.shape}")
  diff = mu1 - mu2
  value = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2)
  return float(max(value, 0.0))


def fid(features1: Any, features2: Any) -> float:
  """The Fréchet distance between Gaussian fits of two ``(n, d)`` feature sets."""
  mu1, s1 = gaussian_fit(features1)
  mu2, s2 = gaussian_fit(features2)
  return frechet_distance(mu1, s1, mu2, s2)


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return (a @ b.T / a.shape[1] + 1.0) ** 3


def kernel_mmd2(x: Any, y: Any) -> float:
  """Unbiased MMD² between ``x`` (m, d) and ``y`` (n, d), kernel ``(xᵀy/d + 1)³``.

  ``Σ_{i≠j} k(xᵢ,xⱼ)/(m(m−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(n(n−1)) − 2 Σ k(xᵢ,yⱼ)/(mn)``.
  Its expectation is 0 when both sets come from one distribution (so single
  values can be slightly negative).
  """
  x = _features(x, "x")
  y = _features(y, "y")
  _same_dim(x, y)
  m, n = x.shape[0], y.shape[0]
  if m < 2 or n < 2:
    raise ValueError(f"the unbiased MMD needs at least 2 samples per set, got {m} and {n}")
  kxx = _polynomial_kernel(x, x)
  kyy = _polynomial_kernel(y, y)
  kxy = _polynomial_kernel(x, y)
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
               + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
               - 2 * kxy.sum() / (m * n))


def kid(x: Any, y: Any, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> MeanStd:
  """Kernel Inception Distance: `kernel_mmd2` over random subsets, mean and std.

  Each of ``num_subsets`` rounds draws ``min(subset_size, len(x), len(y))``
  samples without replacement from each set (NumPy generator seeded by
  ``seed``), as torch-fidelity and clean-fid do.
  """
  x = _features(x, "x")
  y = _features(y, "y")
  _same_dim(x, y)
  if num_subsets < 1 or subset_size < 2:
    raise ValueError(f"need num_subsets ≥ 1 and subset_size ≥ 2, got {num_subsets}, "
                     f"{subset_size}")
  size = min(subset_size, x.shape[0], y.shape[0])
  rng = np.random.default_rng(seed)
  values = np.empty(num_subsets)
  for i in range(num_subsets):
    xs = x[rng.choice(x.shape[0], size, replace=False)]
    ys = y[rng.choice(y.shape[0], size, replace=False)]
    values[i] = kernel_mmd2(xs, ys)
  return MeanStd(float(values.mean()), float(values.std()))


def classifier_score(probs: Any, splits: int = 10) -> MeanStd:
  """``exp E_x KL(p(y|x) ‖ p(y))`` per split of ``probs`` (n, K); mean and std over splits.

  The Inception Score's formula on any classifier: between 1 (every sample
  gets the same distribution) and K (confident, classes used equally). Rows
  need not be normalized exactly; they are renormalized. ``p log p`` is 0 at
  ``p = 0``. With ``splits`` > 1 the samples are cut into that many
  consecutive parts at ``⌊i·n/splits⌋``, as in the reference implementation
  (Salimans et al.'s ``inception_score.py``); the mean and the (population)
  standard deviation over the parts are returned. The score of one part
  depends on its size, so scores are comparable only at equal ``n`` and
  ``splits`` (the standard: 50,000 samples, 10 splits).
  """
  p = _features(probs, "probs")
  if np.any(p < 0):
    raise ValueError("probs must be non-negative")
  totals = p.sum(axis=1, keepdims=True)
  if np.any(totals <= 0):
    raise ValueError("every row of probs must have a positive sum")
  p = p / totals
  if not 1 <= splits <= p.shape[0]:
    raise ValueError(f"splits must be in 1..{p.shape[0]} (the number of samples), got {splits}")
  scores = []
  n = p.shape[0]
  for i in range(splits):
    part = p[i * n // splits:(i + 1) * n // splits]
    marginal = part.mean(axis=0)
    safe_p = np.where(part > 0, part, 1.0)
    safe_m = np.where(marginal > 0, marginal, 1.0)
    kl = np.sum(np.where(part > 0, part * (np.log(safe_p) - np.log(safe_m)), 0.0), axis=1)
    scores.append(np.exp(kl.mean()))
  scores = np.asarray(scores)
  return MeanStd(float(scores.mean()), float(scores.std()))


def pairwise_sq_distances(a: Any, b: Any) -> np.ndarray:
  """``‖aᵢ − bⱼ‖²`` as an (m, n) float64 matrix, clipped at 0."""
  a = np.asarray(a, dtype=np.float64)
  b = np.asarray(b, dtype=np.float64)
  d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
  return np.maximum(d, 0.0)


def _row_blocks(num_rows: int, num_cols: int):
  step = max(1, _BLOCK_ELEMENTS // max(num_cols, 1))
  for start in range(0, num_rows, step):
    yield slice(start, min(start + step, num_rows))


def knn_radii(features: Any, k: int = 3) -> np.ndarray:
  """Squared distance from each sample to its ``k``-th nearest *other* sample.

  The sample itself (distance 0) is the 0-th neighbour, as in the reference
  implementation of Kynkäänniemi et al.
  """
  x = _features(features, "features")
  if not 1 <= k < x.shape[0]:
    raise ValueError(f"k must be in 1..{x.shape[0] - 1} (samples − 1), got {k}")
  radii = np.empty(x.shape[0])
  for rows in _row_blocks(x.shape[0], x.shape[0]):
    d = pairwise_sq_distances(x[rows], x)
    radii[rows] = np.partition(d, k, axis=1)[:, k]
  return radii


def _coverage(manifold: np.ndarray, radii: np.ndarray, queries: np.ndarray) -> float:
  """Share of ``queries`` inside at least one ball ``‖q − mᵢ‖² ≤ radiiᵢ``."""
  inside = np.zeros(queries.shape[0], dtype=bool)
  for rows in _row_blocks(queries.shape[0], manifold.shape[0]):
    d = pairwise_sq_distances(queries[rows], manifold)
    inside[rows] = np.any(d <= radii[None, :], axis=1)
  return float(inside.mean())


def precision_recall(real: Any, fake: Any, k: int = 3,
                     real_radii: Optional[np.ndarray] = None) -> PrecisionRecall:
  """Improved precision and recall (Kynkäänniemi et al., 2019).

  The real manifold is the union of balls around each real sample reaching
  its ``k``-th nearest real neighbour; precision is the share of generated
  samples inside it. Recall swaps the roles.

  Args:
    real: (m, d) features of real samples.
    fake: (n, d) features of generated samples.
    k: neighbourhood size (3 in the paper).
    real_radii: `knn_radii(real, k)`, when already computed (e.g. reused
      across evaluations of one real set).

  Returns:
    ``PrecisionRecall(precision, recall)``, both in [0, 1].
  """
  real = _features(real, "real")
  fake = _features(fake, "fake")
  _same_dim(real, fake)
  if real_radii is None:
    real_radii = knn_radii(real, k)
  fake_radii = knn_radii(fake, k)
  return PrecisionRecall(_coverage(real, np.asarray(real_radii, np.float64), fake),
                         _coverage(fake, fake_radii, real))
