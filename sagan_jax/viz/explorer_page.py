"""The attention explorer: one self-contained HTML page of samples and their attention maps.

Hover over (or click) a pixel of a generated image and the page shows, for every
attention layer of the generator, where that layer looks from the feature-map
position under the pointer: the map ``attention_map[b, j]`` of query ``j`` as a
heatmap over the image, with a colour bar and the query's feature-grid
coordinates. Everything is inline (images as PNG data, the script in the page),
so the file opens anywhere without a network.

Maps are stored as one greyscale PNG per sample and layer: a mosaic whose tile
``(y, x)`` is the row of query ``(y, x)`` reshaped to the source grid, each row
scaled to its own maximum and rounded to 8 bits (the figure shows every map
relative to its maximum, as `sagan_jax.viz.attention_figure` does), so a
1024×1024 map costs a few hundred KB instead of 4 MB of float32.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from typing import Any, Sequence

import numpy as np
from PIL import Image

from sagan_jax.viz.colormap import VIRIDIS_ANCHORS
from sagan_jax.viz.grids import to_uint8

__all__ = ["explorer_html", "map_mosaic", "quantized_rows"]


def _png_data_uri(array: np.ndarray) -> str:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG", optimize=True)
  return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _side(n: int, what: str) -> int:
  side = math.isqrt(n)
  if side * side != n:
    raise ValueError(f"{what}: {n} positions is not a square feature map")
  return side


def quantized_rows(attention_map: Any) -> np.ndarray:
  """(N, M) map → uint8 rows, each scaled to its own maximum: ``round(255·row/max(row))``."""
  rows = np.asarray(attention_map, np.float64)
  rows = np.clip(np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
  peak = rows.max(axis=-1, keepdims=True)
  scaled = np.divide(rows, peak, out=np.zeros_like(rows), where=peak > 0)
  return np.floor(scaled * 255.0 + 0.5).astype(np.uint8)


def map_mosaic(attention_map: Any) -> np.ndarray:
  """(N, M) map of one sample → (h·h', w·w') uint8 mosaic: tile (y, x) is query (y, x)'s row."""
  rows = quantized_rows(attention_map)
  n, m = rows.shape
  h, s = _side(n, "queries"), _side(m, "sources")
  return rows.reshape(h, h, s, s).transpose(0, 2, 1, 3).reshape(h * s, h * s)


def explorer_html(images: Any, attention_maps: Sequence[Any], *, title: str,
                  layer_names: Sequence[str], caption: str = "") -> str:
  """The page for ``images`` (B, H, W, C) in [-1, 1] and per layer maps (B, N, M)."""
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be (B, H, W, 1 or 3), got {images.shape}")
  if len(attention_maps) != len(layer_names) or not attention_maps:
    raise ValueError("one name per attention layer, and at least one layer")
  pixels = to_uint8(images)
  if pixels.shape[-1] == 1:
    pixels = pixels[..., 0]
  layers = []
  for name, maps in zip(layer_names, attention_maps):
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[0] != images.shape[0]:
      raise ValueError(f"{name}: maps must be (B, N, M) with B = {images.shape[0]}, got "
                       f"{maps.shape}")
    layers.append({"name": name, "grid": _side(maps.shape[1], name),
                   "source": _side(maps.shape[2], name),
                   "mosaics": [_png_data_uri(map_mosaic(m)) for m in maps]})
  data = {"images": [_png_data_uri(p) for p in pixels], "height": images.shape[1],
          "width": images.shape[2], "layers": layers,
          "viridis": np.round(VIRIDIS_ANCHORS * 255).astype(int).tolist()}
  return (_PAGE.replace("__TITLE__", html.escape(title))
          .replace("__CAPTION__", html.escape(caption))
          .replace("__DATA__", json.dumps(data).replace("</", "<\\/")))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font: 14px sans-serif; margin: 16px; color: #222; }
#samples img { width: 64px; height: 64px; image-rendering: pixelated; margin: 2px;
  border: 2px solid transparent; cursor: pointer; }
#samples img.selected { border-color: #e33; }
#views { display: flex; flex-wrap: wrap; gap: 18px; margin-top: 12px; }
.view { display: flex; flex-direction: column; align-items: flex-start; }
.view canvas { image-rendering: pixelated; }
.stack { position: relative; width: 320px; height: 320px; cursor: crosshair; }
.stack canvas { position: absolute; left: 0; top: 0; width: 320px; height: 320px; }
.bar { display: flex; align-items: center; gap: 6px; margin-top: 4px; font-size: 12px; }
.bar canvas { width: 200px; height: 12px; }
.caption { font-size: 12px; max-width: 320px; min-height: 3em; }
#status { margin-top: 8px; }
</style></head><body>
<h2>__TITLE__</h2>
<p>__CAPTION__</p>
<p>Pick a sample, then move over (or click, to pin) a pixel of the first panel: each
attention layer's panel shows where that layer looks from the feature-map position under
the pointer (the marked cell), as a heatmap over the image, scaled to the map's maximum.</p>
<div id="samples"></div>
<div id="views"></div>
<div id="status"></div>
<script id="explorer-data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
const SIZE = 320;
const state = { sample: 0, pinned: null, query: null, ready: false, maps: {} };
window.explorer = state;

function viridis(t) {
  const a = DATA.viridis, pos = Math.min(Math.max(t, 0), 1) * (a.length - 1);
  const lo = Math.min(Math.floor(pos), a.length - 2), f = pos - lo;
  return [0, 1, 2].map(c => Math.round(a[lo][c] * (1 - f) + a[lo + 1][c] * f));
}

