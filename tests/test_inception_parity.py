"""The FID Inception against pytorch-fid 0.3.0: pool3, the IS softmax and FID.

Weights: `random_state_dict(seed)` (the real file's keys and shapes, drawn from a NumPy
seed), never the 91 MiB file. Two sources, as every parity test here:

* ``fixture``: `tests/reference/fixtures/inception_pytorch_fid.npz`, made by
  ``python -m tests.reference.make_inception_fixture`` — pytorch-fid's pool3 and softmax of
  20 images (10 at 32×32, 10 at 64×64) read from PNG files by its own code, and its
  ``calculate_frechet_distance`` between the two sets on all 2048 features;
* ``live`` (torch, torchvision and pytorch-fid importable: the ``torch`` extra): a fresh
  seed, the weights written by ``torch.save`` and read by `FIDInception`'s own loader
  (tests/test_torch_file.py reads torch's legacy format too).

Tolerances, from the float32 arithmetic (measured: pool3 4e-7, probs 1.3e-6, FID 8e-7; print
them with ``SAGAN_PARITY_REPORT=1 pytest -s tests/test_inception_parity.py``):

* pool3 ``≤ 1e-4 · max|pool3|``: up to ~20 float32 convolutions in sequence (94 in all), each
  summing up to 3·3·448 = 4,032 products in another order than PyTorch's (and with BatchNorm
  folded into the kernels): ≲ √K·2⁻²⁴ ≈ 4e-6 relative each as a random walk, ≲ 1e-4 compounded.
* probs ``≤ 1e-5`` absolute (the issue's bound): ``|Δp| ≤ ½ max|Δlogit|`` for a softmax
  (its Jacobian's rows have ℓ1 norm 2p(1 − p) ≤ ½), and the logits move by ‖fc row‖ · |Δpool3|
  ≈ 2 · 3e-6 with these weights: ≈ 3e-6. (Logits' errors grow with the fc weights' norm: with
  rows twice as long the same features gave 4.8e-6.)
* FID ``≤ 1e-3`` relative (the issue's bound): features within 1e-4 move ‖Δμ‖² and the
  traces by ≤ 2e-4 relative; the rest is the matrix square root, scipy's Schur ``sqrtm``
  (pytorch-fid) vs our eigendecomposition of √Σ₁Σ₂√Σ₁, which agree to ~1e-8 in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from sagan_jax.eval import FIDInception, extract, metrics, stats
from sagan_jax.eval.inception import bilinear_weights
from tests.parity import LIVE_SEED, REPORT
from tests.reference.fixtures import load_fixture
from tests.reference.inception_reference import images, random_state_dict

POOL3_RTOL = 1e-4
PROBS_ATOL = 1e-5
FID_RTOL = 1e-3
LIVE_COUNT = 3  # images per set in the live check (pytorch-fid on CPU: ~0.5 s an image)
LIVE_FID_DIMS = 256  # scipy's sqrtm of a 2048² matrix takes minutes; 256² takes a moment


def _compare(ours: dict, pool3: np.ndarray, probs: np.ndarray, what: str) -> tuple:
  pool3_error = np.abs(ours["features"] - pool3).max() / np.abs(pool3).max()
  probs_error = np.abs(ours["probs"] - probs).max()
  if REPORT:
    print(f"\n{what}: pool3 max error {pool3_error:.2e} of max|pool3| "
          f"{np.abs(pool3).max():.3g}; probs max error {probs_error:.2e} "
          f"(max prob {probs.max():.3f})")
  assert pool3_error <= POOL3_RTOL, what
  assert probs_error <= PROBS_ATOL, what
  return pool3_error, probs_error


def _fid(a: np.ndarray, b: np.ndarray) -> float:
  return metrics.frechet_distance(*stats.mean_cov(stats.of(a)), *stats.mean_cov(stats.of(b)))


@pytest.fixture(scope="module")
def fixture():
  return load_fixture("inception_pytorch_fid")


@pytest.fixture(scope="module")
def inception(fixture):
  return FIDInception(state_dict=random_state_dict(int(fixture["config/seed"])))


@pytest.fixture(scope="module")
def ours(fixture, inception):
  """Our features of both sets, streamed in two batches each (6 + 4 images: the second is
  padded to the first's shape, so each image size compiles once)."""
  return {name: extract(inception, [fixture[f"{name}/images"][:6], fixture[f"{name}/images"][6:]])
          for name in "ab"}


def test_bilinear_weights_are_pytorch_interpolate():
  """The resize matrices against F.interpolate's formula (upsampling and shrinking, no
  antialiasing: each output pixel reads at most two input pixels)."""
  up = bilinear_weights(32, 299)
  np.testing.assert_allclose(up.sum(1), 1.0, rtol=1e-6)
  assert up[0, 0] == 1.0 and up[-1, -1] == 1.0  # clamped at both borders
  # Output 150 of 299 reads 32/299·150.5 − 0.5 = 15.6070... between pixels 15 and 16.
  src = np.float32(32) / np.float32(299) * np.float32(150.5) - np.float32(0.5)
  np.testing.assert_allclose(up[150, 15:17], [16 - src, src - 15], rtol=1e-6)
  down = bilinear_weights(640, 299)
  assert (np.count_nonzero(down, axis=1) <= 2).all()  # no antialiasing filter


def test_fixture_pool3_and_probs(fixture, ours):
  for name in "ab":  # uint8 images: read as ToTensor reads files
    _compare({"features": ours[name].features, "probs": ours[name].probs},
             fixture[f"{name}/pool3"], fixture[f"{name}/probs"], f"fixture set {name}")


def test_fixture_fid_equals_pytorch_fid(fixture, ours):
  """Our streaming statistics and Fréchet distance of our features vs pytorch-fid's
  ``calculate_frechet_distance`` on its own features (all 2048 dimensions)."""
  value = metrics.frechet_distance(*stats.mean_cov(ours["a"].moments),
                                   *stats.mean_cov(ours["b"].moments))
  expected = float(fixture["fid"])
  if REPORT:
    print(f"\nFID ours {value:.6f} pytorch-fid {expected:.6f} "
          f"relative {abs(value - expected) / expected:.2e}")
  assert abs(value - expected) <= FID_RTOL * expected


def test_float_and_gray_inputs_read_like_uint8(fixture, inception, ours):
  """Generator output ([-1, 1] floats) and gray images take the same path as files."""
  pixels = fixture["a/images"][:6]
  as_uint8 = {"features": ours["a"].features[:6]}
  as_float = inception(pixels.astype(np.float32) / 127.5 - 1.0)
  # (x + 1) / 2 of x = u/127.5 − 1 is u/255 to within one float32 rounding (6e-8).
  np.testing.assert_allclose(as_float["features"], as_uint8["features"], rtol=0,
                             atol=1e-5 * np.abs(as_uint8["features"]).max())
  gray = pixels[..., :1]  # repeated to RGB on the device: the same values, maybe another fusion
  np.testing.assert_allclose(inception(gray)["features"],
                             inception(np.repeat(gray, 3, axis=-1))["features"], rtol=0,
                             atol=1e-5 * np.abs(as_uint8["features"]).max())
  assert inception._padded_batch == 8  # 6 images over 4 devices → 8, reused by later calls


def test_live_parity_through_the_weights_file(tmp_path):
  """A fresh seed, written by torch.save (its default zip format; tests/test_torch_file.py
  reads the legacy one too) and read by FIDInception's loader."""
  torch = pytest.importorskip("torch")
  try:
    from tests.reference import pytorch_fid_reference as reference
    reference.import_pytorch_fid()
  except ImportError as error:
    pytest.skip(f"pytorch-fid is not importable: {error}")
  state_dict = random_state_dict(LIVE_SEED)
  path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
  torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, path)
  inception = FIDInception(path)
  wrapper, full = reference.pytorch_fid_models(state_dict)
  theirs, ours = [], []
  for index, size in enumerate((32, 48)):
    pixels = images(LIVE_SEED + index, LIVE_COUNT, size)
    pool3 = reference.folder_activations(wrapper, pixels)
    out = inception(pixels)
    _compare(out, pool3, reference.probs(full, pixels),
             f"live {size}x{size}")
    theirs.append(pool3[:, :LIVE_FID_DIMS])
    ours.append(out["features"][:, :LIVE_FID_DIMS])
  _, fid_score = reference.import_pytorch_fid()
  a, b = theirs
  expected = fid_score.calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False),
                                                  b.mean(0), np.cov(b, rowvar=False))
  value = _fid(*ours)
  if REPORT:
    print(f"\nlive FID ({LIVE_FID_DIMS} dims) ours {value:.6f} pytorch-fid {expected:.6f} "
          f"relative {abs(value - expected) / expected:.2e}")
  assert abs(value - expected) <= FID_RTOL * expected
