"""An evaluation measured in shares (one per process) and merged scores like one pass;
``metrics`` chooses what is computed. The two-process run itself:
tests/test_multi_process.py::test_two_processes_evaluate_like_one."""

from __future__ import annotations

import numpy as np
import pytest

from sagan_jax.eval import EvalError, Evaluator, RealImages, metrics, stats
from sagan_jax.eval.evaluator import METRICS
from sagan_jax.eval.measurement import merge
from sagan_jax.eval.reference_stats import ReferenceStats
from sagan_jax.runs.shared_evaluation import process_share
from sagan_jax.train.config import EVAL_METRICS, ConfigError, base_config, validate

SIZE, DIM, CLASSES = 8, 4, (0, 1)


class LinearReader:
  """A feature extractor small enough to reason about: 4 random projections of the pixels
  as features, a softmax of the first 3 as class probabilities (labels 0, 1, 2)."""
  name = "linear_reader"
  labels = (0, 1, 2)

  def __init__(self):
    self.weights = np.random.default_rng(1).normal(size=(SIZE * SIZE, DIM))

  def __call__(self, images):
    x = np.asarray(images, np.float64).reshape(len(images), -1) @ self.weights
    logits = x[:, :3] - x[:, :3].max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {"features": x.astype(np.float32), "probs": probs.astype(np.float32)}


def images(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-1, 1, (n, SIZE, SIZE, 1)).astype(np.float32)


def evaluator(**options) -> Evaluator:
  real = RealImages(images(40, 0), np.arange(40) % 2, "40 random images")
  return Evaluator(real, CLASSES, LinearReader(), kid_subsets=10, **options)


def batches(x: np.ndarray, size: int = 7):
  return (x[i:i + size] for i in range(0, len(x), size))


def fid_merge_tolerance(generated: stats.Moments, real: stats.Moments) -> float:
  """How far an FID from merged moments may lie from one from the same samples' moments
  taken in one pass (the same features, only the float64 moments' round-off differs).

  One pass vs Chan's merge of shares: each moment entry within δ = 4 n ε₆₄ ‖Σf‖ (a sum of
  n terms, plus the merge's few operations). `trace_sqrt_product` sums √λᵢ over the d
  eigenvalues of M = √Σf Σr √Σf; each λᵢ moves by at most Δ = δ ‖Σr‖ plus eigvalsh's
  backward error d ε ‖Σf‖ ‖Σr‖, and |√(λ + x) − √λ| ≤ min(√|x|, |x| / √λ): the first bound
  for eigenvalues at 0 (a covariance of rank < d: fewer samples than features), the second
  for the others. The FID holds 2 tr √M, so 2 Σᵢ min(√Δ, Δ / √λᵢ); the regular terms
  (traces, ‖μf − μr‖²) move by 4 n ε of their size.
  """
  eps = np.finfo(np.float64).eps
  mu_f, sigma_f = stats.mean_cov(generated)
  mu_r, sigma_r = stats.mean_cov(real)
  d, n = sigma_f.shape[0], generated.count
  shift = (4 * n + d) * eps * np.linalg.norm(sigma_f, 2) * np.linalg.norm(sigma_r, 2)
  root = metrics.sqrtm_psd(sigma_f)
  eigenvalues = np.clip(np.linalg.eigvalsh(root @ sigma_r @ root), 0, None)
  with np.errstate(divide="ignore"):
    per_eigenvalue = np.minimum(np.sqrt(shift), shift / np.sqrt(eigenvalues))
  regular = 4 * n * eps * (np.trace(sigma_f) + np.trace(sigma_r) + np.sum((mu_f - mu_r) ** 2))
  return 2 * per_eigenvalue.sum() + regular


def test_shares_merged_score_like_one_pass():
  fake = images(60, 2)
  expected = np.arange(60) % 2  # a conditional generator's classes, i mod K
  scorer = evaluator()
  whole = scorer.evaluate(batches(fake), expected)
  # Three uneven shares in sample order, and a process whose share was empty.
  bounds = [(0, 17), (17, 37), (37, 60)]
  parts = [scorer.measure(batches(fake[a:b]), expected[a:b]) for a, b in bounds] + [None]
  merged = merge(parts, keep=scorer.settings["max_kept"])
  shared = scorer.score(merged)

  assert shared["num_samples"] == whole["num_samples"] == 60
  real = scorer.real_reference().all.moments
  tolerance = fid_merge_tolerance(merged.features.moments, real)
  assert abs(shared["fid"] - whole["fid"]) <= tolerance, (shared["fid"], whole["fid"], tolerance)
  for c in CLASSES:
    per_class = fid_merge_tolerance(merged.classes.moments[c], stats.of(
        scorer.real_reference().all.features[np.asarray(scorer.real.labels) == c]))
    assert abs(shared[f"intra_fid/{c}"] - whole[f"intra_fid/{c}"]) <= per_class
  # The kept features and the probabilities are the same arrays in the same order: the
  # metrics read from them are equal, not just close.
  for key in ("kid", "kid_std", "precision", "recall", "classifier_score",
              "classifier_score_1split", "confident_fraction", "conditional_accuracy",
              "conditional_accuracy/0", "recall_0", "recall_1", "count_0", "share_1"):
    assert shared[key] == whole[key], key
  assert merged.classes.count == {0: 30, 1: 30}


