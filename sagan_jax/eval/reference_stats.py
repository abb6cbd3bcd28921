"""Reference statistics: a real dataset's feature mean and covariance, as pytorch-fid's ``.npz``.

The standard FID compares generated samples with statistics of the *training
set* computed once (pytorch-fid's ``--save-stats``, TTUR's precomputed
``fid_stats_cifar10_train.npz``). The file format is pytorch-fid's: an
``np.savez_compressed`` archive with

* ``mu``: (d,) float64, the feature mean;
* ``sigma``: (d, d) float64, the covariance (unbiased, ``n − 1``, as
  ``np.cov``);

so a file made by pytorch-fid loads here as is, and one made here loads in
pytorch-fid (which reads only those two keys). Files made here add

* ``num_images``: () int64, how many images the statistics cover;
* ``extractor``: the feature network's name (``'fid_inception'``), checked
  against the evaluating extractor so statistics of another network are never
  compared;
* ``description``: where the images came from (one line);
* ``features``: (k, d) float32, the features of the first k images (optional),
  which KID and precision/recall need; without them only FID (and IS, which
  needs no reference) can be computed.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import NamedTuple, Optional

import numpy as np

from sagan_jax.atomic_file import atomic_write
from sagan_jax.eval import stats
from sagan_jax.eval.errors import EvalAssetNotFoundError, EvalError
from sagan_jax.eval.features import FeatureSet

__all__ = ["ReferenceStats", "from_features", "load", "save"]


class ReferenceStats(NamedTuple):
  """A real dataset summarized for FID (and, with ``features``, KID and precision/recall)."""
  mu: np.ndarray  # (d,) float64
  sigma: np.ndarray  # (d, d) float64
  num_images: Optional[int]  # None for files that do not say (pytorch-fid's)
  extractor: Optional[str]  # the feature network's name; None: not recorded (pytorch-fid's)
  description: str
  features: Optional[np.ndarray] = None  # (k, d) float32: the first k images' features

  @property
  def dim(self) -> int:
    return int(self.mu.shape[0])


def from_features(feature_set: FeatureSet, extractor: str, description: str,
                  keep_features: bool = True) -> ReferenceStats:
  """The statistics of a `FeatureSet` gathered by `sagan_jax.eval.features.extract`."""
  mu, sigma = stats.mean_cov(feature_set.moments)
  return ReferenceStats(mu, sigma, feature_set.count, extractor, description,
                        feature_set.features if keep_features else None)


def save(path: str | os.PathLike, reference: ReferenceStats) -> str:
  """Writes ``reference`` as a pytorch-fid-compatible ``.npz``, atomically. Returns the path."""
  arrays = {"mu": np.asarray(reference.mu, np.float64),
            "sigma": np.asarray(reference.sigma, np.float64),
            "description": np.asarray(reference.description)}
  if reference.num_images is not None:
    arrays["num_images"] = np.asarray(reference.num_images, np.int64)
  if reference.extractor is not None:
    arrays["extractor"] = np.asarray(reference.extractor)
  if reference.features is not None:
    arrays["features"] = np.asarray(reference.features, np.float32)
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  return atomic_write(path, buffer.getvalue())


def load(path: str | os.PathLike) -> ReferenceStats:
  """Reads statistics written by `save` or by pytorch-fid (``mu`` and ``sigma`` only).

  Raises:
    EvalAssetNotFoundError: no file at ``path``.
    EvalError: not an ``.npz`` with a (d,) ``mu`` and a finite, symmetric
      (d, d) ``sigma``.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise EvalAssetNotFoundError(
        f"reference statistics {path} not found; make them with `python evaluate.py stats "
        "--source ... --out FILE.npz` (or pytorch-fid's --save-stats)")
  if not zipfile.is_zipfile(path):
    raise EvalError(f"reference statistics {path} are not an .npz archive")
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {key: data[key] for key in data.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
    raise EvalError(f"reference statistics {path} are not a readable .npz: {error}") from error
  missing = [key for key in ("mu", "sigma") if key not in arrays]
  if missing:
    raise EvalError(f"reference statistics {path} have no {missing[0]!r} "
                    f"(keys: {sorted(arrays)})")
  mu = np.asarray(arrays["mu"], np.float64)
  sigma = np.asarray(arrays["sigma"], np.float64)
  if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
    raise EvalError(f"reference statistics {path}: mu {mu.shape} and sigma {sigma.shape} do "
                    "not fit together (expected (d,) and (d, d))")
  if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
    raise EvalError(f"reference statistics {path} hold non-finite values")
  # np.cov is symmetric to round-off; anything more is not a covariance.
  if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-9 * max(np.abs(sigma).max(), 1e-30)):
    raise EvalError(f"reference statistics {path}: sigma is not symmetric")
  features = arrays.get("features")
  if features is not None and (features.ndim != 2 or features.shape[1] != mu.size):
    raise EvalError(f"reference statistics {path}: features {features.shape} do not fit mu "
                    f"{mu.shape}")
  num_images = int(arrays["num_images"]) if "num_images" in arrays else None
  extractor = str(arrays["extractor"]) if "extractor" in arrays else None
  description = str(arrays.get("description", f"reference statistics {path}"))
  return ReferenceStats(mu, sigma, num_images, extractor, description,
                        None if features is None else features.astype(np.float32))
