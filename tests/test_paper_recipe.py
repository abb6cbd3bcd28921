"""The paper recipe's whole path, small: configs/cifar10.py on TFDS mock data.

What a CIFAR-10 user does, shrunk to minutes on a CPU: train StudioGAN's recipe
(``configs/cifar10.py``: ResNet SAGAN, cBN, projection D, 5 D steps) at a tiny width
for two steps with evaluation during training — the FID Inception (random weights in
pytorch-fid's file format: the real file cannot be downloaded here) against statistics
of the run's own training data, computed once and cached in the workdir — then
``sample.py --best`` and ``evaluate.py`` on the run as subprocesses. TFDS's mock data
stands in for CIFAR-10 (no network; the ArrayRecord source needs no TensorFlow).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import cifar10
from sagan_jax.runs import train_and_evaluate
from tests.reference.inception_reference import random_state_dict
from tests.reference.torch_zip_writer import write_state_dict

ROOT = pathlib.Path(__file__).resolve().parents[1]
MOCK_EXAMPLES = 20  # one step's 5 D batches of 4


def _tiny_recipe(weights: str):
  config = cifar10.get_config()
  config.data.source = "tfds_stream"  # the same data read per batch (no TensorFlow needed)
  config.model.width = config.model.d_width = 4  # attention at 16×16 needs 8·k channels
  config.batching.batch_size = 4  # divides over the 4 test devices
  config.num_steps = 2
  config.log_every = 1
  config.sample_every = config.checkpoint_every = 2
  config.num_samples = 10  # a class grid of one column
  config.eval.every = 2
  config.eval.features = "inception"
  config.eval.inception_weights = weights
  config.eval.num_samples = 4  # the fewest precision/recall's k = 3 allows
  config.eval.batch_size = 8
  config.logging.writers = ("tensorboard", "csv")
  return config


def _run(*args):
  proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                        cwd=ROOT, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.mark.slow
def test_cifar10_recipe_trains_evaluates_samples_and_scores(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("array_record")
  weights = write_state_dict(tmp_path / "pt_inception-2015-12-05-6726825d.pth",
                             random_state_dict(0))
  workdir = tmp_path / "cifar10"
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
    state = train_and_evaluate(_tiny_recipe(weights), str(workdir))
  assert int(state.step) == 2

  reports = sorted((workdir / "eval").glob("eval_000002_inception_ref-*_n4.json"))
  assert len(reports) == 1, reports  # one report per (step, features, reference, count)
  report = json.loads(reports[0].read_text())
  assert report["extractor"] == "fid_inception" and report["num_samples"] == 4
  assert report["num_real"] == MOCK_EXAMPLES and "ArrayRecord" in report["real_data"]
  for key in ("fid", "kid", "precision", "recall", "inception_score"):
    assert np.isfinite(report[key]), key
  cached = sorted((workdir / "eval").glob("reference_fid_inception_*.npz"))
  assert len(cached) == 1
  assert json.loads((workdir / "best_checkpoint" / "best.json").read_text()) == {
      "step": 2, "fid": pytest.approx(report["fid"])}
  assert (workdir / "best_checkpoint" / "2").is_dir()
  fids = [line for line in (workdir / "metrics.csv").read_text().splitlines()
          if line.startswith("2,eval/fid,")]
  assert len(fids) == 1 and float(fids[0].split(",")[2]) == pytest.approx(report["fid"])

  # sample.py reads the best checkpoint; evaluate.py scores the run as its config.eval says,
  # from the cached statistics (the subprocess has no mock data: it must not need the data).
  grid = tmp_path / "best.png"
  _run(ROOT / "sample.py", "--workdir", workdir, "--best", "--class_grid", "--per_class", 1,
       "--out", grid)
  assert grid.stat().st_size > 0
  out = _run(ROOT / "evaluate.py", "--workdir", workdir, "--num_samples", 4,
             "--batch_size", 8, "--seed", 1)
  assert "Inception score" in out.stdout
  # the same reference (the cached statistics) under the same name, another seed beside it
  scored = json.loads(reports[0].with_name(reports[0].stem + "_seed1.json").read_text())
  assert scored["seed"] == 1 and scored["num_real"] == MOCK_EXAMPLES
  assert sorted((workdir / "eval").glob("reference_fid_inception_*.npz")) == cached


def test_the_weight_file_writer_writes_what_torch_reads(tmp_path):
  """tests/reference/torch_zip_writer.py, the stand-in for pytorch-fid's file, against
  the project's reader and, where installed, torch.load itself."""
  from sagan_jax.interop.torch_file import read_state_dict  # pylint: disable=g-import-not-at-top
  state = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
           "bn.num_batches_tracked": np.asarray(7, np.int64), "fc.bias": np.ones(3)}
  path = write_state_dict(tmp_path / "w.pth", state)
  read = read_state_dict(path)
  assert list(read) == list(state)
  for key, value in state.items():
    assert read[key].dtype == value.dtype and read[key].shape == value.shape
    np.testing.assert_array_equal(read[key], value)
  torch = pytest.importorskip("torch")
  loaded = torch.load(path, weights_only=True)
  for key, value in state.items():
    np.testing.assert_array_equal(loaded[key].numpy(), value)
