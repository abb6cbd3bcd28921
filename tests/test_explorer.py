"""The attention explorer page: self-contained, and — in a real headless browser — clicking
a pixel shows, for every attention layer, the map the library computes for that query.

The browser test needs playwright (pip) and a Chromium (Debian: ``apt-get install
chromium``; .ci/run installs both); without them it skips with a message."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.models import Generator64
from sagan_jax.runs import Sampler
from sagan_jax.viz.explorer_page import explorer_html, map_mosaic, quantized_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def samples():
  """A width-8 generator with its attention projections scaled up (sharp, distinct maps
  rather than the near-uniform ones of a fresh init), 3 samples and their maps."""
  generator = Generator64(width=8)
  z_dim = generator.z_dim
  variables = generator.init(jax.random.key(0), jnp.zeros((1, z_dim)))
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: p * 40.0 if any(getattr(k, "key", "") in ("query_conv", "key_conv")
                                      for k in path) else p, variables["params"])
  variables = {**variables, "params": params}
  out = Sampler(generator, z_dim, return_attention=True).sample(variables, 3, seed=1)
  return np.asarray(out.images), [np.asarray(m) for m in out.attention]


@pytest.fixture(scope="module")
def page(samples, tmp_path_factory):
  images, maps = samples
  path = tmp_path_factory.mktemp("explorer") / "attention.html"
  path.write_text(explorer_html(images, maps, title="test run", layer_names=["L1", "L2"],
                                caption="three samples"))
  return path


def test_page_is_self_contained(page):
  text = page.read_text()
  assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", text)
  assert "<script src" not in text and "@import" not in text
  assert text.count("data:image/png;base64,") >= 3 * 3  # 3 images + 2 layers × 3 mosaics


def test_mosaic_tiles_are_the_quantized_rows(samples):
  _, maps = samples
  m = maps[1][0]  # (1024, 1024): a 32×32 grid of 32×32 tiles
  mosaic, rows = map_mosaic(m), quantized_rows(m)
  for y, x in ((0, 0), (5, 17), (31, 31)):
    np.testing.assert_array_equal(mosaic[y * 32:(y + 1) * 32, x * 32:(x + 1) * 32].ravel(),
                                  rows[y * 32 + x])
  assert rows.max(axis=1).min() == 255  # each row scaled to its own maximum


def test_bad_input_is_a_clear_error(samples):
  images, maps = samples
  with pytest.raises(ValueError, match="one name per attention layer"):
    explorer_html(images, maps, title="t", layer_names=["only one"])
  with pytest.raises(ValueError, match="must be"):
    explorer_html(images[0], maps, title="t", layer_names=["a", "b"])


def _chromium():
  try:
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  except ImportError:
    pytest.skip("playwright is not installed (pip install playwright): browser test skipped")
  executable = shutil.which("chromium") or shutil.which("chromium-browser")
  if executable is None:
    pytest.skip("no Chromium on PATH (apt-get install chromium): browser test skipped")
  return sync_playwright, executable


def test_clicking_pixels_shows_the_librarys_maps(page, samples, tmp_path):
  sync_playwright, executable = _chromium()
  images, maps = samples
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
    tab = browser.new_page(viewport={"width": 1100, "height": 800})
    tab.goto(page.as_uri())
    # Sample 2, then two pixels: the overlay must change and match the maps.
    tab.click("#samples img[data-sample='2']")
    tab.wait_for_function("window.explorer.ready && window.explorer.sample === 2")
    stack = tab.locator("#layer0 .stack")
    box = stack.bounding_box()
    overlays = []
    for py, px in ((10, 50), (45, 12)):
      # The centre of image pixel (py, px) of the 64×64 sample, on the 320-pixel panel.
      stack.click(position={"x": (px + 0.5) * box["width"] / 64,
                            "y": (py + 0.5) * box["height"] / 64})
      state = tab.evaluate("() => window.explorer.query")
      assert state == [py, px]
      for i, layer_maps in enumerate(maps):
        grid = int(np.sqrt(layer_maps.shape[1]))
        y, x = py * grid // 64, px * grid // 64
        view = tab.locator(f"#layer{i}")
        assert view.get_attribute("data-query") == f"{y},{x}"
        shown = np.array([int(v) for v in view.get_attribute("data-row").split(",")])
        np.testing.assert_array_equal(shown, quantized_rows(layer_maps[2])[y * grid + x])
        assert f"query (y, x) = ({y}, {x})" in view.locator(".caption").inner_text()
      overlays.append(tab.evaluate(
          "() => Array.from(document.querySelector('#layer1 .overlay').getContext('2d')"
          ".getImageData(0, 0, 320, 320).data.filter((v, k) => k % 97 === 0))"))
      tab.screenshot(path=str(tmp_path / f"explorer_{py}_{px}.png"))
    assert overlays[0] != overlays[1]
    browser.close()
  if os.environ.get("SAGAN_EXPLORER_SCREENSHOT"):  # for the docs: keep the last screenshot
    shutil.copy(tmp_path / "explorer_45_12.png", os.environ["SAGAN_EXPLORER_SCREENSHOT"])


def test_sample_py_writes_the_explorer_and_npz(tmp_path):
  workdir = tmp_path / "run"
  env = {**os.environ, "PYTHONPATH": ROOT, "SAGAN_JAX_COMPILATION_CACHE": "off"}
  train = subprocess.run([sys.executable, "train.py", "--config", "configs/tiny.py", "--workdir",
                          str(workdir), "--config.num_steps=1"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
  assert train.returncode == 0, train.stderr[-2000:]
  assert "Compiling the train step" in train.stderr and "Compiled the train step in" in train.stderr
  assert re.search(r"^step 1/1 \| d_loss", train.stderr, re.MULTILINE)  # no absl prefix
  assert "saving checkpoint" in train.stderr and "wrote" in train.stderr
  out = subprocess.run([sys.executable, "sample.py", "--workdir", str(workdir), "--num_samples",
                        "5", "--explorer", str(tmp_path / "a.html"), "--explorer_samples", "2",
                        "--npz", str(tmp_path / "s.npz")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-2000:]
  # What was asked for and nothing else (no grid PNG), one line each.
  assert out.stdout.splitlines() == [
      "attention explorer: 2 samples of seed 0 and every attention layer's maps, step 1: "
      f"{tmp_path / 'a.html'}",
      f"samples as .npz: 5 uint8 images 64×64×1 of seed 0, step 1: {tmp_path / 's.npz'}"]
  assert sorted(os.listdir(workdir / "samples")) == ["attention_000001.png",
                                                     "samples_000001.png"]  # the trainer's
  assert (tmp_path / "a.html").read_text().count("data:image/png;base64,") == 2 + 2 * 2
  with np.load(tmp_path / "s.npz") as npz:
    assert npz["images"].shape == (5, 64, 64, 1) and npz["images"].dtype == np.uint8
    assert int(npz["step"]) == 1
