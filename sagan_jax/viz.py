"""Sample grids, atomic PNG writes and self-attention figures (numpy + PIL only).

Everything here runs on the host: inputs may be numpy or jax arrays and are
converted with ``np.asarray``; nothing imports matplotlib, so the library works
on a bare install and inside headless training jobs.

Conventions (those of `sagan_jax.layers.SelfAttention`): images are NHWC
float in [-1, 1]; an attention map is ``(B, N, M)`` with
``attention_map[b, j, i]`` the weight that output (query) position ``j``
gives source position ``i`` (each row sums to 1), both positions flattened
row-major over the feature map (``index = y * w + x``).
For the chapter's layers ``M == N``; the official variant max-pools keys, so
there ``M == N / 4``.
"""

from __future__ import annotations

import math
import io
import os
import textwrap
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sagan_jax.atomic_file import atomic_write

__all__ = [
    "apply_colormap",
    "attention_caption",
    "attention_figure",
    "default_query_points",
    "image_grid",
    "save_png",
    "to_uint8",
]

# Viridis sampled at 17 evenly spaced points (matplotlib's table, copied so
# matplotlib is not needed). Its luminance rises monotonically, so "brightest"
# means "most attended", which 'jet' (dark red at the top) does not give.
_VIRIDIS_ANCHORS = np.array([
    [0.2670, 0.0049, 0.3294], [0.2823, 0.0950, 0.4173],
    [0.2788, 0.1755, 0.4834], [0.2590, 0.2515, 0.5247],
    [0.2297, 0.3224, 0.5457], [0.1994, 0.3876, 0.5546],
    [0.1727, 0.4488, 0.5579], [0.1490, 0.5081, 0.5572],
    [0.1276, 0.5669, 0.5506], [0.1206, 0.6258, 0.5335],
    [0.1579, 0.6838, 0.5017], [0.2461, 0.7389, 0.4520],
    [0.3692, 0.7889, 0.3829], [0.5160, 0.8312, 0.2943],
    [0.6785, 0.8637, 0.1895], [0.8456, 0.8873, 0.0997],
    [0.9932, 0.9062, 0.1439],
], dtype=np.float64)

# Query marker colours: saturated hues that stay visible on both a grey image
# and the viridis range (which has no red or magenta).
_MARKER_COLORS = (
    (255, 40, 40), (255, 0, 255), (255, 150, 0), (0, 255, 255),
    (255, 255, 255), (255, 120, 180), (140, 90, 255), (0, 0, 0),
)

_LABEL_HEIGHT = 12  # pixels reserved above the panels for column titles


def to_uint8(images: Any) -> np.ndarray:
  """Maps floats in [-1, 1] to uint8 exactly as torchvision does.

  ``make_grid(normalize=True, value_range=(-1, 1))`` followed by
  ``save_image`` computes ``floor(clip((x + 1) / 2, 0, 1) * 255 + 0.5)``;
  matching it keeps PNGs byte-comparable with the PyTorch chapter.

  Args:
    images: array of any shape, values nominally in [-1, 1]. NaN becomes -1
      (black) rather than an undefined cast; +-inf clip to the ends.

  Returns:
    A uint8 array of the same shape.
  """
  x = np.asarray(images, dtype=np.float64)
  x = np.nan_to_num(x, nan=-1.0, posinf=1.0, neginf=-1.0)
  x = np.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return np.floor(x * 255.0 + 0.5).astype(np.uint8)


def _as_nhwc(images: Any, what: str = "images") -> np.ndarray:
  """Returns ``images`` as float NHWC with C in {1, 3}; (B, H, W) gets C = 1."""
  x = np.asarray(images)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(
        f"{what} must be (B, H, W, C) or (B, H, W), got shape {x.shape}.")
  if x.shape[-1] not in (1, 3):
    raise ValueError(
        f"{what} must have 1 or 3 channels (NHWC), got shape {x.shape}; "
        "NCHW input needs a transpose to NHWC first.")
  if x.shape[0] == 0:
    raise ValueError(f"{what} is an empty batch (shape {x.shape}).")
  if x.dtype.kind in "biu":
    # uint8 pixels would silently saturate to white under the [-1, 1] rule.
    raise ValueError(
        f"{what} must be floating point in [-1, 1], got dtype {x.dtype}.")
  # Also turns bfloat16 into something numpy computes with; float32 is not copied.
  return x.astype(np.float32, copy=False)


