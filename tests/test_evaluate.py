"""evaluate_run / evaluate.py on a tiny two-step checkpoint, the packaged classifier,
the one sampling path over several (simulated CPU) devices, and Evaluator alone."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from sagan_jax import data as data_lib
from sagan_jax import eval as eval_lib
from sagan_jax import runs
from sagan_jax.eval import mnist_classifier as mc
from sagan_jax.runs import evaluation, restore_generator, train_and_evaluate
from sagan_jax.train.config import EVAL_FEATURES, ConfigError, base_config, validate
from tests.tiny_configs import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
METRICS = ("fid", "kid", "kid_std", "precision", "recall", "classifier_score",
           "classifier_score_std", "confident_fraction", "count_7", "count_8", "share_7",
           "share_8", "ratio_7_to_8")


def _tiny_config():
  # The chapter's split at 200 images per digit: 300 held-out sevens and eights.
  return tiny_config(num_steps=2, data__per_digit=200)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tiny_run"))
  train_and_evaluate(_tiny_config(), path)
  return path


@pytest.fixture(scope="module")
def classifier():
  return mc.MnistClassifier()


@pytest.fixture(scope="module")
def result(workdir, classifier):
  # 30 does not divide over the 4 test devices: batches are padded, the rest dropped.
  return runs.evaluate_run(workdir, num_samples=64, batch_size=30, extractor=classifier,
                           kid_subsets=10)


def test_packaged_classifier_reaches_its_test_accuracy(classifier):
  assert classifier.meta["test_accuracy"] >= 0.97
  _, test = mc.split_indices(base_config().data.digits, base_config().data.per_digit)
  images, labels = mc.mnist_64(test)
  out = classifier(images[:8])
  assert out["features"].shape == (8, 64) and out["probs"].shape == (8, 10)
  np.testing.assert_allclose(np.asarray(out["probs"]).sum(1), 1.0, rtol=1e-5)
  assert mc.accuracy(classifier, images, labels) >= 0.97
  # The GAN's training images were never part of the classifier's data.
  train, test = mc.split_indices(base_config().data.digits, base_config().data.per_digit)
  _, all_labels = mc.load_mnist_5k()
  for d in (7, 8):
    gan_train = np.flatnonzero(all_labels == d)[:200]
    assert not set(gan_train) & (set(train) | set(test))


def test_evaluate_run_writes_json_and_scalars(workdir, result):
  assert result["step"] == 2 and result["num_samples"] == 64 and result["num_real"] == 600
  assert result["extractor"] == "mnist_classifier"
  for key in METRICS:
    assert key in result, key
  for key in ("fid", "kid", "kid_std", "precision", "recall", "classifier_score"):
    assert key in result["real"], key
  assert result["fid"] > 0 and result["real"]["fid"] > 0
  # A two-step generator is far from the digits; two halves of real digits are close.
  assert result["fid"] > 3 * result["real"]["fid"]
  assert result["real"]["precision"] > 0.5 and result["real"]["recall"] > 0.5
  assert result["real"]["confident_fraction"] > 0.9
  assert 0.4 < result["real"]["share_7"] < 0.6
  for key in ("precision", "recall", "confident_fraction"):
    assert 0.0 <= result[key] <= 1.0
  assert 1.0 <= result["classifier_score"] <= 10.0
  assert result["count_7"] + result["count_8"] == round(result["confident_fraction"] * 64)

  path = os.path.join(workdir, "eval", "eval_000002_mnist_heldout_n64.json")
  assert result["path"] == path
  with open(path) as f:
    written = json.load(f)  # strict JSON: no NaN/Infinity
  assert written["fid"] == pytest.approx(result["fid"])
  assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]

  tags = set()
  for name in os.listdir(workdir):
    if name.startswith("events.out.tfevents"):
      data = pathlib.Path(workdir, name).read_bytes()
      pos = 0
      while pos < len(data):
        (length,) = np.frombuffer(data[pos:pos + 8], "<u8")
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + int(length)])
        pos += 16 + int(length)
        tags |= {(event.step, v.tag) for v in event.summary.value}
  assert {(2, "eval/fid"), (2, "eval/real/fid"), (2, "eval/precision")} <= tags


def test_format_table_lists_every_metric(result):
  table = runs.format_table(result)
  for label in ("FID", "KID", "precision", "recall", "classifier score", "ratio 7:8"):
    assert label in table


def test_generation_does_not_depend_on_batch_size_or_devices(workdir):
  if jax.local_device_count() < 2:
    pytest.skip("needs several devices (XLA_FLAGS=--xla_force_host_platform_device_count)")
  run = restore_generator(workdir)
  one_device = runs.Sampler(run.generator, 20, devices=jax.local_devices()[:1])
  one = np.asarray(one_device.sample(run.variables, 10, seed=3).images)
  many_batches = [s.images for s in runs.Sampler(run.generator, 20).batches(
      run.variables, 10, seed=3, batch_size=3)]
  assert [b.shape[0] for b in many_batches] == [3, 3, 3, 1]
  assert len(many_batches[0].sharding.device_set) > 1  # split over the devices
  # XLA:CPU sums in another order on one device than on several: float32 rounding.
  np.testing.assert_allclose(np.concatenate([np.asarray(b) for b in many_batches]), one,
                             atol=1e-5)
  # Drawn from index 4 on (a process's share of an evaluation): samples 4… of the same seed.
  share = runs.Sampler(run.generator, 20, devices=jax.local_devices()[:1]).batches(
      run.variables, 6, seed=3, start=4)
  np.testing.assert_array_equal(np.asarray(next(share).images), one[4:])
  # Sample i is the same image whoever asks: here the first 4 with their attention maps.
  with_maps = runs.Sampler(run.generator, 20, return_attention=True).sample(
      run.variables, 4, seed=3)
  np.testing.assert_allclose(np.asarray(with_maps.images), one[:4], atol=1e-5)
  assert with_maps.attention[-1].shape == (4, 1024, 1024)


def test_any_extractor_plugs_in_and_probs_are_optional(workdir):
  def pixels(images):  # features only: the classifier metrics are skipped
    x = np.asarray(images)
    return {"features": x[:, ::8, ::8, 0].reshape(len(x), -1), "probs": None}

  pixels.name = "pixels"
  run = restore_generator(workdir)
  evaluator = runs.make_evaluator(run.config, pixels, kid_subsets=2)
  out = evaluator.evaluate([np.zeros((5, 64, 64, 1), np.float32),
                            np.ones((5, 64, 64, 1), np.float32)])
  assert out["extractor"] == "pixels" and out["num_samples"] == 10
  assert "classifier_score" not in out and "classifier_score" not in out["real"]
  assert math.isfinite(out["fid"]) and out["precision"] == 0.0


def test_bad_arguments_are_eval_errors(workdir):
  with pytest.raises(eval_lib.EvalError, match="num_samples"):
    runs.evaluate_run(workdir, num_samples=1)
  config = _tiny_config()
  config.data.source = "image_folder"
  with pytest.raises(eval_lib.EvalError, match="mnist78"):
    runs.heldout_images(config)
  with pytest.raises(eval_lib.EvalError, match=r"no held-out images: give reference "
                     r"statistics \(config\.eval\.ref_stats"):
    runs.make_evaluator(config, extractor=lambda x: x)
  with pytest.raises(FileNotFoundError, match="config.json"):
    runs.evaluate_run(os.path.join(workdir, "missing"), num_samples=8)
  with pytest.raises(eval_lib.EvalAssetNotFoundError, match="train_mnist_classifier"):
    mc.MnistClassifier(os.path.join(workdir, "no_weights.msgpack"))


def test_command_line_errors_are_one_line(tmp_path):
  proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--workdir",
                         str(tmp_path / "nothing")], capture_output=True, text=True,
                        cwd=ROOT, timeout=120)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
  assert "Traceback" not in proc.stderr


def test_a_pytorch_generator_scores_like_a_run(tmp_path, classifier):
  """A chapter Generator trained in PyTorch, saved as a state_dict, is scored by the same
  code: converted by interop.from_torch, then generated and measured like a checkpoint."""
  torch = pytest.importorskip("torch")
  from sagan_jax.interop.torch import from_torch
  from sagan_jax.models import build_generator
  from tests.reference import torch_sagan

  config = _tiny_config()
  torch.manual_seed(0)
  G, _ = torch_sagan.init_chapter_models(z_dim=20, image_size=config.model.width)
  path = str(tmp_path / "generator_000002.pt")
  torch.save(G.state_dict(), path)
  result = runs.evaluate_torch_generator(path, config, num_samples=16, batch_size=8,
                                         extractor=classifier, kid_subsets=2)
  assert result["path"] == str(tmp_path / "generator_000002_eval_000000_mnist_heldout_n16.json")
  with open(result["path"]) as f:
    written = json.load(f)
  assert written["torch_generator"] == path and written["num_samples"] == 16
  assert all(math.isfinite(written[k]) for k in ("fid", "kid", "precision", "recall"))
  # The same numbers as scoring the converted variables directly.
  generator = build_generator(config.model, (64, 64, 1))
  variables = from_torch(generator, {k: v.numpy() for k, v in G.state_dict().items()})
  direct = runs.evaluate_generator(generator, variables, config, num_samples=16,
                                   batch_size=8, extractor=classifier, kid_subsets=2)
  assert direct["fid"] == pytest.approx(result["fid"], rel=1e-6)
  assert "generator_000002.pt" in runs.format_table(result)

  (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
  with pytest.raises(eval_lib.EvalError, match="cannot read"):
    runs.evaluate_torch_generator(str(tmp_path / "junk.pt"), config)
  torch.save({"layer1.0.weight": torch.zeros(1)}, str(tmp_path / "other.pt"))
  with pytest.raises(eval_lib.EvalError, match="not the weights of config.model's generator"):
    runs.evaluate_torch_generator(str(tmp_path / "other.pt"), config)
  with pytest.raises(FileNotFoundError):
    runs.evaluate_torch_generator(str(tmp_path / "missing.pt"), config)


def test_evaluate_run_against_reference_statistics(workdir, classifier, tmp_path):
  """`evaluate.py --ref_stats`: the run scored against a dataset's statistics (here the
  held-out digits' own, so FID matches the held-out evaluation's), no real-vs-real floor."""
  run = restore_generator(workdir)
  real = runs.heldout_images(run.config)
  features = eval_lib.extract(classifier, [real.images])
  path = str(tmp_path / "heldout.npz")
  eval_lib.reference_stats.save(path, eval_lib.reference_stats.from_features(
      features, classifier.name, real.description))
  result = runs.evaluate_run(workdir, num_samples=16, batch_size=8, extractor=classifier,
                             ref_stats=path, write=False, kid_subsets=2)
  held_out = runs.evaluate_run(workdir, num_samples=16, batch_size=8, extractor=classifier,
                               write=False, kid_subsets=2)
  assert "real" not in result and result["num_real"] == 600
  assert result["fid"] == pytest.approx(held_out["fid"], rel=1e-6)
  assert result["classifier_score_1split"] == pytest.approx(held_out["classifier_score_1split"])
  assert "real vs real" not in runs.format_table(result)


def _pixels(images):
  """A cheap feature network: every 8th pixel (no class probabilities)."""
  x = np.asarray(images, np.float32)
  return {"features": x[:, ::8, ::8, :].reshape(len(x), -1), "probs": None}


_pixels.name = "pixels"


def test_any_source_is_scored_against_its_cached_training_statistics(tmp_path, caplog,
                                                                     monkeypatch):
  """A folder run (no held-out split, no ref_stats): the training images' statistics are
  computed once, with a line saying so, cached in the workdir and found by a rerun."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "images"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(12):
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(folder / f"{i}.png")
  config = _tiny_config()
  config.data.update(source="image_folder", path=str(folder), image_size=16, channels=3)
  workdir = str(tmp_path / "run")
  with caplog.at_level("INFO", logger="sagan_jax.runs.evaluation"):
    evaluator = runs.make_evaluator(config, _pixels, workdir=workdir, kid_subsets=2)
  assert "No config.eval.ref_stats: computing the reference statistics" in caplog.text
  cached = list(pathlib.Path(workdir, "eval").glob("reference_pixels_*.npz"))
  assert len(cached) == 1
  assert evaluator.real.num_images == 12 and evaluator.classes == ()
  out = evaluator.evaluate([rng.uniform(-1, 1, (6, 16, 16, 3)).astype(np.float32)])
  assert math.isfinite(out["fid"]) and "real" not in out and out["num_real"] == 12

  caplog.clear()
  with caplog.at_level("INFO", logger="sagan_jax.runs.evaluation"):
    again = runs.make_evaluator(config, _pixels, workdir=workdir)
  assert "cached in" in caplog.text and "computing" not in caplog.text
  np.testing.assert_array_equal(again.real.mu, evaluator.real.mu)
  config.data.image_size = 8  # other data: other statistics, beside the first
  runs.make_evaluator(config, _pixels, workdir=workdir)
  assert len(list(pathlib.Path(workdir, "eval").glob("reference_pixels_*.npz"))) == 2
  # A trainer passes the source it already has: the data is not opened a second time.
  config.data.image_size = 4
  source = data_lib.make_source(config.data)
  monkeypatch.setattr(evaluation, "make_source",
                      lambda *args, **kwargs: pytest.fail("the source was built again"))
  from_trainer = runs.make_evaluator(config, _pixels, workdir=workdir, source=source)
  assert from_trainer.real.num_images == 12


