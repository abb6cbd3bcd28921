"""Tests for sagan_jax.viz: grids, atomic PNG writes, attention figures."""

import functools
import os

import numpy as np
import pytest
from PIL import Image

from sagan_jax import viz
from sagan_jax.viz import annotations


def _luma(rgb):
  return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


# --------------------------------------------------------------- image_grid


def test_to_uint8_matches_torchvision_rounding():
  x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, -3.0, 3.0, np.nan])
  # floor(clip((x + 1) / 2) * 255 + 0.5), as make_grid + save_image.
  np.testing.assert_array_equal(
      viz.to_uint8(x), [0, 64, 128, 191, 255, 0, 255, 0])


def test_image_grid_2x2_values_and_padding():
  images = np.stack([np.full((3, 4, 1), v, np.float32) for v in (-1.0, 1.0, 0.0, -1.0)])
  grid = viz.image_grid(images, padding=2, pad_value=1.0)
  assert grid.dtype == np.uint8
  assert grid.shape == (2 * (3 + 2) + 2, 2 * (4 + 2) + 2, 1)  # ncols = sqrt(4) = 2
  g = grid[..., 0]
  np.testing.assert_array_equal(g[2:5, 2:6], 0)      # -1 -> 0
  np.testing.assert_array_equal(g[2:5, 8:12], 255)   # 1 -> 255
  np.testing.assert_array_equal(g[7:10, 2:6], 128)   # 0 -> 128
  np.testing.assert_array_equal(g[7:10, 8:12], 0)
  # Padding: border and the gaps between cells are pad_value (white).
  for rows, cols in [(slice(0, 2), slice(None)), (slice(5, 7), slice(None)),
                     (slice(10, 12), slice(None)), (slice(None), slice(0, 2)),
                     (slice(None), slice(6, 8)), (slice(None), slice(12, 14))]:
    np.testing.assert_array_equal(g[rows, cols], 255)


def test_image_grid_layout_rgb_ncols_and_empty_cells():
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (5, 6, 7, 3)).astype(np.float32)
  grid = viz.image_grid(images, ncols=3, padding=1, pad_value=-1.0)
  assert grid.shape == (2 * 7 + 1, 3 * 8 + 1, 3)
  tiles = viz.to_uint8(images)
  for k in range(5):
    r, c = divmod(k, 3)
    np.testing.assert_array_equal(
        grid[1 + r * 7:1 + r * 7 + 6, 1 + c * 8:1 + c * 8 + 7], tiles[k])
  np.testing.assert_array_equal(grid[8:14, 17:24], 0)  # unused cell = pad_value
  # Default ncols is ceil(sqrt(B)); (B, H, W) counts as one channel.
  assert viz.image_grid(np.zeros((5, 4, 4), np.float32), padding=0).shape == (8, 12, 1)
  assert viz.image_grid(np.zeros((1, 4, 4, 1), np.float32), padding=0).shape == (4, 4, 1)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 4, 4, 2), np.float32), "1 or 3 channels"),
    (np.zeros((4, 4), np.float32), "shape"),
    (np.zeros((0, 4, 4, 1), np.float32), "empty"),
    (np.zeros((2, 4, 4, 1), np.uint8), "floating point"),
])
def test_image_grid_rejects_bad_input(bad, match):
  with pytest.raises(ValueError, match=match):
    viz.image_grid(bad)


def test_image_grid_rejects_bad_options():
  x = np.zeros((2, 4, 4, 1), np.float32)
  with pytest.raises(ValueError, match="ncols"):
    viz.image_grid(x, ncols=0)
  with pytest.raises(ValueError, match="padding"):
    viz.image_grid(x, padding=-1)


def test_image_grid_accepts_jax_arrays():
  jnp = pytest.importorskip("jax.numpy")
  x = np.linspace(-1, 1, 2 * 3 * 3).reshape(2, 3, 3, 1).astype(np.float32)
  np.testing.assert_array_equal(viz.image_grid(jnp.asarray(x)), viz.image_grid(x))
  # bfloat16 (mixed-precision generators) converts too.
  assert viz.image_grid(jnp.asarray(x, jnp.bfloat16)).shape == viz.image_grid(x).shape


# ----------------------------------------------------------------- save_png


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 1), (5, 6, 3), (5, 6, 4)])
def test_save_png_round_trip_creates_dirs_leaves_no_temp(tmp_path, shape):
  rng = np.random.default_rng(1)
  a = rng.integers(0, 256, shape, dtype=np.uint8)
  path = tmp_path / "a" / "b" / "grid.png"
  assert viz.save_png(path, a) == str(path)
  with Image.open(path) as im:
    back = np.asarray(im)
  np.testing.assert_array_equal(back, a.reshape(back.shape))
  assert os.listdir(path.parent) == ["grid.png"]


def test_save_png_replaces_existing_file(tmp_path):
  path = tmp_path / "x.png"
  viz.save_png(path, np.zeros((2, 2), np.uint8))
  viz.save_png(path, np.full((3, 3, 3), 7, np.uint8))
  with Image.open(path) as im:
    assert im.size == (3, 3) and np.asarray(im)[0, 0, 0] == 7
  assert os.listdir(tmp_path) == ["x.png"]


