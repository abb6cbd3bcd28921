"""sagan_jax.interop.torch_file: torch.save files read without torch, both formats, nothing
executed; evaluate.py --torch_generator reads through it."""

from __future__ import annotations

import io
import json
import math
import pathlib
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from sagan_jax.interop.torch_file import TorchFileError, read_state_dict


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reads_what_torch_saves(tmp_path, zip_format):
  torch = pytest.importorskip("torch")
  model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
  state = model.state_dict()
  state["transposed"] = torch.arange(12.0).reshape(3, 4).t()  # a strided view
  state["offset"] = torch.arange(10.0)[3:7]  # a view into a larger storage
  state["half"] = torch.randn(5).half()
  state["bfloat16"] = torch.randn(5).bfloat16()
  state["long"] = torch.tensor([1, -2], dtype=torch.int64)
  state["flag"] = torch.tensor(True)
  state["shared"] = state["0.weight"]  # the same storage twice
  path = tmp_path / "weights.pth"
  torch.save(state, path, _use_new_zipfile_serialization=zip_format)
  assert zipfile.is_zipfile(path) == zip_format
  read = read_state_dict(path)
  assert list(read) == list(state)
  for key, tensor in state.items():
    expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
    assert read[key].shape == expected.shape, key
    np.testing.assert_array_equal(np.asarray(read[key], expected.dtype), expected, err_msg=key)
  assert read["0.weight"].dtype == np.float32 and read["long"].dtype == np.int64
  assert read["1.num_batches_tracked"].shape == ()


def _legacy_header() -> bytes:
  header = (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
  return b"".join(pickle.dumps(part) for part in header)


class _Exploit:
  def __reduce__(self):
    return (print, ("the pickle ran code",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
  """Like torch.load(weights_only=True): only dicts, tensors and storages are built."""
  legacy = tmp_path / "legacy.pth"
  legacy.write_bytes(_legacy_header() + pickle.dumps({"x": _Exploit()}))
  archive = tmp_path / "zip.pth"
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"x": _Exploit()}))
  for path in (legacy, archive):
    with pytest.raises(TorchFileError, match="builtins.print"):
      read_state_dict(path)
  assert "ran code" not in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    (b"", "neither a zip archive nor a legacy"),
    (b"garbage bytes", "neither a zip archive nor a legacy"),
    (pickle.dumps(12345), "neither a zip archive nor a legacy"),
])
def test_files_that_are_not_torch_saves(tmp_path, content, message):
  path = tmp_path / "file.pth"
  path.write_bytes(content)
  with pytest.raises(TorchFileError, match=message):
    read_state_dict(path)


def test_a_truncated_file_is_an_error(tmp_path):
  torch = pytest.importorskip("torch")
  for zip_format in (True, False):
    buffer = io.BytesIO()
    torch.save({"w": torch.randn(1000)}, buffer, _use_new_zipfile_serialization=zip_format)
    path = tmp_path / f"cut{zip_format}.pth"
    path.write_bytes(buffer.getvalue()[:-1000])
    with pytest.raises(TorchFileError):
      read_state_dict(path)


def test_a_zip_that_is_not_a_torch_save(tmp_path):
  path = tmp_path / "other.zip"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("readme.txt", "hello")
  with pytest.raises(TorchFileError, match="data.pkl"):
    read_state_dict(path)


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="no file at"):
    read_state_dict(tmp_path / "none.pth")


def test_torch_is_not_imported(tmp_path):
  """Reading needs NumPy only (the JAX user's install)."""
  path = tmp_path / "handmade.pth"
  path.write_bytes(_legacy_header() + pickle.dumps({}) + pickle.dumps([]))
  before = "torch" in sys.modules
  assert read_state_dict(path) == {}
  assert ("torch" in sys.modules) == before


# evaluate.py run with `import torch` failing, as on a machine without PyTorch.
_WITHOUT_TORCH = """
import runpy, sys
sys.modules["torch"] = None  # `import torch` raises ImportError
sys.argv = ["evaluate.py"] + sys.argv[1:]
runpy.run_path("evaluate.py", run_name="__main__")
"""


def test_evaluate_scores_a_torch_generator_without_torch(tmp_path):
  """``evaluate.py --torch_generator`` reads the file with this reader, not torch.load (both
  formats are the reader's tests above)."""
  torch = pytest.importorskip("torch")  # only to write the file
  from tests.reference import torch_sagan
  root = pathlib.Path(__file__).resolve().parents[1]
  torch.manual_seed(0)
  generator, _ = torch_sagan.init_chapter_models(z_dim=20, image_size=8)  # configs/tiny.py's
  path = tmp_path / "generator.pt"
  torch.save(generator.state_dict(), path)
  proc = subprocess.run(
      [sys.executable, "-c", _WITHOUT_TORCH, "--torch_generator", str(path), "--config",
       str(root / "configs" / "tiny.py"), "--num_samples", "16", "--batch_size", "8"],
      cwd=root, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  written = json.loads((tmp_path / "generator_eval_000000_mnist_heldout_n16.json").read_text())
  assert written["num_samples"] == 16 and math.isfinite(written["fid"])
