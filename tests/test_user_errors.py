"""What an adversarial user meets (issue 21's probes), as real commands where they meet them.

* Resuming a run on other data is refused in one line naming both, unless asked for
  (``--config.resume_on_new_data``); ``config_history.jsonl`` keeps every start's config.
* Evaluation reports never replace a different evaluation.
* A corrupt image in a folder is found before step 1 (or skipped, counted, if asked).
* TFDS failures are one line: not prepared (with the command), an unknown name (with the
  nearest names), a download without a module it needs (with the install command).
* ``evaluate.py`` reports every problem of its inputs before any work.
* ``stats`` warns when the images are fewer than the feature dimensions.
* A truncated Inception weight file is told without the reader's internals.
* The newcomer's list: one name per feature set, KID's std shown sensibly.

Same environment as test_cli.py (one CPU device, the session's compilation cache).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from sagan_jax import data, runs
from sagan_jax.eval import EvalError
from sagan_jax.eval import evaluator as evaluator_lib
from sagan_jax.eval import inception_weights
from sagan_jax.runtime import workdir as workdir_lib
from sagan_jax.train.config import base_config
from tests.subprocesses import TRAIN, error_lines, run

pytestmark = pytest.mark.usefixtures("one_device_with_compilation_cache")


def _folder(path, count, seed, size=64):
  path.mkdir(parents=True)
  rng = np.random.default_rng(seed)
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path / f"{i}.png")
  return path


# Eight 64x64 images at batch 8: one step an epoch.
FOLDER_RUN = TRAIN + ["--config.data.source=image_folder", "--config.checkpoint_every=2",
                      "--config.sample_every=100"]


def test_resume_on_other_data_is_refused_and_every_start_is_kept(tmp_path, env):
  a, b = _folder(tmp_path / "a", 8, 0), _folder(tmp_path / "b", 8, 1)
  workdir = tmp_path / "run"
  first = run(FOLDER_RUN + [f"--config.data.path={a}", "--config.num_steps=2",
                            "--workdir", str(workdir)], env)
  assert first.returncode == 0, first.stderr[-3000:]

  refused = run(FOLDER_RUN + [f"--config.data.path={b}", "--config.num_steps=3",
                              "--workdir", str(workdir)], env)
  assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
  (line,) = error_lines(refused.stderr)
  assert line.startswith(f"error: {workdir / 'checkpoints'} holds step 2 trained on image "
                         f"folder {a} (8 images, file list "), line
  assert f"but this run's data is image folder {b} (8 images" in line
  assert "(files differ)" in line and "--config.resume_on_new_data=True" in line
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]  # nothing touched

  # The same files moved elsewhere are the same data: the resume goes on.
  moved = tmp_path / "a_moved"
  shutil.copytree(a, moved)
  assert data.data_record(data.image_folder(moved, 64, 1), {"source": "image_folder"})[
      "files"] == data.data_record(data.image_folder(a, 64, 1), {"source": "image_folder"})[
          "files"]

  on_purpose = run(FOLDER_RUN + [f"--config.data.path={b}", "--config.num_steps=3",
                                 "--config.resume_on_new_data=True", "--workdir", str(workdir)],
                   env)
  assert on_purpose.returncode == 0, on_purpose.stderr[-3000:]
  assert f"Resuming step 2, trained on image folder {a}" in on_purpose.stderr
  history = workdir_lib.config_history(str(workdir))
  assert [h["start_step"] for h in history] == [0, 2]  # the refused start wrote nothing
  assert [h["config"]["data"]["path"] for h in history] == [str(a), str(b)]
  assert [h["data"]["path"] for h in history] == [str(a), str(b)]
  assert json.loads((workdir / "config.json").read_text())["data"]["path"] == str(b)


def test_config_history_keeps_a_workdir_from_before_it(tmp_path):
  config = base_config()
  (tmp_path / "config.json").write_text(config.to_json())  # written before the history
  config.num_steps = 7
  workdir_lib.write_config(config, str(tmp_path), start_step=5, data_record={"images": 1})
  history = workdir_lib.config_history(str(tmp_path))
  assert [h["start_step"] for h in history] == [None, 5]
  assert [h["config"]["num_steps"] for h in history] == [None, 7]
  with open(tmp_path / workdir_lib.CONFIG_HISTORY_FILE, "a") as f:
    f.write('{"torn": ')  # a kill mid-write leaves at most a torn last line
  assert len(workdir_lib.config_history(str(tmp_path))) == 2


def test_a_corrupt_image_is_found_before_step_1(tmp_path, env):
  folder = _folder(tmp_path / "images", 8, 0)
  good = (folder / "3.png").read_bytes()
  (folder / "3.png").write_bytes(good[:len(good) // 2])  # truncated
  result = run(FOLDER_RUN + [f"--config.data.path={folder}", "--config.num_steps=2",
                             "--workdir", str(tmp_path / "run")], env)
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert error_lines(result.stderr) == [
      f"error: image file {folder / '3.png'} cannot be read (OSError: Truncated File Read); "
      "remove it, or set config.data.skip_bad_images=True to leave bad files out"]
  assert "Compiling" not in result.stderr and "step 1" not in result.stderr


def test_bad_images_are_skipped_with_a_count_when_asked(tmp_path, caplog):
  folder = _folder(tmp_path / "images", 6, 0, size=8)
  (folder / "1.png").write_bytes(b"not an image")
  (folder / "4.png").write_bytes((folder / "5.png").read_bytes()[:60])
  with pytest.raises(data.DataError, match=r"1\.png cannot be read .*\(2 of 6 files are bad\)"):
    data.image_folder(folder, 8, 1)
  with caplog.at_level(logging.WARNING, logger="sagan_jax"):
    source = data.make_source({**base_config().data.to_dict(), "source": "image_folder",
                               "path": str(folder), "image_size": 8, "skip_bad_images": True})
  assert len(source) == 4 and "(2 bad files skipped)" in source.description
  assert "Skipping 2 of 6 image files" in caplog.text and "4.png" in caplog.text
  # Every remaining file decodes.
  assert source.get(np.arange(4)).shape == (4, 8, 8, 1)


def _result(extractor="mnist_classifier", real_data="held-out", num_samples=200, seed=0):
  result = {"step": 3, "num_samples": num_samples, "extractor": extractor, "seed": seed,
            "fid": 1.0, "real_data": real_data}
  if real_data == "held-out":
    result["real"] = {"fid": 0.5}
  return result


def test_evaluation_reports_never_replace_another(tmp_path):
  results = [_result(), _result(num_samples=20), _result(extractor="fid_inception"),
             _result(real_data="tfds cifar10 split 'train'"),
             _result(real_data="image folder /x: 10 images"), _result(seed=1)]
  paths = [runs.write_results(str(tmp_path), r) for r in results]
  assert len(set(paths)) == len(results)
  assert os.path.basename(paths[0]) == "eval_000003_mnist_heldout_n200.json"
  assert os.path.basename(paths[2]) == "eval_000003_inception_heldout_n200.json"
  assert os.path.basename(paths[5]) == "eval_000003_mnist_heldout_n200_seed1.json"
  assert all(os.path.isabs(p) and os.path.exists(p) for p in paths)
  assert json.loads(open(paths[0]).read())["features"] == "mnist"
  # The same evaluation again: the same file.
  assert runs.write_results(str(tmp_path), _result()) == paths[0]


def test_tfds_failures_are_one_line(tmp_path, env, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  tfds_run = FOLDER_RUN[:4] + ["--config.data.source=tfds",
                               f"--config.data.tfds_data_dir={tmp_path}",
                               "--workdir", str(tmp_path / "run")]
  result = run(tfds_run + ["--config.data.tfds_name=mnist"], env)
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert error_lines(result.stderr) == [
      f"error: tfds 'mnist' is not prepared in {tmp_path / 'mnist' / '3.0.1'}: run `tfds build "
      f"mnist --data_dir {tmp_path}` once (or set --config.data.tfds_download=True to let TFDS "
      "download and prepare it)"]
  assert len(result.stderr.strip().splitlines()) <= 2, result.stderr  # the config line, this

  result = run(tfds_run + ["--config.data.tfds_name=mnsit"], env)
  assert error_lines(result.stderr) == [
      "error: no tfds dataset 'mnsit'; nearest names: mnist, kmnist, emnist, omniglot"]

  result = run([sys.executable, "evaluate.py", "stats", "--source", "tfds:no_such_ds",
                "--out", str(tmp_path / "s.npz"), "--features", "mnist"], env)
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert error_lines(result.stderr)[0].startswith("error: no tfds dataset 'no_such_ds'")

  # Downloading without a module TFDS needs for it (TFDS 4.9 imports importlib_resources
  # though it declares it for Python < 3.9 only).
  def load(name, **kwargs):
    if kwargs.get("download"):
      raise ModuleNotFoundError("No module named 'importlib_resources'",
                                name="importlib_resources")
    raise AssertionError("not prepared")
  monkeypatch.setattr(tfds, "load", load)
  with pytest.raises(data.DataError) as raised:
    data.tfds_dataset("mnist", image_size=8, channels=1, data_dir=str(tmp_path), download=True)
  assert str(raised.value) == (
      "downloading tfds 'mnist' needs the Python module 'importlib_resources', which is not "
      "installed: pip install -e '.[tfds]' in the sagan-jax checkout")


def test_evaluate_py_reports_every_problem_before_work(tmp_path, env):
  result = run([sys.executable, "evaluate.py", "--workdir", str(tmp_path / "nothing"),
                "--features", "inception", "--ref_stats", str(tmp_path / "missing.npz")],
               {**env, "TORCH_HOME": str(tmp_path / "torch")})
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = error_lines(result.stderr)
  assert len(lines) == 3, result.stderr
  assert lines[0].startswith("error: FID Inception weights ") and "not found" in lines[0]
  assert lines[1].startswith(f"error: reference statistics {tmp_path / 'missing.npz'} not found")
  assert lines[2] == (f"error: {tmp_path / 'nothing' / 'config.json'} not found: is "
                      f"{tmp_path / 'nothing'} a training workdir?")


def test_stats_on_fewer_images_than_dimensions_warns(tmp_path, env):
  folder = _folder(tmp_path / "three", 3, 0)
  result = run([sys.executable, "evaluate.py", "stats", "--source", str(folder), "--out",
                str(tmp_path / "s.npz"), "--features", "mnist"], env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert ("Only 3 images for 64-d features: the covariance has rank at most 2, so an FID "
          "against these statistics mostly measures that deficit") in result.stderr
  assert "3 images, 64-d mnist features" in result.stdout  # one name per feature set
  assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "s.npz")


def test_a_truncated_weight_file_is_told_without_reader_internals(tmp_path):
  torch = pytest.importorskip("torch")
  path = tmp_path / "w.pth"
  torch.save({"a": torch.zeros(1000)}, path)
  whole = path.read_bytes()
  path.write_bytes(whole[:len(whole) // 2])
  with pytest.raises(EvalError) as raised:
    inception_weights.load_weights(path)
  message = str(raised.value)
  assert message == (f"{path} ({len(whole) // 2:,} bytes) is not a readable PyTorch weight "
                     "file (a zip archive without its end: truncated; pytorch-fid's is a 91 MiB "
                     f"zip archive): download {inception_weights.WEIGHTS_URL} again")


def test_one_feature_name_and_kid_to_its_last_digit():
  result = {"step": 1, "num_samples": 8, "num_real": 8, "extractor": "mnist_classifier",
            "kid": 0.01234, "kid_std": 0.002,
            "real": {"kid": 2.1e-4, "kid_std": 1.3e-15, "num_per_half": 4}}
  table = runs.format_table(result)
  assert "(mnist features)" in table and "mnist_classifier" not in table
  (kid,) = [line for line in table.splitlines() if line.startswith("KID")]
  assert kid.split()[1:] == ["0.01234", "±", "0.002", "2.10e-04", "±", "0"]
  assert evaluator_lib.features_name("fid_inception") == "inception"
