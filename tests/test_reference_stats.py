"""Reference statistics (pytorch-fid's .npz both ways), the Evaluator against them, the IS
keys, and ``evaluate.py stats`` on an image folder.

Cheap extractors stand in for the Inception here (its numbers: test_inception_parity.py).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sagan_jax import runs
from sagan_jax.eval import (EvalAssetNotFoundError, EvalError, Evaluator, ReferenceStats,
                            extract, format_table, metrics, reference_stats, scalars)
from sagan_jax.runs import dataset_stats
from sagan_jax.train.config import base_config

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _pixels(images):
  """Features: a coarse grid of pixels; probs: a softmax over them (an 'IS' to compute)."""
  x = np.asarray(images, np.float32)
  features = x[:, ::8, ::8, :].reshape(len(x), -1)
  logits = 3 * features[:, :10]
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  return {"features": features, "probs": probs}


_pixels.name = "pixels"
_pixels.score_name = "pixel_score"


def _images(seed, count, size=16):
  return np.random.default_rng(seed).uniform(-1, 1, (count, size, size, 3)).astype(np.float32)


def _batches(images, size=7):
  return [images[i:i + size] for i in range(0, len(images), size)]


def test_pytorch_fid_npz_loads_and_ours_loads_in_pytorch_fid(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((50, 6))
  mu, sigma = np.mean(x, axis=0), np.cov(x, rowvar=False)
  theirs = tmp_path / "theirs.npz"
  np.savez_compressed(theirs, mu=mu, sigma=sigma)  # pytorch-fid's save_fid_stats
  loaded = reference_stats.load(theirs)
  np.testing.assert_array_equal(loaded.mu, mu)
  np.testing.assert_array_equal(loaded.sigma, sigma)
  assert loaded.num_images is None and loaded.extractor is None and loaded.features is None

  ours = tmp_path / "ours.npz"
  reference_stats.save(ours, ReferenceStats(mu, sigma, 50, "pixels", "fifty rows", x[:5]))
  with np.load(ours) as f:  # pytorch-fid's compute_statistics_of_path
    np.testing.assert_array_equal(f["mu"][:], mu)
    np.testing.assert_array_equal(f["sigma"][:], sigma)
  back = reference_stats.load(ours)
  assert (back.num_images, back.extractor, back.description) == (50, "pixels", "fifty rows")
  np.testing.assert_array_equal(back.features, x[:5].astype(np.float32))


@pytest.mark.parametrize("arrays, message", [
    ({"mu": np.zeros(3)}, "no 'sigma'"),
    ({"mu": np.zeros(3), "sigma": np.eye(4)}, "do not fit together"),
    ({"mu": np.zeros(2), "sigma": np.array([[1.0, 0.5], [0.0, 1.0]])}, "not symmetric"),
    ({"mu": np.array([0.0, np.nan]), "sigma": np.eye(2)}, "non-finite"),
    ({"mu": np.zeros(2), "sigma": np.eye(2), "features": np.zeros((4, 3))}, "do not fit mu"),
])
def test_bad_statistics_files(tmp_path, arrays, message):
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  with pytest.raises(EvalError, match=message):
    reference_stats.load(path)


def test_missing_and_non_npz_files(tmp_path):
  with pytest.raises(EvalAssetNotFoundError, match="evaluate.py stats"):
    reference_stats.load(tmp_path / "none.npz")
  (tmp_path / "image.png").write_bytes(b"\x89PNG not really")
  with pytest.raises(EvalError, match="not an .npz archive"):
    reference_stats.load(tmp_path / "image.png")


def test_evaluator_against_statistics_is_the_standard_fid():
  real, fake = _images(0, 40), _images(1, 30) * 0.8
  real_set = extract(_pixels, _batches(real))
  with_features = reference_stats.from_features(real_set, "pixels", "40 random images")
  fid_only = with_features._replace(features=None)
  evaluator = Evaluator(with_features, classes=(), extractor=_pixels, kid_subsets=3,
                        kid_subset_size=10)
  result = evaluator.evaluate(_batches(fake))
  fake_features = _pixels(fake)["features"]
  assert result["fid"] == pytest.approx(metrics.fid(fake_features, real_set.features), rel=1e-9)
  assert {"kid", "kid_std", "precision", "recall"} <= set(result)
  assert "real" not in result and result["num_real"] == 40
  # The IS, named by the extractor, with 10 splits and with 1.
  probs = _pixels(fake)["probs"]
  assert result["pixel_score_1split"] == pytest.approx(metrics.classifier_score(probs, 1).mean)
  assert "pixel_score" in result and "pixel_score_std" in result
  assert "eval/pixel_score_1split" in scalars(result)
  table = format_table(result)
  assert "40 random images" in table and "real vs real" not in table

  only_fid = Evaluator(fid_only, (), _pixels).evaluate(_batches(fake))
  assert only_fid["fid"] == pytest.approx(result["fid"])
  assert "kid" not in only_fid and "precision" not in only_fid


def test_evaluator_refuses_statistics_of_another_network():
  real_set = extract(_pixels, _batches(_images(0, 20)))
  other = reference_stats.from_features(real_set, "fid_inception", "from elsewhere")
  with pytest.raises(EvalError, match="made with 'fid_inception' features"):
    Evaluator(other, (), _pixels).evaluate(_batches(_images(1, 8)))
  unnamed = ReferenceStats(np.zeros(5), np.eye(5), None, None, "pytorch-fid's")
  with pytest.raises(EvalError, match="5-d features, 'pixels' gives 12-d"):
    Evaluator(unnamed, (), _pixels).evaluate(_batches(_images(1, 8)))


def test_inception_score_splits_follow_the_reference_implementation():
  """Parts at ⌊i·n/splits⌋, as Salimans et al.'s inception_score.py cuts them."""
  probs = np.random.default_rng(0).dirichlet(np.ones(5) * 0.3, size=23)
  expected = []
  for i in range(10):
    part = probs[i * 23 // 10:(i + 1) * 23 // 10]
    kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
    expected.append(np.exp(kl.sum(1).mean()))
  score = metrics.classifier_score(probs, 10)
  assert score.mean == pytest.approx(np.mean(expected), rel=1e-12)
  assert score.std == pytest.approx(np.std(expected), rel=1e-10)


def test_dataset_statistics_of_a_folder_stream_its_files(tmp_path):
  rng = np.random.default_rng(3)
  pixels = rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
  for i, image in enumerate(pixels):
    Image.fromarray(image).save(tmp_path / f"{i}.png")
  source = dataset_stats.dataset_source(f"folder:{tmp_path}")
  assert source.image_shape == (16, 16, 3)  # its own size, not resized
  stats = dataset_stats.dataset_statistics(source, _pixels, batch_size=4, keep_features=5)
  floats = (pixels.astype(np.float32) / 255 - 0.5) / 0.5  # what the contract's extractor sees
  direct = _pixels(floats)["features"]
  mu, sigma = metrics.gaussian_fit(direct)
  np.testing.assert_allclose(stats.mu, mu, rtol=1e-12)
  np.testing.assert_allclose(stats.sigma, sigma, rtol=1e-9, atol=1e-12)
  assert stats.num_images == 9 and stats.extractor == "pixels" and stats.features.shape == (5, 12)

  (tmp_path / "sub").mkdir()
  Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / "sub" / "0.png")
  with pytest.raises(EvalError, match="8x12: pass --image_size"):
    dataset_stats.dataset_source(str(tmp_path / "sub"))
  with pytest.raises(EvalError, match="neither tfds:NAME nor an existing folder"):
    dataset_stats.dataset_source(str(tmp_path / "none"))
  with pytest.raises(EvalError, match="--out must name an .npz"):
    dataset_stats.write_dataset_statistics(str(tmp_path), str(tmp_path / "s.txt"),
                                           extractor=_pixels)


