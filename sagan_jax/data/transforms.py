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
# Square crops taken before the resize (``config.data.crop``): None keeps the whole image.
CROPS = (None, "center_long_edge", "random_long_edge")
# Sources that decode per batch, the only ones a random crop can reach (the in-memory
# sources decode once, up front).
RANDOM_CROP_SOURCES = ("image_folder", "tfds_stream")
# How each crop reads in a source's description.
CROP_WORDS = {None: "", "center_long_edge": "center crop of the long edge, ",
              "random_long_edge": "random crop of the long edge, "}


def check_image_size(image_size: int) -> int:
  """Returns ``image_size`` as an int, or raises `DataError` if not positive."""
  return require_int(image_size, "image_size", 1, DataError)


def check_channels(channels: int) -> int:
  """Returns ``channels`` as an int, or raises `DataError` unless it is 1 or 3."""
  if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) \
      or channels not in MODES:
    raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
  return int(channels)


def check_crop(crop: str | None) -> str | None:
  """Returns ``crop`` if it is one of `CROPS`, or raises `DataError` naming them."""
  if crop not in CROPS:
    raise DataError(f"crop must be one of {list(CROPS)}, got {crop!r}")
  return crop


def center_crop_long_edge(image: Image.Image) -> Image.Image:
  """The largest centred square of ``image``: its long edge cut to the short one.

  As torchvision's ``center_crop(img, min(img.size))`` (StudioGAN's and BigGAN-PyTorch's
  ``CenterCropLongEdge``): the offset along the long edge is
  ``int(round((long - short) / 2))`` with Python 3's round-half-to-even.
  """
  width, height = image.size
  side = min(width, height)
  if width == height:
    return image
  left = int(round((width - side) / 2.0))
  top = int(round((height - side) / 2.0))
  return image.crop((left, top, left + side, top + side))


def crop_long_edge(image: Image.Image, draw: float) -> Image.Image:
  """A square of ``image``'s short side at a position along its long edge set by ``draw``
  in [0, 1): offset ``floor(draw * (long - short))``.

  With ``draw`` uniform this is StudioGAN's (BigGAN-PyTorch's) ``RandomCropLongEdge``,
  whose ``np.random.randint(0, long - short)`` excludes its upper bound: offsets
  ``0 … long - short - 1``, each equally likely; the last one is never taken (a quirk kept).
  """
  width, height = image.size
  side = min(width, height)
  if width == height:
    return image
  offset = int(draw * (max(width, height) - side))
  left, top = (offset, 0) if width > height else (0, offset)
  return image.crop((left, top, left + side, top + side))


def pil_to_array(image: Image.Image, image_size: int, channels: int,
                 crop: str | None = None, draw: float | None = None) -> np.ndarray:
  """Converts a PIL image to uint8 ``(image_size, image_size, channels)``.

  The image is converted to 'L' or 'RGB' first (an alpha channel is dropped,
  a palette expanded), cropped to a square if ``crop`` asks, then resized with
  bicubic interpolation to a square ``image_size`` × ``image_size`` if it is not
  that size already. Without a crop the resize does not preserve the aspect ratio.

  Args:
    image: any PIL image.
    image_size: output height and width.
    channels: 1 for grayscale, 3 for RGB.
    crop: None, ``'center_long_edge'`` (`center_crop_long_edge`) or
      ``'random_long_edge'`` (`crop_long_edge` at ``draw``; without a draw, the centre).
    draw: the image's crop draw in [0, 1) (`sagan_jax.data.augment.crop_draws`).

  Returns:
    A new uint8 array of shape ``(image_size, image_size, channels)``.
  """
  image = image.convert(MODES[channels])
  if crop == "random_long_edge" and draw is not None:
    image = crop_long_edge(image, draw)
  elif crop is not None:
    image = center_crop_long_edge(image)
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