def test_save_png_failure_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
  path = tmp_path / "x.png"
  viz.save_png(path, np.zeros((2, 2), np.uint8))

  def fail(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(Image.Image, "save", fail)
  with pytest.raises(OSError, match="disk full"):
    viz.save_png(path, np.full((2, 2), 9, np.uint8))
  monkeypatch.undo()
  assert os.listdir(tmp_path) == ["x.png"]
  with Image.open(path) as im:
    assert np.asarray(im).max() == 0  # the old image, intact


def test_save_png_rejects_floats_and_bad_shapes(tmp_path):
  with pytest.raises(ValueError, match="uint8"):
    viz.save_png(tmp_path / "f.png", np.zeros((2, 2), np.float32))
  with pytest.raises(ValueError, match="shape"):
    viz.save_png(tmp_path / "f.png", np.zeros((2, 2, 2), np.uint8))
  assert not os.listdir(tmp_path)



# The geometry tests below predate the colour bar and caption: they draw the panels alone
# (test_attention_figure_footer covers the footer).
attention_figure = functools.partial(viz.attention_figure, colorbar=False)

# --------------------------------------------------------- attention_figure


def _one_hot_map(b, n, source_index, m=None):
  a = np.zeros((b, n, n if m is None else m), np.float32)
  a[:, :, source_index] = 1.0
  return a


def test_apply_colormap_ends_and_brightness():
  t = np.linspace(0, 1, 11)
  for name in ("viridis", "jet", "gray"):
    rgb = viz.apply_colormap(t, name)
    assert rgb.shape == (11, 3) and rgb.dtype == np.uint8
  lum = _luma(viz.apply_colormap(t, "viridis"))
  assert np.all(np.diff(lum) > 0)  # brighter means more attention
  np.testing.assert_array_equal(viz.apply_colormap([0.0, 1.0], "gray"), [[0] * 3, [255] * 3])
  with pytest.raises(ValueError, match="colormap"):
    viz.apply_colormap(t, "nope")


def test_default_query_points():
  assert viz.default_query_points((8, 8)) == [(2, 2), (2, 6), (6, 2), (6, 6)]
  assert viz.default_query_points((1, 1)) == [(0, 0)]
  assert viz.default_query_points((4, 16)) == [(1, 4), (1, 12), (3, 4), (3, 12)]


def test_attention_figure_shape_default_queries():
  rng = np.random.default_rng(2)
  images = rng.uniform(-1, 1, (3, 32, 32, 1)).astype(np.float32)
  a = rng.random((3, 64, 64)).astype(np.float32)
  a /= a.sum(-1, keepdims=True)
  fig = attention_figure(images, a, scale=1, padding=2, labels=False)
  # 3 rows; 1 image + 4 default queries.
  assert fig.dtype == np.uint8
  assert fig.shape == (3 * 34 + 2, 5 * 34 + 2, 3)
  # Titles add a band on top; max_samples limits rows; default scale >= 64 px.
  fig = attention_figure(images, a, [(0, 0)], max_samples=2)
  assert fig.shape == (12 + 2 * 66 + 2, 2 * 66 + 2, 3)


def test_attention_figure_first_panel_is_the_image():
  rng = np.random.default_rng(3)
  images = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  a = np.full((2, 16, 16), 1 / 16, np.float32)
  fig = attention_figure(images, a, [(0, 0)], scale=1, padding=2, labels=False,
                             mark_heatmaps=False)
  # Marker outlines the query cell's border area only: compare away from it.
  np.testing.assert_array_equal(fig[2 + 10:2 + 16, 2 + 10:2 + 16],
                                viz.to_uint8(images[0, 10:, 10:]))
  np.testing.assert_array_equal(fig[2 + 18 + 10:2 + 18 + 16, 2 + 10:2 + 16],
                                viz.to_uint8(images[1, 10:, 10:]))


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_attention_figure_one_hot_row_is_brightest_at_source(upsample):
  # 8x8 feature map on a 32x32 image: each cell is 4x4 pixels.
  h = w = 8
  src_y, src_x = 5, 2
  images = np.zeros((1, 32, 32, 1), np.float32)
  a = np.full((1, h * w, h * w), 1e-4, np.float32)
  a[0, :, src_y * w + src_x] = 1.0
  queries = [(0, 7), (3, 3)]
  fig = attention_figure(images, a, queries, scale=1, padding=2, labels=False,
                             upsample=upsample)
  for q in range(len(queries)):
    x0 = 2 + (1 + q) * (32 + 2)
    panel = fig[2:34, x0:x0 + 32]
    # Luminance at each cell's centre (markers sit on cell borders).
    centres = _luma(panel[2::4, 2::4])
    assert centres.shape == (h, w)
    assert np.unravel_index(np.argmax(centres), centres.shape) == (src_y, src_x)


def test_attention_figure_orientation_rows_are_queries():
  # Row j (the query) must be shown, not column j: make the two differ.
  h = w = 4
  a = np.zeros((1, 16, 16), np.float32)
  a[0, 1 * w + 1, 3 * w + 2] = 1.0  # query (1, 1) looks at source (3, 2)
  a[0, np.arange(16) != 5, 0] = 1.0  # every other query looks at source 0
  fig = attention_figure(np.zeros((1, 16, 16, 1), np.float32), a, [(1, 1)],
                             scale=1, padding=0, labels=False, mark_heatmaps=False)
  panel = fig[:, 16:32]
  centres = _luma(panel[2::4, 2::4])
  assert np.unravel_index(np.argmax(centres), centres.shape) == (3, 2)


def test_attention_figure_non_square_and_pooled_keys():
  # Query grid 4x8 (N = 32); pooled keys on a 2x4 grid (M = 8).
  images = np.zeros((2, 16, 32, 3), np.float32)
  a = np.zeros((2, 32, 8), np.float32)
  a[:, :, 1 * 4 + 3] = 1.0  # source (1, 3) on the 2x4 grid
  fig = attention_figure(images, a, [(3, 7)], feature_hw=(4, 8), source_hw=(2, 4),
                             scale=1, padding=0, labels=False, mark_heatmaps=False)
  assert fig.shape == (2 * 16, 2 * 32, 3)
  centres = _luma(fig[:16, 32:][4::8, 4::8])  # 8x8-pixel source cells
  assert np.unravel_index(np.argmax(centres), centres.shape) == (1, 3)


def test_attention_figure_accepts_jax_arrays():
  jnp = pytest.importorskip("jax.numpy")
  images = np.zeros((2, 8, 8, 1), np.float32)
  a = _one_hot_map(2, 16, 3)
  want = attention_figure(images, a, scale=1)
  got = attention_figure(jnp.asarray(images), jnp.asarray(a), scale=1)
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kwargs, match", [
    (dict(attention_map=np.zeros((2, 15, 15))), "not a square"),
    (dict(attention_map=np.zeros((2, 16, 16)), feature_hw=(3, 5)), "feature_hw"),
    (dict(attention_map=np.zeros((3, 16, 16))), "batch mismatch"),
    (dict(attention_map=np.zeros((2, 16))), r"\(B, N, M\)"),
    (dict(attention_map=np.zeros((2, 16, 16)), query_points=[(4, 0)]), "outside"),
    (dict(attention_map=np.zeros((2, 16, 16)), query_points=[(0, -1)]), "outside"),
    (dict(attention_map=np.zeros((2, 16, 16)), query_points=[(0, 1.5)]), "integer"),
    (dict(attention_map=np.zeros((2, 16, 16)), query_points=[]), "empty"),
    (dict(attention_map=np.zeros((2, 16, 5))), "source_hw"),
    (dict(attention_map=np.zeros((2, 16, 16)), alpha=2.0), "alpha"),
    (dict(attention_map=np.zeros((2, 16, 16)), upsample="cubic"), "upsample"),
    (dict(attention_map=np.zeros((2, 16, 16)), colormap="hot"), "colormap"),
    (dict(attention_map=np.zeros((2, 16, 16)), max_samples=0), "max_samples"),
])
def test_attention_figure_validation(kwargs, match):
  images = np.zeros((2, 8, 8, 1), np.float32)
  with pytest.raises(ValueError, match=match):
    attention_figure(images, **kwargs)


