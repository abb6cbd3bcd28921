"""sagan_jax.eval metrics against independent float64 NumPy/SciPy computations,
closed forms, and the streaming statistics against one-shot ones."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.stats

from sagan_jax.eval import features as features_lib
from sagan_jax.eval import metrics, stats

RTOL = 1e-6


def _correlated(rng, n, d, shift=0.0, scale=1.0):
  mixing = rng.normal(size=(d, d)) / np.sqrt(d)
  return (rng.normal(size=(n, d)) @ mixing) * scale + shift


def _scipy_fid(x, y):
  mu1, mu2 = x.mean(0), y.mean(0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
               - 2 * np.trace(covmean.real))


# ------------------------------------------------------------------------------ FID


def test_fid_matches_scipy_sqrtm():
  rng = np.random.default_rng(0)
  x = _correlated(rng, 300, 16)
  y = _correlated(rng, 250, 16, shift=0.3, scale=1.5)
  np.testing.assert_allclose(metrics.fid(x, y), _scipy_fid(x, y), rtol=RTOL)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  np.testing.assert_allclose(metrics.trace_sqrt_product(s1, s2),
                             np.trace(scipy.linalg.sqrtm(s1 @ s2).real), rtol=RTOL)
  np.testing.assert_allclose(metrics.sqrtm_psd(s1), scipy.linalg.sqrtm(s1).real,
                             rtol=RTOL, atol=1e-10)


def test_fid_accepts_jax_and_float32_inputs():
  import jax.numpy as jnp
  rng = np.random.default_rng(1)
  x = _correlated(rng, 100, 8).astype(np.float32)
  y = _correlated(rng, 100, 8, shift=1.0).astype(np.float32)
  np.testing.assert_allclose(metrics.fid(jnp.asarray(x), jnp.asarray(y)),
                             _scipy_fid(x.astype(np.float64), y.astype(np.float64)), rtol=RTOL)


def test_fid_of_identical_sets_is_zero_even_when_rank_deficient():
  rng = np.random.default_rng(2)
  for n, d in ((200, 10), (20, 32)):  # the second covariance has rank 19 < 32
    x = _correlated(rng, n, d, shift=5.0)
    value = metrics.fid(x, x)
    assert 0.0 <= value < 1e-9 * np.trace(np.cov(x, rowvar=False))


def test_frechet_distance_closed_forms():
  rng = np.random.default_rng(3)
  d = 6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  # Commuting (diagonal) covariances: Σ (√a − √b)².
  a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  np.testing.assert_allclose(metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)),
                             expected, rtol=1e-12)
  # A full covariance and a multiple of it: Σ₂ = cΣ₁ → (1 − √c)² tr Σ₁.
  m = rng.normal(size=(d, d))
  sigma = m @ m.T + 0.1 * np.eye(d)
  c = 2.5
  expected = np.sum((mu1 - mu2) ** 2) + (1 - np.sqrt(c)) ** 2 * np.trace(sigma)
  np.testing.assert_allclose(metrics.frechet_distance(mu1, sigma, mu2, c * sigma), expected,
                             rtol=1e-10)
  # Same covariance, different means: only the mean term remains.
  np.testing.assert_allclose(metrics.frechet_distance(mu1, sigma, mu2, sigma),
                             np.sum((mu1 - mu2) ** 2), rtol=1e-8)


def test_frechet_distance_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="inconsistent shapes"):
    metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match="2-D"):
    metrics.fid(np.zeros(5), np.zeros(5))
  with pytest.raises(ValueError, match="non-finite"):
    metrics.fid(np.full((4, 2), np.nan), np.zeros((4, 2)))


# ------------------------------------------------------------------------ streaming


def test_streaming_moments_equal_one_shot():
  rng = np.random.default_rng(4)
  x = _correlated(rng, 1000, 12, shift=1e3)  # a large mean: naive Σx² would cancel
  moments = stats.init(12)
  for piece in np.split(x, [1, 7, 300, 301, 640]):
    moments = stats.update(moments, piece.astype(np.float64))
  mean, cov = stats.mean_cov(moments)
  assert moments.count == 1000
  np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
  np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
  # Merging in another grouping gives the same statistics.
  left = stats.merge(stats.of(x[:500]), stats.of(x[500:800]))
  tree = stats.merge(left, stats.merge(stats.of(x[800:]), stats.init(12)))
  np.testing.assert_allclose(stats.mean_cov(tree)[1], cov, rtol=1e-9, atol=1e-9)
  # And FID from streaming statistics equals the one-shot FID.
  y = _correlated(rng, 400, 12, shift=1e3 + 0.5)
  streamed = metrics.frechet_distance(mean, cov, *stats.mean_cov(stats.of(y)))
  np.testing.assert_allclose(streamed, metrics.fid(x, y), rtol=1e-9)


def test_extract_streams_statistics_and_keeps_a_prefix():
  rng = np.random.default_rng(5)
  images = rng.uniform(-1, 1, size=(37, 4, 4, 1)).astype(np.float32)
  projection = rng.normal(size=(16, 3)).astype(np.float32)

  def extractor(batch):
    flat = np.asarray(batch).reshape(len(batch), -1)
    logits = flat[:, :5]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return {"features": flat @ projection, "probs": probs}

  batches = (images[i:i + 8] for i in range(0, 37, 8))
  out = features_lib.extract(extractor, batches, keep=10)
  everything = images.reshape(37, -1) @ projection
  assert out.count == 37 and out.features.shape == (10, 3) and out.probs.shape == (37, 5)
  np.testing.assert_allclose(out.features, everything[:10], rtol=1e-6)
  mean, cov = stats.mean_cov(out.moments)
  np.testing.assert_allclose(mean, everything.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(cov, np.cov(everything.astype(np.float64), rowvar=False),
                             rtol=1e-6, atol=1e-7)
  with pytest.raises(TypeError, match="dict"):
    features_lib.extract(lambda b: np.zeros((len(b), 3)), [images])


# ------------------------------------------------------------------------------ KID


def _loop_mmd2(x, y):
  """Unbiased MMD² with explicit loops: the definition, term by term."""
  k = lambda a, b: (np.dot(a, b) / len(a) + 1.0) ** 3
  m, n = len(x), len(y)
  kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
  return kxx + kyy - 2 * kxy


def test_kernel_mmd2_matches_the_definition():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(12, 5))
  y = rng.normal(size=(15, 5)) + 0.4
  np.testing.assert_allclose(metrics.kernel_mmd2(x, y), _loop_mmd2(x, y), rtol=RTOL)
  # One subset of the whole sets is the plain estimator (the order does not matter).
  x2 = rng.normal(size=(15, 5))
  result = metrics.kid(x2, y, num_subsets=1, subset_size=100)
  np.testing.assert_allclose(result.mean, _loop_mmd2(x2, y), rtol=RTOL)
  assert result.std == 0.0


def test_kid_subsets_are_averaged_and_reproducible():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(60, 4))
  y = rng.normal(size=(50, 4)) * 1.3
  a = metrics.kid(x, y, num_subsets=5, subset_size=20, seed=3)
  b = metrics.kid(x, y, num_subsets=5, subset_size=20, seed=3)
  assert a == b
  # The same subsets, drawn independently, through the definition.
  draw = np.random.default_rng(3)
  values = []
  for _ in range(5):
    xs = x[draw.choice(60, 20, replace=False)]
    ys = y[draw.choice(50, 20, replace=False)]
    values.append(_loop_mmd2(xs, ys))
  np.testing.assert_allclose(a.mean, np.mean(values), rtol=RTOL)
  np.testing.assert_allclose(a.std, np.std(values), rtol=RTOL)


def test_kid_of_one_distribution_is_near_zero():
  rng = np.random.default_rng(8)
  x, y = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
  same = metrics.kid(x, y, num_subsets=8, subset_size=300)
  different = metrics.kid(x, y + 0.5, num_subsets=8, subset_size=300)
  assert abs(same.mean) < 0.02 * different.mean
  assert different.mean > 5 * different.std


# ------------------------------------------------------------------ classifier score


def test_classifier_score_known_cases():
  k = 7
  one_hot = np.eye(k)[np.arange(70) % k]
  np.testing.assert_allclose(metrics.classifier_score(one_hot, splits=1).mean, k, rtol=1e-12)
  split = metrics.classifier_score(one_hot, splits=10)  # each split holds every class once
  np.testing.assert_allclose(split.mean, k, rtol=1e-12)
  assert split.std < 1e-12
  uniform = np.full((20, k), 1.0 / k)
  np.testing.assert_allclose(metrics.classifier_score(uniform, splits=2).mean, 1.0, rtol=1e-12)
  one_class = np.eye(k)[np.zeros(20, int)]
  np.testing.assert_allclose(metrics.classifier_score(one_class, splits=1).mean, 1.0)


def test_classifier_score_matches_scipy_entropy():
  rng = np.random.default_rng(9)
  logits = rng.normal(size=(100, 10)) * 3
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  expected = []
  for part in np.array_split(probs, 4):
    marginal = part.mean(0)
    expected.append(np.exp(np.mean([scipy.stats.entropy(p, marginal) for p in part])))
  result = metrics.classifier_score(probs, splits=4)
  np.testing.assert_allclose(result.mean, np.mean(expected), rtol=RTOL)
  np.testing.assert_allclose(result.std, np.std(expected), rtol=RTOL)
  with pytest.raises(ValueError, match="splits"):
    metrics.classifier_score(probs, splits=101)


# ---------------------------------------------------------------- precision / recall


def _cdist_precision_recall(real, fake, k):
  """Kynkäänniemi et al. by brute force with SciPy's Euclidean distances."""
  d_rr = scipy.spatial.distance.cdist(real, real)
  d_ff = scipy.spatial.distance.cdist(fake, fake)
  d_fr = scipy.spatial.distance.cdist(fake, real)
  real_radius = np.sort(d_rr, axis=1)[:, k]
  fake_radius = np.sort(d_ff, axis=1)[:, k]
  precision = np.mean(np.any(d_fr <= real_radius[None, :], axis=1))
  recall = np.mean(np.any(d_fr.T <= fake_radius[None, :], axis=1))
  return precision, recall