def image_grid(images: Any, ncols: Optional[int] = None, padding: int = 2,
               pad_value: float = 1.0) -> np.ndarray:
  """Tiles a batch into one uint8 image, like ``torchvision.utils.make_grid``.

  The layout matches ``make_grid``: every cell is ``padding`` pixels apart and
  from the border, unused cells of the last row are filled with ``pad_value``.

  Args:
    images: (B, H, W, C) or (B, H, W) float in [-1, 1], C = 1 or 3.
    ncols: images per row; default ``ceil(sqrt(B))`` (a near-square grid).
    padding: pixels between and around images.
    pad_value: colour of the padding, in the images' own [-1, 1] scale
      (1.0 = white, -1.0 = black).

  Returns:
    uint8 array (rows * (H + padding) + padding, ncols * (W + padding) +
    padding, C).

  Raises:
    ValueError: on a bad shape, dtype, ``ncols`` or ``padding``.
  """
  x = _as_nhwc(images)
  b, h, w, c = x.shape
  if ncols is None:
    ncols = math.ceil(math.sqrt(b))
  if int(ncols) != ncols or ncols < 1:
    raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
  if int(padding) != padding or padding < 0:
    raise ValueError(f"padding must be a non-negative integer, got {padding!r}.")
  ncols, padding = min(int(ncols), b), int(padding)
  nrows = math.ceil(b / ncols)
  cell_h, cell_w = h + padding, w + padding
  grid = np.full((nrows * cell_h + padding, ncols * cell_w + padding, c),
                 to_uint8(pad_value), dtype=np.uint8)
  for k in range(b):  # tile by tile: no float64 copy of the whole batch
    r, col = divmod(k, ncols)
    y0, x0 = r * cell_h + padding, col * cell_w + padding
    grid[y0:y0 + h, x0:x0 + w] = to_uint8(x[k])
  return grid


def _to_pil(array: Any) -> Image.Image:
  a = np.asarray(array)
  if a.dtype != np.uint8:
    raise ValueError(
        f"expected a uint8 image, got dtype {a.dtype}; convert floats in "
        "[-1, 1] with image_grid() or to_uint8() first.")
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[..., 0]
  if a.ndim == 2:
    return Image.fromarray(a, mode="L")
  if a.ndim == 3 and a.shape[-1] in (3, 4):
    return Image.fromarray(a, mode="RGB" if a.shape[-1] == 3 else "RGBA")
  raise ValueError(
      f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
      f"got {a.shape}.")


def save_png(path: str | os.PathLike, array: Any) -> str:
  """Writes a uint8 image as PNG atomically; creates missing parent folders.

  The PNG is written to a hidden temporary file in the destination folder and
  moved over ``path`` with ``os.replace`` (atomic on POSIX and Windows within
  one filesystem), so a process killed mid-write leaves either the old file or
  the new one, never a truncated PNG. A kill can leave a ``.<name>.*.tmp``
  file behind; it never matches ``*.png``.

  Args:
    path: destination file.
    array: uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).

  Returns:
    ``path`` as a string.

  Raises:
    ValueError: if ``array`` is not a uint8 image of a supported shape.
  """
  image = _to_pil(array)  # validate before touching the filesystem
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return atomic_write(path, buffer.getvalue())