def test_attention_figure_without_font(monkeypatch):
  monkeypatch.setattr(annotations, "load_font", lambda: None)
  fig = attention_figure(np.zeros((1, 8, 8, 1), np.float32), _one_hot_map(1, 4, 0),
                             scale=1, padding=2)
  assert fig.shape[0] == 12 + 8 + 4  # the title band stays, blank


def test_attention_figure_footer_has_colour_bar_and_caption():
  rng = np.random.default_rng(7)
  images = rng.uniform(-1, 1, (1, 16, 16, 1)).astype(np.float32)
  a = rng.random((1, 64, 64)).astype(np.float32)
  plain = viz.attention_figure(images, a, colorbar=False)
  caption = viz.attention_caption("generator attention layer 2 of 2", (8, 8), step=300)
  assert "step 300" in caption and "8x8 feature grid" in caption
  figure = viz.attention_figure(images, a, caption=caption)
  assert figure.shape[1] == plain.shape[1] and figure.shape[0] > plain.shape[0]
  np.testing.assert_array_equal(figure[:plain.shape[0]], plain)
  footer = figure[plain.shape[0]:]
  # The bar: viridis from dark purple (left) to yellow (right) on one row.
  bar_row = footer[4].astype(int)
  purple = (bar_row[:, 2] > bar_row[:, 1] + 40) & (bar_row[:, 0] < 120)
  yellow = (bar_row[:, 0] > 200) & (bar_row[:, 1] > 200) & (bar_row[:, 2] < 100)
  assert purple.any() and yellow.any()
  assert np.flatnonzero(purple).max() < np.flatnonzero(yellow).min()  # 0 left, max right
  # Caption text below the bar (dark pixels).
  assert np.any(footer[20:] < 100)
