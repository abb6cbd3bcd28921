"""Reference statistics of a real dataset: ``python evaluate.py stats --source ... --out FILE.npz``.

Streams a dataset through a feature extractor (the FID Inception by default)
batch by batch — a folder of 50,000 files is decoded one batch at a time —
and writes pytorch-fid-compatible statistics (`sagan_jax.eval.reference_stats`).

Sources (``--source``):

* ``tfds:NAME`` — a TensorFlow Datasets split (``--split``, default
  ``train``), e.g. ``tfds:cifar10``: the standard reference of published
  CIFAR-10 FIDs is the 50,000 training images;
* ``folder:PATH`` (or just ``PATH``) — image files under a folder.

Images are read at their own size (``image_size=None``; they must be square)
and converted to RGB — what pytorch-fid does to files before its own bilinear
resize to 299 — so the statistics equal pytorch-fid's ``--save-stats`` on the
same images up to float32 summation order. Where pytorch-fid differs: it
reads only the top level of a folder and only lower-case extensions, while
`sagan_jax.data.image_folder` reads sub-folders too; images of other sizes
than the first are resized (PIL bicubic) here, where pytorch-fid would stop.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator, Optional

import numpy as np
from PIL import Image

from sagan_jax import data
from sagan_jax.checks import require_int
from sagan_jax.eval import FeatureExtractor, extract, reference_stats
from sagan_jax.eval.errors import EvalError
from sagan_jax.eval.reference_stats import ReferenceStats
from sagan_jax.eval.extractors import make_extractor

__all__ = ["dataset_source", "dataset_statistics", "write_dataset_statistics"]

logger = logging.getLogger(__name__)


def _square_size(shape: tuple, what: str) -> int:
  height, width = shape[:2]
  if height is None or width is None or height != width:
    raise EvalError(f"{what} has images of size {height}x{width}: pass --image_size to resize "
                    "them to a square (pytorch-fid would stretch them to 299x299)")
  return int(height)


def dataset_source(spec: str, split: str = "train", image_size: Optional[int] = None,
                   tfds_data_dir: Optional[str] = None,
                   tfds_download: bool = False) -> data.Source:
  """The RGB uint8 images of ``spec`` (``tfds:NAME``, ``folder:PATH`` or a folder path).

  ``image_size=None`` keeps the images' own (square) size: TFDS's declared
  shape, or the first file's size for a folder.
  """
  kind, _, rest = spec.partition(":")
  if kind == "tfds" and rest:
    if image_size is None:
      image_size = _square_size(data.tfds_image_shape(rest, data_dir=tfds_data_dir),
                                f"tfds {rest!r}")
    return data.tfds_dataset(rest, split, image_size=image_size, channels=3, label_key=None,
                             data_dir=tfds_data_dir, download=tfds_download)
  path = rest if kind == "folder" else spec
  if not os.path.isdir(path):
    raise EvalError(f"--source {spec!r} is neither tfds:NAME nor an existing folder "
                    "(folder:PATH)")
  if image_size is None:
    # A listing (no check, no decoding): the source below checks every file.
    files = data.image_folder(path, image_size=1, channels=3, check_files=False).files
    try:
      with Image.open(files[0]) as first:
        image_size = _square_size(first.size[::-1], f"folder {path} ({files[0].name})")
    except OSError as error:
      raise data.DataError(f"cannot read image file {files[0]}: {error}") from error
  return data.image_folder(path, image_size=image_size, channels=3)


def _batches(source: data.Source, batch_size: int, as_uint8: bool) -> Iterator[np.ndarray]:
  """uint8 batches for extractors that read them (the FID Inception: exactly pytorch-fid's
  ``ToTensor``), else the [-1, 1] floats of the `FeatureExtractor` contract."""
  for start in range(0, len(source), batch_size):
    pixels = source.get(np.arange(start, min(start + batch_size, len(source))))
    yield pixels if as_uint8 else data.to_model_range(pixels)


def dataset_statistics(source: data.Source, extractor: FeatureExtractor, *,
                       batch_size: int = 50, keep_features: int = 10_000) -> ReferenceStats:
  """The feature statistics of every image of ``source``.

  Args:
    source: a `sagan_jax.data.Source`.
    extractor: a `FeatureExtractor` (e.g. `sagan_jax.eval.FIDInception`).
    batch_size: images decoded and extracted at a time.
    keep_features: store the first this many images' features too (KID and
      precision/recall against the statistics need them); 0 stores none.
  """
  batch_size = require_int(batch_size, "batch_size", 1, EvalError)
  keep_features = require_int(keep_features, "keep_features", 0, EvalError)
  if len(source) < 2:
    raise EvalError(f"reference statistics need at least 2 images, {source.description} has "
                    f"{len(source)}")
  as_uint8 = bool(getattr(extractor, "reads_uint8", False))
  features = extract(extractor, _batches(source, batch_size, as_uint8),
                     keep=max(keep_features, 1))
  reference = reference_stats.from_features(
      features, str(getattr(extractor, "name", type(extractor).__name__)), source.description,
      keep_features=keep_features > 0)
  if reference.num_images <= reference.dim:
    # As pytorch-fid, which computes such statistics and warns when the FID's matrix square
    # root meets the singular covariance (it then adds 1e-6 to the diagonals).
    logger.warning(
        "Only %d images for %d-d features: the covariance has rank at most %d, so an FID "
        "against these statistics mostly measures that deficit (pytorch-fid warns the same); "
        "use more than %d images (10,000 or more is usual).", reference.num_images,
        reference.dim, reference.num_images - 1, reference.dim)
  return reference


def write_dataset_statistics(spec: str, out: str, *, features: str = "inception",
                             inception_weights: Optional[str] = None,
                             extractor: Optional[FeatureExtractor] = None, split: str = "train",
                             image_size: Optional[int] = None, batch_size: int = 50,
                             keep_features: int = 10_000,
                             **source_options: Any) -> tuple[str, ReferenceStats]:
  """`dataset_statistics` of `dataset_source` ``(spec, split, image_size, **source_options)``
  with ``extractor`` (default: `make_extractor` ``(features, inception_weights)``, built
  once the source is found), written to ``out`` (an ``.npz``). Returns ``(path, statistics)``."""
  if not out.endswith(".npz"):
    raise EvalError(f"--out must name an .npz file, got {out!r}")
  source = dataset_source(spec, split, image_size, **source_options)
  if extractor is None:
    extractor = make_extractor(features, inception_weights)
  reference = dataset_statistics(source, extractor, batch_size=batch_size,
                                 keep_features=keep_features)
  return reference_stats.save(out, reference), reference