def test_precision_recall_match_brute_force(monkeypatch):
  rng = np.random.default_rng(10)
  real = rng.normal(size=(120, 6))
  fake = rng.normal(size=(90, 6)) * 1.4 + 0.5
  expected = _cdist_precision_recall(real, fake, 3)
  result = metrics.precision_recall(real, fake, k=3)
  assert 0 < result.precision < 1 and 0 < result.recall < 1
  np.testing.assert_allclose(result, expected, rtol=1e-12)
  np.testing.assert_allclose(metrics.knn_radii(real, 3),
                             np.sort(scipy.spatial.distance.cdist(real, real), 1)[:, 3] ** 2,
                             rtol=1e-9)
  # Small row blocks (the path large sets take) give the same answer.
  monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 500)
  np.testing.assert_allclose(metrics.precision_recall(real, fake, k=3), expected, rtol=1e-12)
  np.testing.assert_allclose(metrics.precision_recall(real, fake, k=5),
                             _cdist_precision_recall(real, fake, 5), rtol=1e-12)


def test_precision_recall_known_cases():
  rng = np.random.default_rng(11)
  x = rng.normal(size=(80, 5))
  assert metrics.precision_recall(x, x) == (1.0, 1.0)
  far = metrics.precision_recall(x, rng.normal(size=(80, 5)) + 100.0)
  assert far == (0.0, 0.0)
  # Mode collapse: every fake sample sits on one real one → precision 1, recall tiny.
  collapsed = np.repeat(x[:1], 80, axis=0) + 1e-6 * rng.normal(size=(80, 5))
  result = metrics.precision_recall(x, collapsed)
  assert result.precision == 1.0 and result.recall < 0.05
  with pytest.raises(ValueError, match="k must be"):
    metrics.precision_recall(x[:3], x[:3], k=3)
