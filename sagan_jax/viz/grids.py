"""Sample grids and atomic PNG writes (numpy + PIL only).

Images are NHWC float in [-1, 1] (numpy or jax arrays, converted with
``np.asarray``); a grid or a PNG is uint8, with the pixel values torchvision's
``save_image`` gives, so PNGs stay byte-comparable with the PyTorch chapter.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any, Optional

import numpy as np
from PIL import Image

from sagan_jax.atomic_file import atomic_write

__all__ = ["as_nhwc", "image_grid", "save_png", "to_uint8"]


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


def as_nhwc(images: Any, what: str = "images") -> np.ndarray:
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
  x = as_nhwc(images)
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