def apply_colormap(values: Any, name: str = "viridis") -> np.ndarray:
  """Maps values in [0, 1] to RGB uint8 with a small built-in colour map.

  Args:
    values: array of any shape; clipped to [0, 1], NaN treated as 0.
    name: 'viridis' (perceptually uniform, brightness rises with value),
      'jet' (the classic rainbow) or 'gray'.

  Returns:
    uint8 array of shape ``values.shape + (3,)``.

  Raises:
    ValueError: for an unknown ``name``.
  """
  t = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
  if name == "viridis":
    pos = t * (len(_VIRIDIS_ANCHORS) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(_VIRIDIS_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _VIRIDIS_ANCHORS[lo] * (1.0 - frac) + _VIRIDIS_ANCHORS[lo + 1] * frac
  elif name == "jet":
    # The usual piecewise-linear approximation of MATLAB's jet.
    rgb = np.stack([np.clip(1.5 - np.abs(4.0 * t - k), 0.0, 1.0)
                    for k in (3.0, 2.0, 1.0)], axis=-1)
  elif name == "gray":
    rgb = np.repeat(t[..., None], 3, axis=-1)
  else:
    raise ValueError(
        f"unknown colormap {name!r}; expected 'viridis', 'jet' or 'gray'.")
  return np.floor(rgb * 255.0 + 0.5).astype(np.uint8)


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


def _cell_box(y: int, x: int, feature_hw: tuple[int, int],
              image_hw: tuple[int, int], scale: int) -> tuple[int, int, int, int]:
  """Pixel box (x0, y0, x1, y1), inclusive, of a feature cell in a panel."""
  (fh, fw), (ih, iw) = feature_hw, image_hw
  y0, x0 = (y * ih) // fh, (x * iw) // fw
  # At least one pixel, in case the feature map is finer than the image.
  y1, x1 = max(((y + 1) * ih) // fh, y0 + 1), max(((x + 1) * iw) // fw, x0 + 1)
  return x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1


def _draw_marker(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
                 color: tuple[int, int, int], origin: tuple[int, int],
                 panel_hw: tuple[int, int]) -> None:
  """Outlines a cell one pixel outside its box, clipped to its panel.

  Drawing outside the cell keeps the cell's own colour visible; the outline
  is at least 5x5 so a one-pixel cell still shows.
  """
  x0, y0, x1, y1 = box
  grow_x, grow_y = max(1, 2 - (x1 - x0) // 2), max(1, 2 - (y1 - y0) // 2)
  ph, pw = panel_hw
  ox, oy = origin
  draw.rectangle(
      [ox + max(x0 - grow_x, 0), oy + max(y0 - grow_y, 0),
       ox + min(x1 + grow_x, pw - 1), oy + min(y1 + grow_y, ph - 1)],
      outline=color)


def _load_font() -> Optional[Any]:
  """PIL's built-in font, or None: labels are decoration and must never fail."""
  try:
    try:
      return ImageFont.load_default(size=10)
    except TypeError:  # Pillow without the sized built-in font
      return ImageFont.load_default()
  except Exception:  # pylint: disable=broad-except
    return None


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
  x = _as_nhwc(images)
  if not hasattr(attention_map, "shape"):
    attention_map = np.asarray(attention_map)
  amap_shape = tuple(attention_map.shape)
  if len(amap_shape) != 3:
    raise ValueError(
        f"attention_map must be (B, N, M), got shape {amap_shape}.")
  b, n, m = amap_shape
  if b != x.shape[0]:
    raise ValueError(
        f"batch mismatch: images have {x.shape[0]} samples, attention_map has {b}.")
  fh, fw = _grid_shape(n, feature_hw, "feature_hw")
  if source_hw is None and m == n:
    sh, sw = fh, fw
  else:
    sh, sw = _grid_shape(m, source_hw, "source_hw")
  if query_points is None:
    query_points = default_query_points((fh, fw))
  points = []
  for p in query_points:
    if len(p) != 2 or any(int(v) != v for v in p):
      raise ValueError(f"query point {p!r} must be an integer pair (y, x).")
    y, xq = int(p[0]), int(p[1])
    if not (0 <= y < fh and 0 <= xq < fw):
      raise ValueError(
          f"query point (y={y}, x={xq}) is outside the {fh}x{fw} feature map "
          "(coordinates are in the attention layer's feature map, not pixels).")
    points.append((y, xq))
  if not points:
    raise ValueError("query_points is empty.")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
  if upsample not in ("nearest", "bilinear"):
    raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}.")
  apply_colormap(np.zeros(1), colormap)  # validate the name before the work
  if max_samples is not None and max_samples < 1:
    raise ValueError(f"max_samples must be positive or None, got {max_samples}.")
  if int(padding) != padding or padding < 0:
    raise ValueError(f"padding must be a non-negative integer, got {padding!r}.")
  padding = int(padding)

  rows = b if max_samples is None else min(b, int(max_samples))
  _, ih, iw, _ = x.shape
  if scale is None:
    scale = max(1, math.ceil(64 / max(ih, iw)))
  if int(scale) != scale or scale < 1:
    raise ValueError(f"scale must be a positive integer, got {scale!r}.")
  scale = int(scale)

  # Index before converting: the full map is N*M floats per sample (64 MB
  # each at 64x64), the figure needs Q rows of it.
  js = np.array([y * fw + xq for y, xq in points], dtype=np.int64)
  sel = np.asarray(attention_map[:rows][:, js], dtype=np.float64)  # (R, Q, M)
  sel = np.clip(np.nan_to_num(sel, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
  peak = sel.max(axis=-1, keepdims=True)
  sel = np.divide(sel, peak, out=np.zeros_like(sel), where=peak > 0)
  heat = _upsample(sel.reshape(rows, len(points), sh, sw), (ih, iw), upsample)
  colored = apply_colormap(heat, colormap).astype(np.float64)  # (R, Q, H, W, 3)

  img = x[:rows].astype(np.float64)
  img = np.clip((np.nan_to_num(img, nan=-1.0) + 1.0) / 2.0, 0.0, 1.0) * 255.0
  if img.shape[-1] == 3:
    gray = img @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma
    base = img
  else:
    gray = img[..., 0]
    base = np.repeat(img, 3, axis=-1)
  blended = (1.0 - alpha) * gray[:, None, :, :, None] + alpha * colored
  panels = np.concatenate([base[:, None], blended], axis=1)  # (R, 1+Q, H, W, 3)
  panels = np.floor(np.clip(panels, 0.0, 255.0) + 0.5).astype(np.uint8)
  if scale > 1:
    panels = panels.repeat(scale, axis=2).repeat(scale, axis=3)

  ph, pw = ih * scale, iw * scale
  ncols = 1 + len(points)
  top = _LABEL_HEIGHT if labels else 0
  fig = np.full((top + rows * (ph + padding) + padding,
                 ncols * (pw + padding) + padding, 3), 255, dtype=np.uint8)
  for r in range(rows):
    for c in range(ncols):
      y0 = top + padding + r * (ph + padding)
      x0 = padding + c * (pw + padding)
      fig[y0:y0 + ph, x0:x0 + pw] = panels[r, c]

  canvas = Image.fromarray(fig, mode="RGB")
  draw = ImageDraw.Draw(canvas)
  for r in range(rows):
    y0 = top + padding + r * (ph + padding)
    for q, (y, xq) in enumerate(points):
      color = _MARKER_COLORS[q % len(_MARKER_COLORS)]
      box = _cell_box(y, xq, (fh, fw), (ih, iw), scale)
      targets = [0] + ([1 + q] if mark_heatmaps else [])
      for c in targets:
        _draw_marker(draw, box, color, (padding + c * (pw + padding), y0), (ph, pw))
  if labels:
    font = _load_font()
    if font is not None:
      titles = ["image"] + [f"q{q} ({y},{xq})" for q, (y, xq) in enumerate(points)]
      for c, title in enumerate(titles):
        color = (0, 0, 0) if c == 0 else _MARKER_COLORS[(c - 1) % len(_MARKER_COLORS)]
        # White text would vanish on the white title row.
        if color == (255, 255, 255):
          color = (0, 0, 0)
        try:
          draw.text((padding + c * (pw + padding), 0), title, fill=color, font=font)
        except Exception:  # pylint: disable=broad-except
          break  # a broken font is cosmetic; keep the figure
  figure = np.asarray(canvas)
  if colorbar or caption:
    figure = _add_footer(figure, colormap if colorbar else None, caption, padding)
  return figure


def attention_caption(layer: str, feature_hw: Sequence[int], step: Optional[int] = None) -> str:
  """``'<layer>, step 300: query points (y, x) on its 32×32 feature grid; each map …'``."""
  at = f", step {step}" if step is not None else ""
  return (f"{layer}{at}: query points (y, x) on its {feature_hw[0]}x{feature_hw[1]} feature "
          "grid; each map is scaled to its own maximum")


_FOOTER_LINE = 12  # pixels per line of footer text
_BAR_HEIGHT = 8


def _add_footer(figure: np.ndarray, colormap: Optional[str], caption: Optional[str],
                padding: int) -> np.ndarray:
  """The figure with a colour bar (0 … max) and a wrapped caption below it."""
  width = figure.shape[1]
  font = _load_font()
  lines = []
  if caption and font is not None:
    chars = max(20, (width - 2 * padding) // 6)  # the built-in font is ~6 px a character
    lines = textwrap.wrap(caption, chars)
  height = (_BAR_HEIGHT + _FOOTER_LINE + 4 if colormap else 0) + _FOOTER_LINE * len(lines) + 2
  footer = np.full((height, width, 3), 255, np.uint8)
  top = 2
  if colormap:
    bar_width = max(8, min(256, width - 2 * padding - 80))
    bar = apply_colormap(np.linspace(0.0, 1.0, bar_width), colormap)
    left = padding + 12
    footer[top:top + _BAR_HEIGHT, left:left + bar_width] = bar[None]
    top += _BAR_HEIGHT + 2
  canvas = Image.fromarray(footer, mode="RGB")
  if font is not None:
    draw = ImageDraw.Draw(canvas)
    try:
      if colormap:
        draw.text((padding, 0), "0", fill=(0, 0, 0), font=font)
        draw.text((left + bar_width + 4, 0), "max", fill=(0, 0, 0), font=font)
        draw.text((left, top), "attention weight / map maximum", fill=(0, 0, 0), font=font)
        top += _FOOTER_LINE + 2
      for line in lines:
        draw.text((padding, top), line, fill=(0, 0, 0), font=font)
        top += _FOOTER_LINE
    except Exception:  # pylint: disable=broad-except
      pass  # text is decoration; keep the bar
  return np.concatenate([figure, np.asarray(canvas)], axis=0)
