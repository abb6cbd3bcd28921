"""The chapter's data: MNIST digits from the packaged 5,000-image subset.

The asset ``assets/mnist_5k.npz`` holds 500 real MNIST digits per class in a
fixed order (see ``assets/README.md`` for provenance and licence), so the
chapter's 200 sevens + 200 eights are reproducible with no download.

Two sources: `mnist_digits` (config source ``'mnist78'``, the chapter's), whose
labels are the digits themselves, and `mnist_classes` (source ``'mnist'``), the
same images labelled by *class index* — position in ``digits`` — as a
class-conditional model needs (the same thing for ``digits=range(10)``).

Splits, per digit, in the asset's order:

* ``'train'``: the first ``per_digit`` examples — what the GAN trains on;
* ``'heldout'``: the remaining ``500 - per_digit`` — never seen in training,
  for evaluation (a digit classifier, real-vs-real FID). For held-out images
  of all ten classes use ``digits=range(10)``;
* ``'all'``: all 500.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Iterable

import numpy as np

from sagan_jax.data import transforms
from sagan_jax.data.errors import DataError, DataNotFoundError
from sagan_jax.data.source import ArraySource

ASSET = "mnist_5k.npz"
PER_CLASS = 500  # examples per digit in the asset
NATIVE_SIZE = 28
SPLITS = ("train", "heldout", "all")


@functools.lru_cache(maxsize=1)
def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
  """Loads the packaged asset (cached; the arrays are read-only).

  Returns:
    ``(images, labels)``: uint8 ``(5000, 28, 28)`` and uint8 ``(5000,)``,
    in the asset's order (grouped by label).

  Raises:
    DataNotFoundError: the asset is missing from the installed package.
    DataError: the asset is unreadable or has the wrong shape.
  """
  asset = resources.files("sagan_jax.data") / "assets" / ASSET
  try:
    with asset.open("rb") as f, np.load(f) as npz:
      images, labels = npz["images"], npz["labels"]
  except FileNotFoundError as e:
    raise DataNotFoundError(
        f"packaged asset {asset} is missing; rebuild it with "
        "`python scripts/make_mnist_5k.py` or reinstall sagan-jax") from e
  except (OSError, ValueError, KeyError) as e:
    raise DataError(f"packaged asset {asset} is unreadable: {e}") from e
  if (images.shape != (10 * PER_CLASS, NATIVE_SIZE, NATIVE_SIZE)
      or images.dtype != np.uint8 or labels.shape != images.shape[:1]
      or np.any(np.bincount(labels, minlength=10) != PER_CLASS)):
    raise DataError(f"packaged asset {asset} has unexpected contents: images "
                    f"{images.dtype}{images.shape}, labels {labels.shape}")
  images.flags.writeable = False
  labels.flags.writeable = False
  return images, labels


def _check_digits(digits: Iterable[int]) -> tuple[int, ...]:
  try:
    out = tuple(digits)
  except TypeError:
    raise DataError(f"digits must be an iterable of ints 0-9, got {digits!r}") from None
  if (not out or len(set(out)) != len(out)
      or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                 and 0 <= d <= 9 for d in out)):
    raise DataError(f"digits must be distinct ints 0-9 (at least one), got {digits!r}")
  return tuple(int(d) for d in out)


def mnist_digits(digits: Iterable[int], per_digit: int, image_size: int = 64,
                 split: str = "train",
                 channels: int = 1) -> ArraySource:
  """MNIST digits from the packaged subset, resized like the chapter's PNGs.

  Images are ordered by ``digits`` (as given), then by their order in the
  asset. Each 28×28 uint8 image is resized to ``image_size`` with PIL bicubic
  interpolation on its 'L' form — how the chapter produced its 64×64 files —
  once, at construction.

  Args:
    digits: which classes, e.g. ``(7, 8)`` (the chapter's: ``base_config().data``)
      or ``range(10)``.
    per_digit: how many examples per digit form the training split (1-500).
    image_size: output height and width (28 keeps the native size).
    split: ``'train'`` (first ``per_digit`` of each digit), ``'heldout'`` (the
      rest), or ``'all'``.
    channels: 1, or 3 to repeat the gray values into RGB.

  Returns:
    An `ArraySource` of uint8 ``(n, image_size, image_size, channels)`` images
    with ``labels`` (int32 digit values).

  Raises:
    DataError: invalid arguments, or a held-out split that would be empty.
  """
  digits = _check_digits(digits)
  image_size = transforms.check_image_size(image_size)
  channels = transforms.check_channels(channels)
  if split not in SPLITS:
    raise DataError(f"split must be one of {SPLITS}, got {split!r}")
  if (isinstance(per_digit, bool) or not isinstance(per_digit, (int, np.integer))
      or not 1 <= per_digit <= PER_CLASS):
    raise DataError(f"per_digit must be an int in 1..{PER_CLASS}, got {per_digit!r}")
  if split == "heldout" and per_digit == PER_CLASS:
    raise DataError(f"per_digit={PER_CLASS} leaves no held-out examples")

  images, labels = load_mnist_5k()
  chosen = []
  for d in digits:
    of_digit = np.flatnonzero(labels == d)
    chosen.append({"train": of_digit[:per_digit], "heldout": of_digit[per_digit:],
                   "all": of_digit}[split])
  index = np.concatenate(chosen)

  selected = transforms.resize_uint8(images[index][..., None], image_size)
  if channels == 3:
    selected = np.repeat(selected, 3, axis=-1)
  else:
    selected = selected.copy()  # never alias the cached, read-only asset

  n_each = {"train": per_digit, "heldout": PER_CLASS - per_digit, "all": PER_CLASS}[split]
  resized = (f"bicubic from {NATIVE_SIZE}x{NATIVE_SIZE}"
             if image_size != NATIVE_SIZE else "native size")
  description = (f"MNIST digits {digits}, split '{split}' (per_digit={per_digit}): "
                 f"{len(index)} images ({n_each} per digit), "
                 f"{image_size}x{image_size}x{channels}, {resized}")
  return ArraySource(selected, description, labels=labels[index].astype(np.int32))


def mnist_classes(digits: Iterable[int], per_digit: int, image_size: int = 64,
                  split: str = "train", channels: int = 1) -> ArraySource:
  """`mnist_digits` labelled by class index: digit ``digits[k]`` has label ``k``.

  ``class_names`` are the digits as strings, so a conditional model's class
  ``k`` draws the digit ``class_names[k]``. Arguments as `mnist_digits`.
  """
  digits = _check_digits(digits)
  source = mnist_digits(digits, per_digit, image_size, split, channels)
  index_of = np.zeros(10, np.int32)
  index_of[list(digits)] = np.arange(len(digits), dtype=np.int32)
  return ArraySource(source.get(np.arange(len(source))), source.description,
                     labels=index_of[source.labels], class_names=[str(d) for d in digits])
