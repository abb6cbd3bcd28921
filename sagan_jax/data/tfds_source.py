"""TensorFlow Datasets as an in-memory source (optional dependency).

``tensorflow_datasets`` — and the TensorFlow it needs to read data, about
1.45 GB — is imported only when `tfds_dataset` is called, so the core install
and the default (MNIST) run never need it. Install the ``tfds`` extra from the
repository's checkout (the package is not on PyPI)::

  pip install -e '.[tfds]'
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os

import numpy as np
from PIL import Image

from sagan_jax.data import transforms
from sagan_jax.data.errors import DataError
from sagan_jax.data.source import ArraySource

INSTALL_HINT = ("TFDS datasets need tensorflow-datasets and TensorFlow, which are "
                "optional: pip install -e '.[tfds]' in the sagan-jax checkout")


def import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(f"{INSTALL_HINT} (import failed: {e})") from e
  return tfds


# What a failure of TFDS is, in one line each (TFDS's own errors run to hundreds of lines:
# an unknown name lists every dataset; an unprepared one is an AssertionError).

def _missing_module(error: ModuleNotFoundError, doing: str) -> DataError:
  """One line for a module TFDS needs for ``doing`` but cannot import."""
  module = (error.name or "").split(".")[0]
  if module in ("tensorflow", "tensorflow_datasets", "importlib_resources", "array_record"):
    # every one of them is in the extra (sagan-jax is installed from its checkout)
    fix = "pip install -e '.[tfds]' in the sagan-jax checkout"
  else:
    fix = f"pip install {module}"
  return DataError(f"{doing} needs the Python module '{module}', which is not installed: {fix}")


def _unknown_name(tfds, name: str) -> DataError:
  """One line for a name TFDS does not know, with the nearest known names."""
  try:
    known = tfds.list_builders(with_community_datasets=False)
  except Exception:  # pylint: disable=broad-except  # the hint is optional; the error is not
    known = []
  near = difflib.get_close_matches(name.split("/")[0].split(":")[0], known, n=5, cutoff=0.6)
  hint = (f"; nearest names: {', '.join(near)}" if near
          else "; `tfds.list_builders()` lists them")
  return DataError(f"no tfds dataset {name!r}{hint}")


@contextlib.contextmanager
def quiet_tfds():
  """TFDS's absl warnings off (e.g. "Variant folder … has no dataset_info.json" for
  a dataset not prepared yet): what matters reaches the user as our one line."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def tfds_failure(tfds, name: str, error: BaseException,
                 data_dir: str | os.PathLike | None, download: bool,
                 file_format: str | None = None) -> DataError:
  """``error``, raised by TFDS opening ``name``, as one line saying what to do: a missing
  module (naming it and the install command), an unknown name (with the nearest names),
  a dataset not prepared (with the command that prepares it), a failed download.
  ``file_format``: the format the reader needs (``array_record`` for random access)."""
  if isinstance(error, ModuleNotFoundError):
    return _missing_module(error, f"{'downloading' if download else 'reading'} tfds '{name}'")
  if type(error).__name__ == "DatasetNotFoundError":
    return _unknown_name(tfds, name)
  first = (str(error).strip().splitlines() or [""])[0][:300]
  try:
    with quiet_tfds():
      builder = tfds.builder(name, data_dir=data_dir)
      prepared, where = builder.is_prepared(), builder.data_dir
  except Exception:  # pylint: disable=broad-except  # the original error is the one to tell
    prepared, where = True, data_dir
  build = (f"tfds build {name}" + (f" --data_dir {data_dir}" if data_dir is not None else "")
           + (f" --file_format={file_format}" if file_format else ""))
  if prepared:
    needs = (f"; reading by index needs it prepared as {file_format}: run `{build}`"
             if file_format else "")
    return DataError(f"cannot read tfds '{name}': {type(error).__name__}: {first}{needs}")
  if download:
    return DataError(f"downloading and preparing tfds '{name}' into {where} failed: "
                     f"{type(error).__name__}: {first}")
  return DataError(
      f"tfds '{name}' is not prepared in {where}: run `{build}` once (or set "
      "--config.data.tfds_download=True to let TFDS download and prepare it)")


def to_pil(image: np.ndarray, name: str, image_key: str) -> Image.Image:
  """A TFDS image feature (uint8 (h, w, c) or (h, w)) as a PIL image."""
  if image.dtype != np.uint8:
    raise DataError(f"tfds '{name}' feature '{image_key}' is {image.dtype}, expected uint8")
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
    raise DataError(f"tfds '{name}' feature '{image_key}' has shape {image.shape}; "
                    "expected (h, w) or (h, w, 1 | 3 | 4)")
  return Image.fromarray(image)