def test_evaluate_py_stats_then_ref_stats(tmp_path):
  """`evaluate.py stats` on a folder of digits-sized images (the packaged classifier's
  features: no weights file needed), then a generator scored against that file."""
  folder = tmp_path / "real"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(12):
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(folder / f"{i}.png")
  out = tmp_path / "real.npz"
  proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "stats", "--source",
                         f"folder:{folder}", "--out", str(out), "--features", "mnist",
                         "--batch_size", "5"], capture_output=True, text=True, cwd=ROOT,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1] == str(out)
  reference = reference_stats.load(out)
  assert reference.num_images == 12 and reference.extractor == "mnist_classifier"
  assert reference.features.shape == (12, 64)

  # The library path of `evaluate.py --ref_stats`: any run config, no held-out split needed.
  config = base_config()
  config.data.source = "image_folder"
  evaluator = runs.make_evaluator(config, runs.make_extractor("mnist"), ref_stats=str(out),
                                  kid_subsets=2)
  result = evaluator.evaluate([rng.uniform(-1, 1, (6, 64, 64, 1)).astype(np.float32)])
  assert result["num_real"] == 12 and np.isfinite(result["fid"])
  assert "classifier_score_1split" in result
  with pytest.raises(EvalError, match="features must be one of"):
    runs.make_extractor("vgg")
