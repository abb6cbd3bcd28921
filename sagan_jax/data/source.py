"""The random-access source interface, and its in-memory implementation.

A source is a fixed, ordered collection of images, all of one shape, that can
be read by index. Sources know nothing about shuffling, batching or hosts:
that is the `Batcher`'s job, which keeps each source small and lets a
multi-host run read only its own slice of every batch.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from sagan_jax.data.errors import DataError


@runtime_checkable
class Source(Protocol):
  """What a `Batcher` needs from a data source.

  Attributes:
    description: one human-readable line (for logs): what, how many, shape.
    image_shape: ``(height, width, channels)`` of every image.
    labels: int labels of all examples, shape ``(len(self),)``, or ``None``
      when the source has no labels.
    class_names: optional (a source may lack the attribute): the name of each
      class a label indexes, ``class_names[label]``, when labels are class
      indices ``0 … len(class_names) - 1`` (what a conditional model needs).
  """

  description: str
  image_shape: tuple[int, int, int]
  labels: np.ndarray | None

  def __len__(self) -> int:
    """Number of examples."""

  def get(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Images at ``indices``, in that order.

    Returns:
      uint8 array ``(len(indices), height, width, channels)``, already at the
      configured size and channel count.
    """


def as_indices(indices: Sequence[int] | np.ndarray, size: int) -> np.ndarray:
  """Validates ``indices`` against a source of ``size`` examples → int64 array."""
  idx = np.asarray(indices)
  if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
    raise DataError(f"indices must be a 1-D sequence of integers, got {idx.dtype} "
                    f"array of shape {idx.shape}")
  idx = idx.astype(np.int64)
  if idx.size and (idx.min() < 0 or idx.max() >= size):
    raise DataError(f"indices out of range for a source of {size} examples: "
                    f"min {idx.min()}, max {idx.max()}")
  return idx


class ArraySource:
  """A source held in memory as one uint8 array (MNIST, TFDS).

  Args:
    images: uint8 ``(n, height, width, channels)``; kept by reference and
      made read-only, so a caller cannot change the data behind a run.
    description: one line for logs.
    labels: optional labels, shape ``(n,)``.
    class_names: optional names of the classes the labels index (see `Source`).
  """

  def __init__(self, images: np.ndarray, description: str,
               labels: np.ndarray | None = None,
               class_names: Sequence[str] | None = None):
    if images.dtype != np.uint8 or images.ndim != 4:
      raise DataError(f"images must be uint8 (n, h, w, c), got {images.dtype} "
                      f"{images.shape}")
    if labels is not None and labels.shape != images.shape[:1]:
      raise DataError(f"labels shape {labels.shape} does not match "
                      f"{images.shape[0]} images")
    self._images = images
    self._images.flags.writeable = False
    self.labels = labels
    if labels is not None:
      self.labels.flags.writeable = False
    self.description = description
    self.image_shape = tuple(int(d) for d in images.shape[1:])
    self.class_names = None if class_names is None else tuple(str(c) for c in class_names)

  def __len__(self) -> int:
    return self._images.shape[0]

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.description})"

  def get(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """uint8 ``(len(indices), h, w, c)``: a copy of the images at ``indices``."""
    return self._images[as_indices(indices, len(self))]