def test_merge_keeps_the_first_samples_features():
  scorer = evaluator(max_kept=10)
  fake = images(16, 3)
  parts = [scorer.measure(batches(fake[:6])), scorer.measure(batches(fake[6:]))]
  merged = merge(parts, keep=10)
  alone = scorer.measure(batches(fake))
  np.testing.assert_array_equal(merged.features.features, alone.features.features)
  np.testing.assert_array_equal(merged.features.probs, alone.features.probs)
  with pytest.raises(EvalError, match="no share of the evaluation held any samples"):
    merge([None, None])


def test_chosen_metrics_only():
  fake = images(30, 4)
  expected = np.arange(30) % 2
  only_fid = evaluator(metrics=("fid",)).evaluate(batches(fake), expected)
  skipped = ("kid", "precision", "recall", "classifier_score", "confident_fraction",
             "recall_0", "spread_ratio", "collapsed", "conditional_accuracy", "intra_fid")
  assert "fid" in only_fid and not [k for k in skipped if k in only_fid]
  assert "fid" in only_fid["real"] and "kid" not in only_fid["real"]
  kid = evaluator(metrics=("kid", "conditional")).evaluate(batches(fake), expected)
  assert {"kid", "conditional_accuracy", "intra_fid"} <= set(kid)
  assert not {"fid", "precision", "classifier_score"} & set(kid)
  assert kid["settings"]["metrics"] == ["kid", "conditional"]
  # Nothing kept that no chosen metric reads.
  measured = evaluator(metrics=("fid",)).measure(batches(fake))
  assert measured.features.features.shape == (0, DIM) and measured.features.probs is None


def test_unknown_metric_one_line():
  with pytest.raises(EvalError) as error:
    evaluator(metrics=("fid", "fd"))
  assert str(error.value) == ("unknown metric 'fd'; choose from ['fid', 'is', 'kid', "
                              "'precision_recall', 'conditional']")


def test_config_metrics_validated():
  assert METRICS == EVAL_METRICS  # the names the config accepts are the evaluator's
  config = base_config()
  assert tuple(config.eval.metrics) == EVAL_METRICS  # default: everything, as before
  config.eval.metrics = ("fid", "frechet")
  with pytest.raises(ConfigError, match=r"^config\.eval\.metrics: unknown metric 'frechet'; "
                                        r"choose from \['fid', 'is', 'kid'"):
    validate(config)
  config.eval.metrics = ("fid",)
  config.eval.best_metric = "kid"
  with pytest.raises(ConfigError, match=r"^config\.eval\.best_metric='kid' is computed by "
                                        r"'kid', which config\.eval\.metrics=\('fid',\) leaves"):
    validate(config)
  config.eval.best_metric = "fid"
  validate(config)


@pytest.mark.parametrize("num_samples, count", [(8, 2), (10, 3), (2, 4), (50_000, 7)])
def test_process_shares_cover_the_samples_in_order(num_samples, count):
  shares = [process_share(num_samples, i, count) for i in range(count)]
  assert shares[0][0] == 0 and shares[-1][1] == num_samples
  assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))
  sizes = [b - a for a, b in shares]
  assert max(sizes) - min(sizes) <= 1


def test_class_moments_only_where_intra_fid_can_use_them():
  """Per-class moments (d×d float64 each: 33 GB for 1,000 ImageNet classes of Inception
  features) are kept only when the scoring side has real images of each class."""
  fake, expected = images(12, 3), np.arange(12) % 2
  with_images = evaluator().measure(batches(fake), expected)
  assert set(with_images.classes.moments) == set(CLASSES)
  real_features = LinearReader()(images(40, 0))["features"]
  reference = ReferenceStats(*stats.mean_cov(stats.of(real_features)), 40, "linear_reader",
                             "40 random images", real_features)
  against_stats = Evaluator(reference, CLASSES, LinearReader(), kid_subsets=10)
  measured = against_stats.measure(batches(fake), expected)
  assert measured.classes.moments == {} and measured.classes.count == {0: 6, 1: 6}
  assert "conditional_accuracy" in against_stats.score(measured)
  # A measuring-only process is told what the scoring one holds.
  assert Evaluator(None, CLASSES, LinearReader()).measure(
      batches(fake), expected).classes.moments == {}
  assert set(Evaluator(None, CLASSES, LinearReader(), per_class_reference=True).measure(
      batches(fake), expected).classes.moments) == set(CLASSES)