def tfds_dataset(name: str, split: str = "train", image_size: int = 64,
                 channels: int = 3, image_key: str = "image",
                 label_key: str | None = "label",
                 data_dir: str | os.PathLike | None = None,
                 download: bool = True, crop: str | None = None) -> ArraySource:
  """Loads a TFDS split into memory, converted and resized like all sources.

  For datasets whose *resized* images fit in memory (e.g. MNIST, CIFAR-10,
  CelebA at 64×64): every example is read once, converted to 'L' or 'RGB'
  and, if needed, resized to a square ``image_size`` × ``image_size`` with
  PIL bicubic interpolation (aspect ratio not preserved), then held as one
  uint8 array. Images of varying sizes are fine.

  Args:
    name: TFDS name, e.g. ``'mnist'``, ``'cifar10'``, ``'celeb_a'``.
    split: TFDS split string, e.g. ``'train'`` or ``'train[:90%]'``.
    image_size: output height and width.
    channels: 1 (grayscale) or 3 (RGB); gray data is replicated to RGB.
    image_key: the feature holding the image.
    label_key: the feature holding an integer label, kept as ``labels`` if
      present; ``None`` to ignore labels.
    data_dir: TFDS data folder (TFDS's default if ``None``).
    download: let TFDS download and prepare the dataset if it is not in
      ``data_dir`` yet.
    crop: None, or ``'center_long_edge'``: each image's centred square of its long
      edge, taken before the resize (aspect ratio kept).

  Returns:
    An `ArraySource` of uint8 ``(n, image_size, image_size, channels)``.

  Raises:
    DataError: tensorflow-datasets or TensorFlow is not installed (the message
      says how to install them), the image feature is missing or not uint8,
      or the split is empty.
  """
  image_size = transforms.check_image_size(image_size)
  channels = transforms.check_channels(channels)
  crop = transforms.check_crop(crop)
  if crop == "random_long_edge":
    raise DataError("crop='random_long_edge' needs a source that decodes per batch "
                    f"({' or '.join(transforms.RANDOM_CROP_SOURCES)}); this one decodes "
                    "once, into memory: use crop='center_long_edge' or source 'tfds_stream'")
  tfds = import_tfds()
  images, labels = [], []
  try:
    with quiet_tfds():
      dataset, info = tfds.load(name, split=split, data_dir=data_dir, download=download,
                                with_info=True)
    for example in tfds.as_numpy(dataset):
      if image_key not in example:
        raise DataError(f"tfds '{name}' has no feature '{image_key}'; features: "
                        f"{sorted(example)} (set image_key)")
      pil = to_pil(np.asarray(example[image_key]), name, image_key)
      images.append(transforms.pil_to_array(pil, image_size, channels, crop))
      if label_key is not None and label_key in example:
        labels.append(int(example[label_key]))
  except DataError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # TFDS raises many types: told in one line
    raise tfds_failure(tfds, name, e, data_dir, download) from e
  if not images:
    raise DataError(f"tfds '{name}' split '{split}' is empty")
  description = (f"tfds {name} split '{split}': {len(images)} images in memory, "
                 f"{image_size}x{image_size}x{channels} "
                 f"({transforms.CROP_WORDS[crop]}bicubic, square)")
  has_labels = len(labels) == len(images)
  names = getattr(info.features[label_key], "names", None) if has_labels else None
  return ArraySource(
      np.stack(images), description,
      labels=np.asarray(labels, np.int32) if has_labels else None,
      class_names=names or None)


def tfds_image_shape(name: str, image_key: str = "image",
                     data_dir: str | os.PathLike | None = None) -> tuple:
  """The shape TFDS declares for ``name``'s image feature, e.g. ``(32, 32, 3)`` for
  CIFAR-10 (``None`` where images vary), read from the dataset's metadata — no
  download, no data read.

  Raises:
    DataError: tensorflow-datasets is not installed, or no such dataset or feature.
  """
  tfds = import_tfds()
  try:
    with quiet_tfds():
      features = tfds.builder(name, data_dir=data_dir).info.features
  except Exception as e:  # pylint: disable=broad-except  # TFDS raises its own types
    raise tfds_failure(tfds, name, e, data_dir, download=False) from e
  if image_key not in features:
    raise DataError(f"tfds '{name}' has no feature '{image_key}'; features: {sorted(features)}")
  return tuple(features[image_key].shape)
