"""The attention figure: where a self-attention layer looks, for a few query positions.

Conventions (those of `sagan_jax.layers.SelfAttention`): images are NHWC
float in [-1, 1]; an attention map is ``(B, N, M)`` with
``attention_map[b, j, i]`` the weight that output (query) position ``j``
gives source position ``i`` (each row sums to 1), both positions flattened
row-major over the feature map (``index = y * w + x``).
For the chapter's layers ``M == N``; the official variant max-pools keys, so
there ``M == N / 4``.

The figure is built in four parts: the inputs checked (`_map_grids`,
`_query_points`, `_check_options`), each query's heatmap (`_query_heatmaps`),
the panels blended and tiled (`_blended_panels`, `_tiled`), then the markers,
titles and footer drawn on top (`sagan_jax.viz.annotations`).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from sagan_jax.viz.annotations import (TITLE_HEIGHT, add_footer, cell_box, draw_marker,
                                       draw_titles, marker_color)
from sagan_jax.viz.colormap import apply_colormap, check_colormap
from sagan_jax.viz.grids import as_nhwc

__all__ = ["attention_figure", "default_query_points"]

_UPSAMPLING = ("nearest", "bilinear")
_MIN_PANEL_SIDE = 64  # pixels: the default scale magnifies smaller images to this


def attention_figure(
    images: Any,
    attention_map: Any,
    query_points: Optional[Sequence[Sequence[int]]] = None,
    *,
    feature_hw: Optional[Sequence[int]] = None,
    source_hw: Optional[Sequence[int]] = None,
    max_samples: Optional[int] = 8,
    alpha: float = 0.6,
    colormap: str = "viridis",
    upsample: str = "nearest",
    scale: Optional[int] = None,
    padding: int = 2,
    mark_heatmaps: bool = True,
    labels: bool = True,
    colorbar: bool = True,
    caption: Optional[str] = None,
) -> np.ndarray:
  """Draws where a self-attention layer looks, for a few query positions.

  One row per sample: the image with every query position outlined in its
  own colour, then for each query ``j = y * w + x`` the heatmap of
  ``attention_map[b, j]`` reshaped to the source grid, resized to the image
  and alpha-blended over the greyscale image (the seed notebook's view of
  which positions ``i`` contribute to output position ``j``). Each heatmap is
  scaled to its own maximum, since raw weights are about ``1 / N``; compare
  shapes across panels, not absolute colours.

  Args:
    images: (B, H, W, C) or (B, H, W) float in [-1, 1], C = 1 or 3; the
      images the attention layer belongs to (e.g. generator outputs).
    attention_map: (B, N, M); row ``j`` sums to 1 over sources ``i``.
      ``M == N`` for the chapter's layers, ``N / 4`` for the pooled variant.
      Only the needed rows are read, so a jax array stays mostly on device.
    query_points: (y, x) pairs in query feature-map coordinates; default
      four spread points (`default_query_points`).
    feature_hw: (h, w) of the query grid, h * w = N; default square.
    source_hw: (h', w') of the source grid, h' * w' = M; default
      ``feature_hw`` when M == N, else square.
    max_samples: at most this many rows (the first samples); None for all.
    alpha: heatmap opacity in [0, 1].
    colormap: see `apply_colormap`.
    upsample: 'nearest' (shows the true resolution) or 'bilinear'.
    scale: integer magnification of every panel; default makes panels at
      least 64 pixels on their longer side.
    padding: white pixels between panels.
    mark_heatmaps: also outline the query cell on its own heatmap.
    labels: add a title row ('image', 'q0 (y,x)', ...) in the marker
      colours; left blank if no font can be loaded.
    colorbar: add the colour scale below the panels (0 to each map's maximum).
    caption: text below the figure (e.g. `attention_caption`), wrapped to its width.

  Returns:
    uint8 RGB array (rows * (S*H + padding) + padding [+ title], (1 + Q) *
    (S*W + padding) + padding, 3), S the scale.

  Raises:
    ValueError: on inconsistent shapes, a query point outside the feature
      map, or bad options.
  """
  x = as_nhwc(images)
  if not hasattr(attention_map, "shape"):
    attention_map = np.asarray(attention_map)
  grids = _map_grids(x.shape[0], tuple(attention_map.shape), feature_hw, source_hw)
  points = _query_points(query_points, grids[0])
  padding = _check_options(alpha, upsample, colormap, max_samples, padding)
  rows = x.shape[0] if max_samples is None else min(x.shape[0], int(max_samples))
  image_hw = x.shape[1:3]
  scale = _panel_scale(scale, image_hw)
  heat = _query_heatmaps(attention_map, rows, points, grids, image_hw, upsample)
  panels = _blended_panels(x[:rows], heat, alpha, colormap, scale)
  top = TITLE_HEIGHT if labels else 0
  canvas = _tiled(panels, padding, top)
  _mark_queries(ImageDraw.Draw(canvas), points, rows, grids[0], image_hw, scale, padding, top,
                mark_heatmaps)
  if labels:
    draw_titles(ImageDraw.Draw(canvas), points, padding, panels.shape[3])
  figure = np.asarray(canvas)
  if colorbar or caption:
    figure = add_footer(figure, colormap if colorbar else None, caption, padding)
  return figure


def default_query_points(feature_hw: Sequence[int]) -> list[tuple[int, int]]:
  """Four spread query positions: the centres of the feature map's quadrants.

  Args:
    feature_hw: (h, w) of the query feature map.

  Returns:
    Up to four distinct (y, x) points (fewer when the map is tiny).
  """
  h, w = int(feature_hw[0]), int(feature_hw[1])
  points = []
  for y in (h // 4, (3 * h) // 4):
    for x in (w // 4, (3 * w) // 4):
      if (y, x) not in points:
        points.append((y, x))
  return points


# --- the inputs checked ------------------------------------------------------------------------


def _map_grids(batch: int, map_shape: tuple[int, ...], feature_hw: Optional[Sequence[int]],
               source_hw: Optional[Sequence[int]]) -> tuple[tuple[int, int], tuple[int, int]]:
  """``((h, w), (h', w'))``: the query and source grids of a ``(B, N, M)`` map."""
  if len(map_shape) != 3:
    raise ValueError(f"attention_map must be (B, N, M), got shape {map_shape}.")
  b, n, m = map_shape
  if b != batch:
    raise ValueError(
        f"batch mismatch: images have {batch} samples, attention_map has {b}.")
  feature = _grid_shape(n, feature_hw, "feature_hw")
  if source_hw is None and m == n:
    return feature, feature
  return feature, _grid_shape(m, source_hw, "source_hw")


def _grid_shape(n: int, hw: Optional[Sequence[int]], what: str) -> tuple[int, int]:
  """Resolves the (h, w) of a feature map with n positions."""
  if hw is None:
    s = math.isqrt(n)
    if s * s != n:
      raise ValueError(
          f"{what}: {n} positions is not a square number; pass {what}=(h, w) "
          "with h * w equal to it.")
    return s, s
  if len(hw) != 2 or any(int(v) != v or v < 1 for v in hw):
    raise ValueError(f"{what} must be two positive integers (h, w), got {hw!r}.")
  h, w = int(hw[0]), int(hw[1])
  if h * w != n:
    raise ValueError(
        f"{what}={tuple(hw)} has {h * w} positions but the attention map has {n}.")
  return h, w


def _query_points(query_points: Optional[Sequence[Sequence[int]]],
                  feature_hw: tuple[int, int]) -> list[tuple[int, int]]:
  """The (y, x) query positions (default `default_query_points`), each checked."""
  fh, fw = feature_hw
  if query_points is None:
    query_points = default_query_points(feature_hw)
  points = []
  for p in query_points:
    if len(p) != 2 or any(int(v) != v for v in p):
      raise ValueError(f"query point {p!r} must be an integer pair (y, x).")
    y, x = int(p[0]), int(p[1])
    if not (0 <= y < fh and 0 <= x < fw):
      raise ValueError(
          f"query point (y={y}, x={x}) is outside the {fh}x{fw} feature map "
          "(coordinates are in the attention layer's feature map, not pixels).")
    points.append((y, x))
  if not points:
    raise ValueError("query_points is empty.")
  return points


def _check_options(alpha: float, upsample: str, colormap: str, max_samples: Optional[int],
                   padding: int) -> int:
  """Raises ``ValueError`` for a bad drawing option; returns ``padding`` as an int."""
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
  if upsample not in _UPSAMPLING:
    raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}.")
  check_colormap(colormap)
  if max_samples is not None and max_samples < 1:
    raise ValueError(f"max_samples must be positive or None, got {max_samples}.")
  if int(padding) != padding or padding < 0:
    raise ValueError(f"padding must be a non-negative integer, got {padding!r}.")
  return int(padding)


def _panel_scale(scale: Optional[int], image_hw: tuple[int, int]) -> int:
  """The panels' integer magnification (default: at least 64 pixels a side)."""
  if scale is None:
    scale = max(1, math.ceil(_MIN_PANEL_SIDE / max(image_hw)))
  if int(scale) != scale or scale < 1:
    raise ValueError(f"scale must be a positive integer, got {scale!r}.")
  return int(scale)


# --- the heatmaps and panels -------------------------------------------------------------------


def _query_heatmaps(attention_map: Any, rows: int, points: Sequence[tuple[int, int]],
                    grids: tuple[tuple[int, int], tuple[int, int]], image_hw: tuple[int, int],
                    upsample: str) -> np.ndarray:
  """``(rows, Q, H, W)`` in [0, 1]: each query's map row on the source grid, scaled to its
  own maximum and resized to the image."""
  (_, fw), (sh, sw) = grids
  # Index before converting: the full map is N*M floats per sample (64 MB
  # each at 64x64), the figure needs Q rows of it.
  js = np.array([y * fw + x for y, x in points], dtype=np.int64)
  sel = np.asarray(attention_map[:rows][:, js], dtype=np.float64)  # (R, Q, M)
  sel = np.clip(np.nan_to_num(sel, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
  peak = sel.max(axis=-1, keepdims=True)
  sel = np.divide(sel, peak, out=np.zeros_like(sel), where=peak > 0)
  return _upsample(sel.reshape(rows, len(points), sh, sw), image_hw, upsample)


def _upsample(maps: np.ndarray, out_hw: tuple[int, int], method: str) -> np.ndarray:
  """Resizes (..., h, w) float maps to (..., H, W)."""
  out_h, out_w = out_hw
  h, w = maps.shape[-2:]
  if method == "nearest":
    # Source index of each output pixel centre; equals np.repeat when the
    # sizes divide, and stays sensible when they do not.
    ys = np.minimum(((np.arange(out_h) + 0.5) * h / out_h).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(out_w) + 0.5) * w / out_w).astype(np.int64), w - 1)
    return maps[..., ys[:, None], xs[None, :]]
  if method == "bilinear":
    flat = maps.reshape(-1, h, w).astype(np.float32)
    out = np.stack([
        np.asarray(Image.fromarray(m, mode="F").resize(
            (out_w, out_h), Image.Resampling.BILINEAR)) for m in flat])
    return out.reshape(maps.shape[:-2] + (out_h, out_w))
  raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {method!r}.")


def _blended_panels(images: np.ndarray, heat: np.ndarray, alpha: float, colormap: str,
                    scale: int) -> np.ndarray:
  """``(R, 1 + Q, S·H, S·W, 3)`` uint8: each image, then its heatmaps blended over it in grey."""
  colored = apply_colormap(heat, colormap).astype(np.float64)  # (R, Q, H, W, 3)
  img = np.clip((np.nan_to_num(images.astype(np.float64), nan=-1.0) + 1.0) / 2.0,
                0.0, 1.0) * 255.0
  if img.shape[-1] == 3:
    gray = img @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma
    base = img
  else:
    gray = img[..., 0]
    base = np.repeat(img, 3, axis=-1)
  blended = (1.0 - alpha) * gray[:, None, :, :, None] + alpha * colored
  panels = np.concatenate([base[:, None], blended], axis=1)
  panels = np.floor(np.clip(panels, 0.0, 255.0) + 0.5).astype(np.uint8)
  if scale > 1:
    panels = panels.repeat(scale, axis=2).repeat(scale, axis=3)
  return panels


def _tiled(panels: np.ndarray, padding: int, top: int) -> Image.Image:
  """The panels on a white canvas, a row per sample, ``padding`` apart, ``top`` pixels
  left free above them for titles."""
  rows, ncols, ph, pw, _ = panels.shape
  fig = np.full((top + rows * (ph + padding) + padding,
                 ncols * (pw + padding) + padding, 3), 255, dtype=np.uint8)
  for r in range(rows):
    for c in range(ncols):
      y0, x0 = _panel_origin(r, c, (ph, pw), padding, top)
      fig[y0:y0 + ph, x0:x0 + pw] = panels[r, c]
  return Image.fromarray(fig, mode="RGB")


def _panel_origin(row: int, column: int, panel_hw: tuple[int, int], padding: int,
                  top: int) -> tuple[int, int]:
  """``(y, x)`` of a panel's top-left pixel in the figure."""
  return (top + padding + row * (panel_hw[0] + padding),
          padding + column * (panel_hw[1] + padding))


def _mark_queries(draw: ImageDraw.ImageDraw, points: Sequence[tuple[int, int]], rows: int,
                  feature_hw: tuple[int, int], image_hw: tuple[int, int], scale: int,
                  padding: int, top: int, mark_heatmaps: bool) -> None:
  """Outlines each query's cell on the image panel (and on its own heatmap)."""
  panel_hw = (image_hw[0] * scale, image_hw[1] * scale)
  for r in range(rows):
    for q, (y, x) in enumerate(points):
      box = cell_box(y, x, feature_hw, image_hw, scale)
      for c in [0] + ([1 + q] if mark_heatmaps else []):
        y0, x0 = _panel_origin(r, c, panel_hw, padding, top)
        draw_marker(draw, box, marker_color(q), (x0, y0), panel_hw)
