"""FIDInception beyond parity: the weights file's errors, bad images, devices, the IS keys.

Random weights with the real file's keys (`tests/reference/inception_reference.py`); the
numbers themselves are checked against pytorch-fid in test_inception_parity.py.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest

from sagan_jax.eval import EvalAssetNotFoundError, EvalError, FIDInception, inception_weights
from sagan_jax.eval import inception as inception_lib
from sagan_jax.eval.inception_net import FIDInceptionV3
from tests.reference.inception_reference import images, random_state_dict

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def state_dict():
  return random_state_dict(1)


@pytest.fixture(scope="module")
def inception(state_dict):
  return FIDInception(state_dict=state_dict)


def test_state_dict_keys_are_pytorch_fids():
  shapes = inception_weights.torch_shapes()
  # 94 BasicConv2d of torchvision's Inception3 without the aux head, and the 1008-way fc.
  assert sum(k.endswith(".conv.weight") for k in shapes) == 94
  assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
  assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
  assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
  assert shapes["fc.weight"] == (1008, 2048)
  assert not [k for k in shapes if "AuxLogits" in k]


def test_batch_norm_is_folded_into_the_convolution(state_dict):
  """kernel · γ/√(var + 0.001), bias β − mean · γ/√(var + 0.001) (eval-mode BatchNorm)."""
  params = inception_weights.from_state_dict(state_dict)
  conv = params["Mixed_5b"]["branch5x5_2"]["conv"]
  prefix = "Mixed_5b.branch5x5_2."
  gamma, beta, mean, var = (state_dict[prefix + f"bn.{n}"].astype(np.float64)
                            for n in ("weight", "bias", "running_mean", "running_var"))
  scale = gamma / np.sqrt(var + 1e-3)
  weight = state_dict[prefix + "conv.weight"].astype(np.float64)
  np.testing.assert_allclose(conv["kernel"], weight.transpose(2, 3, 1, 0) * scale, rtol=1e-6)
  np.testing.assert_allclose(conv["bias"], beta - mean * scale, rtol=1e-6, atol=1e-7)
  abstract = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 299, 299, 3), np.float32))["params"]
  assert jax.tree.structure(abstract) == jax.tree.structure(params)


def test_a_file_that_is_not_the_fid_inception_names_the_first_bad_key(state_dict):
  renamed = dict(state_dict)
  renamed["Mixed_5b.branch1x1.conv.kernel"] = renamed.pop("Mixed_5b.branch1x1.conv.weight")
  with pytest.raises(EvalError, match=r"unexpected key 'Mixed_5b\.branch1x1\.conv\.kernel'"):
    FIDInception(state_dict=renamed)
  reshaped = dict(state_dict, **{"fc.weight": np.zeros((1000, 2048), np.float32)})
  with pytest.raises(EvalError, match=r"'fc\.weight' has shape \(1000, 2048\), expected "
                     r"\(1008, 2048\)"):
    FIDInception(state_dict=reshaped)
  missing = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
  with pytest.raises(EvalError, match=r"missing key 'fc\.weight' \(2 missing\)"):
    FIDInception(state_dict=missing)


def test_missing_or_unreadable_weight_files(tmp_path):
  missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
  with pytest.raises(EvalAssetNotFoundError) as error:
    FIDInception(missing)
  message = str(error.value)
  assert str(missing) in message and inception_weights.WEIGHTS_URL in message
  assert "\n" not in message
  junk = tmp_path / "junk.pth"
  junk.write_bytes(b"\x80\x04not a checkpoint")
  with pytest.raises(EvalError, match="not a readable PyTorch weight file"):
    FIDInception(junk)


def test_default_weights_path_is_torch_hubs(monkeypatch, tmp_path):
  monkeypatch.setenv("TORCH_HOME", str(tmp_path))
  assert inception_weights.default_weights_path() == str(
      tmp_path / "hub" / "checkpoints" / inception_weights.WEIGHTS_FILE)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 32, 32), np.float32), r"\(B, H, W, 1 or 3\), got shape \(2, 32, 32\)"),
    (np.zeros((2, 32, 32, 4), np.float32), r"got shape \(2, 32, 32, 4\)"),
    (np.zeros((0, 32, 32, 3), np.float32), r"got shape \(0, 32, 32, 3\)"),
    (np.zeros((2, 32, 32, 3), np.int32), "got int32"),
    (np.full((2, 32, 32, 3), 255.0, np.float32), r"in \[-1, 1\], got values in \[255, 255\]"),
    (np.full((2, 32, 32, 3), np.nan, np.float32), r"got values in \[nan, nan\]"),
])
def test_bad_images_are_one_clear_error(inception, bad, message):
  with pytest.raises(EvalError, match=message):
    inception(bad)


def test_sharded_over_devices_equals_one_device(state_dict, inception):
  if jax.local_device_count() < 2:
    pytest.skip("needs several devices (XLA_FLAGS=--xla_force_host_platform_device_count)")
  pixels = images(7, 3, 16)  # 3 images over 4 devices: padded to 4
  many = inception(pixels)
  one = FIDInception(state_dict=state_dict, devices=jax.local_devices()[:1])(pixels)
  assert inception.mesh.devices.size == jax.local_device_count()
  # The same float32 products, summed in another order per device count (XLA:CPU): rounding.
  np.testing.assert_allclose(many["features"], one["features"], rtol=0,
                             atol=1e-5 * np.abs(one["features"]).max())
  np.testing.assert_allclose(many["probs"], one["probs"], rtol=0, atol=1e-6)
  np.testing.assert_allclose(many["probs"].sum(1), 1.0, rtol=1e-5)


def test_evaluate_py_says_where_the_weights_are_published(tmp_path):
  missing = tmp_path / "pt_inception.pth"
  proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "stats", "--source",
                         str(tmp_path), "--out", str(tmp_path / "s.npz"),
                         "--inception_weights", str(missing)],
                        capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  # Every input is checked before work: the missing weights, and the empty folder.
  assert last.startswith("error: ") and "holds no image files" in last
  assert f"error: FID Inception weights {missing} not found" in proc.stderr
  (tmp_path / "x.png").write_bytes(b"")
  proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "stats", "--source",
                         f"folder:{tmp_path}", "--out", str(tmp_path / "s.npz"),
                         "--inception_weights", str(missing), "--image_size", "8"],
                        capture_output=True, text=True, cwd=ROOT, timeout=120)
  last = proc.stderr.strip().splitlines()[-1]
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert last == (f"error: FID Inception weights {missing} not found: download "
                  f"{inception_weights.WEIGHTS_URL} and pass its path (--inception_weights)")


def test_a_batch_in_groups_equals_the_whole_batch(inception):
  # On one CPU device a batch runs through the network in groups of ≤ CPU_GROUP_SIZE images
  # (a lax.map inside the jitted call). The same float32 products per image; a convolution
  # library may block by batch size and sum them in another order (YNNPACK does; Eigen,
  # which `compiler_options` picks, gave identical features on the benchmark's batch):
  # rounding, bounded as between device counts (test_sharded_over_devices_equals_one_device).
  pixels = jax.device_put(images(5, 4, 16))
  whole, grouped = ({k: np.asarray(v) for k, v in inception_lib._compiled_forward(
      "cpu")(inception.params, pixels, "xla", groups).items()} for groups in (1, 2))
  np.testing.assert_allclose(grouped["features"], whole["features"], rtol=0,
                             atol=1e-5 * np.abs(whole["features"]).max())
  np.testing.assert_allclose(grouped["probs"], whole["probs"], rtol=0, atol=1e-6)
  assert inception_lib.group_count(50, jax.devices("cpu")[:1]) == 5  # 5 groups of 10
  assert inception_lib.group_count(7, jax.devices("cpu")[:1]) == 1
  assert inception_lib.group_count(8, jax.devices("cpu")[:2]) == 1  # several devices split it
