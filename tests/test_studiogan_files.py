"""StudioGAN's checkpoint files and what from_torch does with what a PyTorch user has at hand
(issue 21 probe 8): the ``{'state_dict': …, 'step': …}`` wrapper, a path, DataParallel's
``module.`` prefix, a missing ``weight_orig`` named right; and ``sample.py`` /
``evaluate.py --torch_generator`` on a file as StudioGAN's ``save_model`` writes it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from sagan_jax.interop.torch import from_torch
from sagan_jax.runs import torch_generator, write_sample_files
from sagan_jax.runs.errors import SamplingError
from tests.parity import sub
from tests.reference.fixtures import load_fixture
from tests.resnet_cases import MODEL_CASES, studiogan_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _same(a, b):
  import jax  # pylint: disable=g-import-not-at-top
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def g_state():
  return sub(load_fixture("resnet_models"), "G/state/")


def test_from_torch_unwraps_strips_and_names(g_state, caplog):
  generator, _ = studiogan_models(**MODEL_CASES["resnet_models"])
  plain = from_torch(generator, g_state)
  with caplog.at_level("INFO"):
    _same(from_torch(generator, {"state_dict": g_state, "step": 1, "best_fid": 12.5}), plain)
    _same(from_torch(generator, {f"module.{k}": v for k, v in g_state.items()}), plain)
  said = caplog.text
  assert "'state_dict'" in said and "'module.'" in said
  with pytest.raises(TypeError, match=r"flat state_dict; \['G'\] hold dicts.*\['state_dict'\]"):
    from_torch(generator, {"G": g_state, "step": 1})
  with pytest.raises(TypeError, match="a .pth path; got list"):
    from_torch(generator, [1, 2])
  missing = {k: v for k, v in g_state.items() if k != "blocks.0.0.bn1.bias.weight_orig"}
  with pytest.raises(KeyError, match=r"no key 'blocks\.0\.0\.bn1\.bias\.weight_orig'") as error:
    from_torch(generator, missing)
  assert "bias.weight'" not in str(error.value).split("keys under")[0]


def test_a_studiogan_discriminator_needs_its_shortcut():
  _, discriminator = studiogan_models(**MODEL_CASES["resnet_models"])
  state = sub(load_fixture("resnet_models"), "D/state/")
  with pytest.raises(ValueError, match="shortcut_after_activation=True"):
    from_torch(discriminator.clone(shortcut_after_activation=False), state)


def _studiogan_file(tmp_path, torch, config, step=7):
  """A G file as StudioGAN's ``Worker.save`` → ``misc.save_model`` writes it."""
  from tests.reference import torch_resnet_sagan as tr  # pylint: disable=g-import-not-at-top
  m = config.model
  G = tr.Generator(config.data.image_size, m.z_dim, m.width, m.num_classes,
                   attn_g_loc=(2,))
  optimizer = torch.optim.Adam(G.parameters(), 2e-4, (0.5, 0.999), eps=1e-6)
  path = str(tmp_path / f"model=G-best-weights-step={step}.pth")
  torch.save({"state_dict": G.state_dict(), "optimizer": optimizer.state_dict()}, path)
  return path, G


def _small_cifar10():
  sys.path.insert(0, ROOT)
  from configs import cifar10  # pylint: disable=g-import-not-at-top
  config = cifar10.get_config()
  config.model.width, config.model.z_dim = 4, 16  # attention at 16×16: 16 channels
  return config


def test_a_studiogan_file_samples_and_loads(tmp_path):
  torch = pytest.importorskip("torch")
  config = _small_cifar10()
  path, G = _studiogan_file(tmp_path, torch, config)
  run = torch_generator(path, config)  # read by sagan_jax.interop.torch_file, not torch
  _same(run.variables, from_torch(run.generator, {k: v.numpy() for k, v in
                                                  G.state_dict().items()}))
  # Without --out the grids go beside the file, named by kind after its stem (in process:
  # the subprocess below takes --out).
  written = write_sample_files(None, 3, 0, run=run, beside=path)
  written += write_sample_files(None, 3, 0, run=run, beside=path, class_grid=True, per_class=1)
  stem = os.path.splitext(path)[0]
  assert [str(f.path) for f in written] == [
      f"{stem}_samples_{run.step:06d}_seed0.png", f"{stem}_classes_{run.step:06d}_seed0.png"]
  assert all(os.path.getsize(f.path) > 0 for f in written)
  (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
  with pytest.raises(SamplingError, match="cannot read"):
    torch_generator(str(tmp_path / "junk.pth"), config)
  out = tmp_path / "grid.png"
  result = subprocess.run(
      [sys.executable, "sample.py", "--torch_generator", path, "--config",
       "configs/cifar10.py", "--config.model.width=4", "--config.model.z_dim=16",
       "--num_samples", "4", "--out", str(out)],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert out.exists() and str(out) in result.stdout
  result = subprocess.run([sys.executable, "sample.py", "--torch_generator", path],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode != 0 and "needs --config" in result.stderr