function loadImage(uri) {
  return new Promise(resolve => { const im = new Image(); im.onload = () => resolve(im); im.src = uri; });
}

function pixelsOf(im) {
  const c = document.createElement("canvas");
  c.width = im.width; c.height = im.height;
  const g = c.getContext("2d");
  g.drawImage(im, 0, 0);
  return g.getImageData(0, 0, im.width, im.height).data;
}

async function loadSample(b) {
  state.ready = false;
  state.image = await loadImage(DATA.images[b]);
  state.gray = pixelsOf(state.image);
  for (const [i, layer] of DATA.layers.entries()) {
    state.maps[i] = pixelsOf(await loadImage(layer.mosaics[b]));
  }
  state.sample = b;
  state.ready = true;
  render();
}

// The query's row of layer i: `source × source` values 0..255 (the mosaic's tile y, x).
function row(i, y, x) {
  const layer = DATA.layers[i], s = layer.source, width = layer.grid * s;
  const out = new Array(s * s);
  for (let sy = 0; sy < s; sy++) for (let sx = 0; sx < s; sx++) {
    out[sy * s + sx] = state.maps[i][4 * ((y * s + sy) * width + x * s + sx)];
  }
  return out;
}

function drawBase(ctx) {
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(state.image, 0, 0, SIZE, SIZE);
}

function render() {
  if (!state.ready) return;
  for (const [i, layer] of DATA.layers.entries()) {
    const view = document.getElementById("layer" + i);
    const base = view.querySelector(".base"), over = view.querySelector(".overlay");
    drawBase(base.getContext("2d"));
    const g = over.getContext("2d");
    g.clearRect(0, 0, SIZE, SIZE);
    const cap = view.querySelector(".caption");
    if (!state.query) { cap.textContent = layer.name + " (" + layer.grid + "×" + layer.grid +
      " feature grid): point at the image"; continue; }
    const [py, px] = state.query;
    const y = Math.floor(py * layer.grid / DATA.height), x = Math.floor(px * layer.grid / DATA.width);
    const values = row(i, y, x), s = layer.source, cell = SIZE / s;
    for (let sy = 0; sy < s; sy++) for (let sx = 0; sx < s; sx++) {
      const [r, gg, bb] = viridis(values[sy * s + sx] / 255);
      g.fillStyle = "rgba(" + r + "," + gg + "," + bb + ",0.6)";
      g.fillRect(sx * cell, sy * cell, Math.ceil(cell), Math.ceil(cell));
    }
    const q = SIZE / layer.grid;
    g.strokeStyle = "#ff2828"; g.lineWidth = 2;
    g.strokeRect(x * q - 1, y * q - 1, q + 2, q + 2);
    cap.textContent = layer.name + " (" + layer.grid + "×" + layer.grid + " feature grid, " +
      s + "×" + s + " sources): query (y, x) = (" + y + ", " + x + ") from pixel (" + py +
      ", " + px + ")" + (state.pinned ? ", pinned (click again to unpin)" : "");
    view.dataset.query = y + "," + x;
    view.dataset.row = values.join(",");
  }
  document.getElementById("status").textContent = state.query ?
    "sample " + state.sample + ", pixel (" + state.query[0] + ", " + state.query[1] + ")" : "";
}

function pointerPixel(event, element) {
  const r = element.getBoundingClientRect();
  const px = Math.min(DATA.width - 1, Math.max(0, Math.floor((event.clientX - r.left) * DATA.width / r.width)));
  const py = Math.min(DATA.height - 1, Math.max(0, Math.floor((event.clientY - r.top) * DATA.height / r.height)));
  return [py, px];
}

function build() {
  const samples = document.getElementById("samples");
  DATA.images.forEach((uri, b) => {
    const im = document.createElement("img");
    im.src = uri; im.title = "sample " + b; im.dataset.sample = b;
    im.onclick = () => { document.querySelectorAll("#samples img").forEach(e => e.classList.remove("selected"));
                         im.classList.add("selected"); loadSample(b); };
    if (b === 0) im.classList.add("selected");
    samples.appendChild(im);
  });
  const views = document.getElementById("views");
  DATA.layers.forEach((layer, i) => {
    const view = document.createElement("div");
    view.className = "view"; view.id = "layer" + i;
    view.innerHTML = '<b>' + layer.name + '</b><div class="stack">' +
      '<canvas class="base" width="' + SIZE + '" height="' + SIZE + '"></canvas>' +
      '<canvas class="overlay" width="' + SIZE + '" height="' + SIZE + '"></canvas></div>' +
      '<div class="bar">0<canvas width="200" height="12"></canvas>max of the map</div>' +
      '<div class="caption"></div>';
    views.appendChild(view);
    const bar = view.querySelector(".bar canvas").getContext("2d");
    for (let k = 0; k < 200; k++) { const [r, g, b] = viridis(k / 199);
      bar.fillStyle = "rgb(" + r + "," + g + "," + b + ")"; bar.fillRect(k, 0, 1, 12); }
    const stack = view.querySelector(".stack");
    stack.addEventListener("mousemove", e => { if (!state.pinned) { state.query = pointerPixel(e, stack); render(); } });
    stack.addEventListener("click", e => {
      const p = pointerPixel(e, stack);
      state.pinned = state.pinned && state.pinned[0] === p[0] && state.pinned[1] === p[1] ? null : p;
      state.query = p; render(); });
  });
  loadSample(0);
}
build();
</script></body></html>
"""
