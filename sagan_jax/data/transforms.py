"""Per-image conversions shared by the sources, and the [-1, 1] scaling.

Kept in one place so every source resizes and converts images the same way
the chapter did: PIL bicubic on the uint8 image, then
``(x / 255 - 0.5) / 0.5`` in float32 (torchvision ``ToTensor`` followed by
``Normalize(0.5, 0.5)``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from sagan_jax.checks import require_int
from sagan_jax.data.errors import DataError

# PIL modes for the supported channel counts.
MODES = {1: "L", 3: "RGB"}


def check_image_size(image_size: int) -> int:
  """Returns ``image_size`` as an int, or raises `DataError` if not positive."""
  return require_int(image_size, "image_size", 1, DataError)


def check_channels(channels: int) -> int:
  """Returns ``channels`` as an int, or raises `DataError` unless it is 1 or 3."""
  if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) \
      or channels not in MODES:
    raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
  return int(channels)


def pil_to_array(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
  """Converts a PIL image to uint8 ``(image_size, image_size, channels)``.

  The image is converted to 'L' or 'RGB' first (an alpha channel is dropped,
  a palette expanded), then resized with bicubic interpolation to a square
  ``image_size`` × ``image_size`` if it is not that size already. The resize
  does not preserve the aspect ratio: crop beforehand if that matters.

  Args:
    image: any PIL image.
    image_size: output height and width.
    channels: 1 for grayscale, 3 for RGB.

  Returns:
    A new uint8 array of shape ``(image_size, image_size, channels)``.
  """
  image = image.convert(MODES[channels])
  if image.size != (image_size, image_size):
    image = image.resize((image_size, image_size), Image.BICUBIC)
  array = np.asarray(image, dtype=np.uint8)
  return array.reshape(image_size, image_size, channels)


def resize_uint8(images: np.ndarray, image_size: int) -> np.ndarray:
  """Bicubic-resizes uint8 images ``(n, h, w, c)`` (c = 1 or 3) to a square size.

  Each image goes through PIL on its uint8 'L' / 'RGB' form, as the chapter
  did when it saved its 64×64 PNGs, so the result is uint8 with PIL's
  rounding and clipping. Returns the input unchanged if it is already
  ``image_size`` × ``image_size``.
  """
  n, h, w, c = images.shape
  if (h, w) == (image_size, image_size):
    return images
  out = np.empty((n, image_size, image_size, c), np.uint8)
  for i in range(n):
    pixels = images[i, :, :, 0] if c == 1 else images[i]
    out[i] = pil_to_array(Image.fromarray(pixels), image_size, c)
  return out


def to_model_range(images: np.ndarray) -> np.ndarray:
  """uint8 ``[0, 255]`` → float32 ``[-1, 1]`` as ``(x / 255 - 0.5) / 0.5``.

  The operations and their order follow torchvision's ``ToTensor`` +
  ``Normalize(0.5, 0.5)`` in float32, so batches equal the chapter's bit for
  bit.
  """
  x = images.astype(np.float32) / np.float32(255)
  return (x - np.float32(0.5)) / np.float32(0.5)