def test_only_the_chosen_metrics(workdir):
  out = runs.evaluate_run(workdir, num_samples=8, batch_size=8, write=False,
                          metrics=("fid", "is"))
  assert {"fid", "classifier_score", "confident_fraction", "spread_ratio"} <= set(out)
  assert not {"kid", "precision", "recall"} & set(out) and "kid" not in out["real"]
  proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--workdir",
                         str(workdir), "--metrics", "fid,fd"], capture_output=True, text=True,
                        cwd=ROOT, timeout=120)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --metrics: unknown metric 'fd'; choose from ['fid', 'is', 'kid', "
      "'precision_recall', 'conditional']")


def test_a_config_of_an_earlier_release_keeps_its_eval_settings():
  old = _tiny_config().to_dict()
  del old["eval"], old["logging"]
  old.update(eval_every=300, eval_num_samples=123, eval_batch_size=50)
  settings = evaluation.eval_settings(ml_collections.ConfigDict(old))
  assert (settings.every, settings.num_samples, settings.batch_size) == (300, 123, 50)
  assert settings.features == "mnist"  # the default of then and now
  with pytest.raises(ConfigError, match=r"config\.eval_every is now config\.eval\.every"):
    validate(ml_collections.ConfigDict({**_tiny_config().to_dict(), "eval_every": 3}))


def test_eval_config_errors_are_one_line():
  config = _tiny_config()
  config.data.source = "image_folder"
  config.eval.every = 10
  with pytest.raises(ConfigError, match=r"config\.eval\.features='mnist' reads MNIST digits.*"
                     r"set config\.eval\.features='inception'"):
    validate(config)
  config = _tiny_config()
  config.eval.best_metric = "fidd"
  with pytest.raises(ConfigError, match=r"config\.eval\.best_metric must be one of \['fid'"):
    validate(config)
  config = _tiny_config()
  config.eval.inception_weights = "w.pth"
  with pytest.raises(ConfigError, match="set config.eval.features='inception'"):
    validate(config)
  assert runs.FEATURES == EVAL_FEATURES  # the network names the config accepts are known
