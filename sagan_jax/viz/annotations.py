"""What an attention figure draws on top of its panels: query markers, column titles,
the colour bar and the caption. Text is decoration: without a usable font the figure
is drawn without it, never refused."""

from __future__ import annotations

import textwrap
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sagan_jax.viz.colormap import apply_colormap

__all__ = ["MARKER_COLORS", "TITLE_HEIGHT", "add_footer", "attention_caption", "cell_box",
           "draw_marker", "draw_titles", "load_font", "marker_color"]

# Query marker colours: saturated hues that stay visible on both a grey image
# and the viridis range (which has no red or magenta).
MARKER_COLORS = (
    (255, 40, 40), (255, 0, 255), (255, 150, 0), (0, 255, 255),
    (255, 255, 255), (255, 120, 180), (140, 90, 255), (0, 0, 0),
)
TITLE_HEIGHT = 12  # pixels reserved above the panels for column titles
_FOOTER_LINE = 12  # pixels per line of footer text
_BAR_HEIGHT = 8
_CHAR_WIDTH = 6  # pixels per character of the built-in font, roughly


def marker_color(query: int) -> tuple[int, int, int]:
  """The colour of query ``query``'s marker and title."""
  return MARKER_COLORS[query % len(MARKER_COLORS)]


def load_font() -> Optional[Any]:
  """PIL's built-in font, or None: labels are decoration and must never fail."""
  try:
    try:
      return ImageFont.load_default(size=10)
    except TypeError:  # Pillow without the sized built-in font
      return ImageFont.load_default()
  except Exception:  # pylint: disable=broad-except
    return None


def cell_box(y: int, x: int, feature_hw: tuple[int, int],
             image_hw: tuple[int, int], scale: int) -> tuple[int, int, int, int]:
  """Pixel box (x0, y0, x1, y1), inclusive, of a feature cell in a panel."""
  (fh, fw), (ih, iw) = feature_hw, image_hw
  y0, x0 = (y * ih) // fh, (x * iw) // fw
  # At least one pixel, in case the feature map is finer than the image.
  y1, x1 = max(((y + 1) * ih) // fh, y0 + 1), max(((x + 1) * iw) // fw, x0 + 1)
  return x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1


def draw_marker(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
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


def draw_titles(draw: ImageDraw.ImageDraw, points: Sequence[tuple[int, int]], padding: int,
                panel_width: int) -> None:
  """'image', 'q0 (y,x)', … above the columns, each query's in its marker colour."""
  font = load_font()
  if font is None:
    return
  titles = ["image"] + [f"q{q} ({y},{x})" for q, (y, x) in enumerate(points)]
  for column, title in enumerate(titles):
    color = (0, 0, 0) if column == 0 else marker_color(column - 1)
    if color == (255, 255, 255):  # white text would vanish on the white title row
      color = (0, 0, 0)
    try:
      draw.text((padding + column * (panel_width + padding), 0), title, fill=color, font=font)
    except Exception:  # pylint: disable=broad-except
      return  # a broken font is cosmetic; keep the figure


def attention_caption(layer: str, feature_hw: Sequence[int], step: Optional[int] = None) -> str:
  """``'<layer>, step 300: query points (y, x) on its 32×32 feature grid; each map …'``."""
  at = f", step {step}" if step is not None else ""
  return (f"{layer}{at}: query points (y, x) on its {feature_hw[0]}x{feature_hw[1]} feature "
          "grid; each map is scaled to its own maximum")


def add_footer(figure: np.ndarray, colormap: Optional[str], caption: Optional[str],
               padding: int) -> np.ndarray:
  """The figure with a colour bar (0 … max) and a wrapped caption below it."""
  width = figure.shape[1]
  font = load_font()
  lines = []
  if caption and font is not None:
    lines = textwrap.wrap(caption, max(20, (width - 2 * padding) // _CHAR_WIDTH))
  height = (_BAR_HEIGHT + _FOOTER_LINE + 4 if colormap else 0) + _FOOTER_LINE * len(lines) + 2
  footer = np.full((height, width, 3), 255, np.uint8)
  bar_left, bar_width = padding + 12, max(8, min(256, width - 2 * padding - 80))
  if colormap:
    footer[2:2 + _BAR_HEIGHT, bar_left:bar_left + bar_width] = apply_colormap(
        np.linspace(0.0, 1.0, bar_width), colormap)[None]
  canvas = Image.fromarray(footer, mode="RGB")
  if font is not None:
    _draw_footer_text(ImageDraw.Draw(canvas), font, lines, padding,
                      (bar_left, bar_width) if colormap else None)
  return np.concatenate([figure, np.asarray(canvas)], axis=0)


def _draw_footer_text(draw: ImageDraw.ImageDraw, font: Any, lines: Sequence[str], padding: int,
                      bar: Optional[tuple[int, int]]) -> None:
  """The colour bar's ends and legend (``bar``: its left edge and width, if drawn), then
  the caption's lines."""
  top = 2
  try:
    if bar is not None:
      left, width = bar
      top += _BAR_HEIGHT + 2
      draw.text((padding, 0), "0", fill=(0, 0, 0), font=font)
      draw.text((left + width + 4, 0), "max", fill=(0, 0, 0), font=font)
      draw.text((left, top), "attention weight / map maximum", fill=(0, 0, 0), font=font)
      top += _FOOTER_LINE + 2
    for line in lines:
      draw.text((padding, top), line, fill=(0, 0, 0), font=font)
      top += _FOOTER_LINE
  except Exception:  # pylint: disable=broad-except
    pass  # text is decoration; keep the bar
