"""A TFDS split read with random access from its ArrayRecord files: data that does not fit
in memory (ImageNet at 128×128 is ~63 GB as uint8).

``tfds.data_source`` (tensorflow-datasets ≥ 4.9, no TensorFlow needed) opens a prepared
split's ArrayRecord shards for reading any example by index. That is exactly what the
`Batcher` asks of a source, so the design stays the one of the in-memory sources:

* **No iterator state.** The batch of step ``k`` is a function of ``k`` (the Batcher's
  per-epoch permutation), so a resumed run reads exactly the batches it would have read,
  and a checkpoint needs no data state. (grain's ``DataLoader`` would add a second notion
  of position, its iterator state, to checkpoint beside the step; the random access it is
  built on is the same ``tfds.data_source``.)
* **Per-process shards.** Each process reads and decodes only its own slice of every
  global batch (``Batcher.local_indices``).
* **Parallel decoding.** A batch's examples are read, decoded and resized by a pool of
  ``workers`` threads (record reads, JPEG decoding and PIL's resize release the GIL), on
  the prefetch thread, so they overlap the train step.

Labels are read with the examples (`get_labeled`), so they are checked per batch; the
split's class count comes from the dataset's metadata (``class_names``).
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any, Sequence

import numpy as np

from sagan_jax.data import transforms
from sagan_jax.data.errors import DataError
from sagan_jax.data.source import as_indices
from sagan_jax.data.tfds_source import import_tfds, quiet_tfds, tfds_failure, to_pil


class TfdsStreamSource:
  """A TFDS split as a random-access source over its ArrayRecord files.

  Args:
    name, split, image_size, channels, image_key, label_key, data_dir, download:
      as `sagan_jax.data.tfds_dataset`. The split must be prepared in the ArrayRecord
      format (``tfds build NAME --file_format=array_record``; ``download=True`` lets
      TFDS prepare it).
    workers: decoding threads.
    crop: None, ``'center_long_edge'``: each image's centred square of its long
      edge, taken before the resize (aspect ratio kept), or ``'random_long_edge'``: a
      square at the position ``crop_draws`` give (the `Batcher` draws them per image).

  Raises:
    DataError: tensorflow-datasets is missing, the split cannot be opened, or the
      image feature is missing.
  """

  labels = None  # read per batch: see get_labeled

  def __init__(self, name: str, split: str, image_size: int, channels: int,
               image_key: str = "image", label_key: str | None = "label",
               data_dir: str | os.PathLike | None = None, download: bool = False,
               workers: int = 16, crop: str | None = None):
    self.image_size = transforms.check_image_size(image_size)
    self.crop = transforms.check_crop(crop)
    self.channels = transforms.check_channels(channels)
    self.name, self.image_key, self.label_key = name, image_key, label_key
    tfds = import_tfds()
    try:
      with quiet_tfds():
        self._records = tfds.data_source(name, split=split, data_dir=data_dir,
                                         download=download)
    except Exception as error:  # TFDS raises many types for an unprepared or unknown split
      raise tfds_failure(tfds, name, error, data_dir, download,
                         file_format="array_record") from error
    features = self._records.dataset_info.features
    if image_key not in features:
      raise DataError(f"tfds '{name}' has no feature '{image_key}'; features: "
                      f"{sorted(features)} (set image_key)")
    self.class_names = None
    if label_key is not None and label_key in features:
      names = getattr(features[label_key], "names", None)
      self.class_names = tuple(names) if names else None
    else:
      self.label_key = None
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                       thread_name_prefix="tfds-decode")
    self.image_shape = (self.image_size, self.image_size, self.channels)
    classes = f", {len(self.class_names)} classes" if self.class_names else ""
    self.description = (f"tfds {name} split '{split}': {len(self)} examples{classes}, read "
                        f"from ArrayRecord per batch ({workers} decoding threads), "
                        f"{self.image_size}x{self.image_size}x{self.channels} "
                        f"({transforms.CROP_WORDS[self.crop]}bicubic, square)")

  def __len__(self) -> int:
    return len(self._records)

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.description})"

  def _example(self, index: int, crop_draw: float | None = None) -> tuple[np.ndarray, int]:
    example = self._records[index]
    image = to_pil(np.asarray(example[self.image_key]), self.name, self.image_key)
    label = -1 if self.label_key is None else int(example[self.label_key])
    return (transforms.pil_to_array(image, self.image_size, self.channels, self.crop, crop_draw),
            label)

  def get_labeled(self, indices: Sequence[int] | np.ndarray,
                  crop_draws: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """``(uint8 images (n, h, w, c), int32 labels (n,) or None)`` at ``indices``
    (``crop_draws``: one random crop draw per index, for ``crop='random_long_edge'``)."""
    idx = as_indices(indices, len(self))
    draws = [None] * len(idx) if crop_draws is None else [float(d) for d in crop_draws]
    examples = list(self._pool.map(self._example, (int(i) for i in idx), draws))
    images = np.empty((len(idx),) + self.image_shape, np.uint8)
    for i, (image, _) in enumerate(examples):
      images[i] = image
    if self.label_key is None:
      return images, None
    return images, np.asarray([label for _, label in examples], np.int32)

  def get(self, indices: Sequence[int] | np.ndarray,
          crop_draws: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``(len(indices), h, w, c)``: the images at ``indices``."""
    return self.get_labeled(indices, crop_draws)[0]


def tfds_stream(name: str, split: str = "train", image_size: int = 64, channels: int = 3,
                image_key: str = "image", label_key: str | None = "label",
                data_dir: str | os.PathLike | None = None,
                download: bool = False, crop: str | None = None) -> TfdsStreamSource:
  """A TFDS split read per batch from ArrayRecord; see `TfdsStreamSource`."""
  return TfdsStreamSource(name, split, image_size, channels, image_key, label_key, data_dir,
                          download, crop=crop)
