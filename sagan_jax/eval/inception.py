"""`FIDInception`: the standard FID / IS feature network as a `FeatureExtractor`.

Computes what pytorch-fid 0.3.0 computes, step for step, so FID and IS values
equal pytorch-fid's (README "Evaluation": how those relate to TF's):

1. images → [0, 1]: float images in [-1, 1] as ``(x + 1) / 2``; uint8 images
   as ``x / 255`` (torchvision's ``ToTensor``, what pytorch-fid does to image
   files); gray images repeated to RGB;
2. bilinear resize to 299×299 with ``align_corners=False`` and **no
   antialiasing** (``F.interpolate(..., mode='bilinear')``; `resize_bilinear`
   builds PyTorch's interpolation weights — ``jax.image.resize`` antialiases
   when it shrinks unless told not to);
3. ``2x − 1``, then the network (`sagan_jax.eval.inception_net`) with
   pytorch-fid's weights (`sagan_jax.eval.inception_weights`);
4. ``features``: the 2048-d pool3 activations (FID, KID, precision/recall);
   ``probs``: the softmax of the 1008 logits (Inception Score).

Every batch is split over the devices along its first axis (``NamedSharding``
on a one-axis mesh, `sagan_jax.sharding`), the weights replicated; a batch
that does not divide is padded (padding never reaches the outputs), and a
batch smaller than an earlier one is padded to that one's size, so a stream of
batches compiles once. Matrix products run at float32 precision (``highest``)
on every backend: TF32 or bf16 passes would move FID in its decimals.

Typical use (see `sagan_jax.eval.features.extract` and `Evaluator`)::

  inception = FIDInception("pt_inception-2015-12-05-6726825d.pth")
  out = inception(images)   # (B, H, W, 1 or 3) in [-1, 1], or uint8
  out["features"].shape, out["probs"].shape   # (B, 2048), (B, 1008)
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sagan_jax import sharding
from sagan_jax.eval.errors import EvalError
from sagan_jax.eval.inception_net import FIDInceptionV3
from sagan_jax.eval.inception_weights import from_state_dict, load_weights
from sagan_jax.ops.compiler_options import compiler_options

__all__ = ["FIDInception", "INPUT_SIZE", "bilinear_weights", "resize_bilinear"]

INPUT_SIZE = 299
# Float images may overshoot [-1, 1] by this much (round-off in a caller's scaling) before
# they are called out of range: anything larger is a wrong scale such as [0, 255].
RANGE_SLACK = 1e-3


def bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
  """The (out_size, in_size) float32 matrix of PyTorch's bilinear resize along one axis.

  ``F.interpolate(mode='bilinear', align_corners=False)`` reads output pixel
  ``i`` at ``src = (i + 0.5) · in/out − 0.5``, clamped below at 0, from pixels
  ``⌊src⌋`` and ``min(⌊src⌋ + 1, in − 1)`` with weights ``1 − λ`` and ``λ``,
  ``λ = src − ⌊src⌋`` — no antialiasing when shrinking. Computed in float32
  as PyTorch does.
  """
  scale = np.float32(in_size) / np.float32(out_size)
  src = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
  src = np.maximum(src, np.float32(0))
  lower = np.minimum(src.astype(np.int64), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  lam = np.clip(src - lower.astype(np.float32), np.float32(0), np.float32(1))
  weights = np.zeros((out_size, in_size), np.float32)
  rows = np.arange(out_size)
  np.add.at(weights, (rows, lower), np.float32(1) - lam)
  np.add.at(weights, (rows, upper), lam)
  return weights


def resize_bilinear(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """(B, H, W, C) → (B, size, size, C) exactly as ``F.interpolate(mode='bilinear',
  align_corners=False)`` (up to float32 summation order), as two float32 matrix products."""
  _, h, w, _ = images.shape
  highest = jax.lax.Precision.HIGHEST
  rows = jnp.einsum("oh,bhwc->bowc", bilinear_weights(h, size), images, precision=highest)
  return jnp.einsum("pw,bowc->bopc", bilinear_weights(w, size), rows, precision=highest)


# On one CPU device a batch runs through the network this many images at a time (a
# `lax.map` inside the one jitted call). Each group's activations (~0.3 GB at 299 px) are
# reused across the loop instead of fresh buffers for the whole batch (~1.5 GB). With XLA's
# default YNNPACK convolutions that was also faster (batch 50 of 32-px images: 3.52 s
# instead of 4.08 s a batch); with the Eigen convolutions `compiler_options` picks it is
# within noise (groups of 10: 2.85 s, of 5: 2.78 s, whole batch: 2.89 s; benchmarks/README.md).
# The features may differ from one whole-batch call by rounding (a convolution library may
# block by batch size), as between device counts.
CPU_GROUP_SIZE = 10


def group_count(batch: int, devices: Sequence[jax.Device]) -> int:
  """How many groups `_forward` splits a (padded) batch into: on a single CPU device the
  fewest of at most `CPU_GROUP_SIZE` images that divide it; elsewhere 1 (a GPU wants the
  whole batch, and several devices split it already)."""
  if len(devices) != 1 or devices[0].platform != "cpu":
    return 1
  size = max(d for d in range(1, min(batch, CPU_GROUP_SIZE) + 1) if batch % d == 0)
  return batch // size


@functools.cache
def _compiled_forward(platform: str):
  """`_forward` jitted with the compiler options for ``platform`` (`compiler_options`)."""
  return jax.jit(_forward, static_argnames=("implementation", "groups"),
                 compiler_options=compiler_options(platform))


def _forward(params: Any, images: jax.Array, implementation: str,
             groups: int = 1) -> dict[str, jax.Array]:
  if groups == 1:
    return _network(params, images, implementation)
  parts = images.reshape(groups, images.shape[0] // groups, *images.shape[1:])
  out = jax.lax.map(lambda part: _network(params, part, implementation), parts)
  return jax.tree.map(lambda t: t.reshape(images.shape[0], *t.shape[2:]), out)


def _network(params: Any, images: jax.Array, implementation: str) -> dict[str, jax.Array]:
  if images.dtype == jnp.uint8:
    x = images.astype(jnp.float32) / 255.0  # ToTensor
  else:
    x = (images + 1.0) / 2.0  # [-1, 1] → pytorch-fid's [0, 1]
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  x = 2.0 * resize_bilinear(x) - 1.0
  with jax.default_matmul_precision("highest"):
    pool3, logits = FIDInceptionV3(implementation).apply({"params": params}, x)
  return {"features": pool3, "probs": jax.nn.softmax(logits)}


class FIDInception:
  """The FID Inception network as a `sagan_jax.eval.features.FeatureExtractor`.

  Args:
    weights_path: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
      (default: where pytorch-fid's own download puts it,
      `sagan_jax.eval.inception_weights.default_weights_path`). Never
      downloaded here.
    state_dict: instead of a file, the same weights as a mapping of
      pytorch-fid's keys to arrays (e.g. already loaded with torch).
    devices: the devices a batch is split over (default: this process's).
    implementation: the convolutions' op, ``'xla'`` (default: the faster one
      for this inference-only network on CPU, see ``benchmarks/inception.py``),
      ``'gemm'`` or ``'auto'`` (`sagan_jax.ops.convolution`).

  Attributes:
    name: ``'fid_inception'``, recorded in results and reference statistics.
    score_name: ``'inception_score'``: what the IS formula on ``probs`` is called.
    reads_uint8: True: uint8 images (0..255) are read as pytorch-fid reads
      files, beside the [-1, 1] floats of the extractor contract.

  Raises:
    EvalAssetNotFoundError: the weights file does not exist.
    EvalError: the weights are not the FID Inception's ``state_dict`` (the
      message names the first unexpected, missing or mis-shaped key).
  """

  name = "fid_inception"
  score_name = "inception_score"
  reads_uint8 = True

  def __init__(self, weights_path: Optional[str | os.PathLike] = None, *,
               state_dict: Optional[Mapping[str, Any]] = None,
               devices: Optional[Sequence[jax.Device]] = None, implementation: str = "xla"):
    if state_dict is not None and weights_path is not None:
      raise EvalError("give the weights as a file or as a state_dict, not both")
    params = (load_weights(weights_path) if state_dict is None
              else from_state_dict(state_dict))
    self.implementation = implementation
    self.mesh = sharding.make_mesh(jax.local_devices() if devices is None else devices)
    self._batch_sharding = sharding.batch_sharded(self.mesh)
    self.params = jax.device_put(params, sharding.replicated(self.mesh))
    self._padded_batch = 0  # the largest (padded) batch run so far: smaller ones reuse it

  def groups(self, batch: int) -> int:
    """`group_count` of a (padded) ``batch`` on this extractor's devices."""
    return group_count(batch, list(self.mesh.devices.flat))

  def _check(self, images: Any) -> np.ndarray | jax.Array:
    if not isinstance(images, jax.Array):
      images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or min(images.shape) < 1:
      raise EvalError(f"FID Inception reads images (B, H, W, 1 or 3), got shape "
                      f"{tuple(images.shape)}")
    if images.dtype == np.uint8:
      return images
    if not jnp.issubdtype(images.dtype, jnp.floating):
      raise EvalError(f"FID Inception reads float images in [-1, 1] or uint8 images, got "
                      f"{images.dtype}")
    low, high = (float(v) for v in (images.min(), images.max()))  # NaN fails both tests
    if not (low >= -1 - RANGE_SLACK and high <= 1 + RANGE_SLACK):
      raise EvalError(f"FID Inception reads float images in [-1, 1], got values in "
                      f"[{low:.4g}, {high:.4g}] (uint8 images are read as 0..255)")
    return images.astype(np.float32) if images.dtype != np.float32 else images

  def __call__(self, images: Any) -> dict[str, np.ndarray]:
    """``{'features': (B, 2048), 'probs': (B, 1008)}`` float32 NumPy arrays.

    Args:
      images: (B, H, W, 1 or 3), float in [-1, 1] (what a generator makes)
        or uint8 in [0, 255] (image files); any H and W.

    Raises:
      EvalError: wrong rank, channels or dtype, or float values outside
        [-1, 1] (such as [0, 255] data passed as floats; [0, 1] data cannot
        be told from dark images and is the caller's to scale).
    """
    images = self._check(images)
    batch = images.shape[0]
    self._padded_batch = max(self._padded_batch, sharding.padded_size(batch, self.mesh))
    if self._padded_batch > batch:
      pad = [(0, self._padded_batch - batch)] + [(0, 0)] * 3
      images = jnp.pad(images, pad) if isinstance(images, jax.Array) else np.pad(images, pad)
    forward = _compiled_forward(self.mesh.devices.flat[0].platform)
    out = forward(self.params, jax.device_put(images, self._batch_sharding),
                   self.implementation, self.groups(self._padded_batch))
    return {"features": np.asarray(out["features"])[:batch],
            "probs": np.asarray(out["probs"])[:batch]}
