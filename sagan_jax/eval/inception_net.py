"""The FID Inception network in Flax: pytorch-fid's ``InceptionV3`` up to pool3, and its logits.

The network of TF's 2015-12-05 Inception graph as pytorch-fid 0.3.0 builds it
(``fid_inception_v3``: torchvision's ``Inception3`` with 1008 classes and four
patched block types), for inference only. Module and branch names are
PyTorch's (``Mixed_6b/branch7x7dbl_3``), so every weight has one obvious
``state_dict`` key (`sagan_jax.eval.inception_weights`).

Where it differs from torchvision's ImageNet Inception (the trap):

* ``FIDInceptionA`` / ``C`` / ``E_1`` (Mixed_5b-d, 6b-e, 7b) average-pool their
  pool branch 3×3, stride 1, padding 1 with ``count_include_pad=False``: border
  windows divide by the number of real pixels, as TF's average pool does;
* ``FIDInceptionE_2`` (Mixed_7c) max-pools that branch instead;
* the classifier has 1008 outputs (TF's graph), not 1000.

Each ``BasicConv2d`` of PyTorch (convolution without bias → BatchNorm with
eps 0.001 in eval mode → ReLU) is one convolution with a bias here: the
BatchNorm is folded into the kernel and bias when the weights are loaded,
which saves a pass over every activation.

Input: (B, 299, 299, 3) in [-1, 1] (`sagan_jax.eval.inception` resizes and
scales). Output: ``(pool3 (B, 2048), logits (B, 1008))``.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sagan_jax.layers import Conv, Dense, PointwiseConv
from sagan_jax.layers.base import KernelLayer

__all__ = ["FIDInceptionV3", "NUM_CLASSES", "POOL3_DIM"]

POOL3_DIM = 2048
NUM_CLASSES = 1008


class BasicConv(nn.Module):
  """``BasicConv2d`` with its BatchNorm folded in: convolution + bias, then ReLU."""

  features: int
  kernel_size: int | Sequence[int] = 1
  strides: int = 1
  padding: int | Sequence[int] = 0
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kernel_size == 1 and self.strides == 1 and self.padding == 0:
      y = PointwiseConv(self.features, name="conv")(x)
    else:
      y = Conv(self.features, self.kernel_size, self.strides, self.padding,
               implementation=self.implementation, name="conv")(x)
    return nn.relu(y)


def _avg_pool_3x3_exclude_pad(x: jax.Array) -> jax.Array:
  """``F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)``."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool_3x3(x: jax.Array, stride: int, padding: int) -> jax.Array:
  """``F.max_pool2d(x, 3, stride, padding)`` (PyTorch pads with −∞)."""
  return nn.max_pool(x, (3, 3), strides=(stride, stride),
                     padding=((padding, padding), (padding, padding)))


class _PointwiseWeights(KernelLayer):
  """The ``kernel`` (``(1, 1, in, out)``) and ``bias`` of a ``PointwiseConv``, not applied."""

  features: int

  @nn.compact
  def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array]:
    kernel = self._kernel((1, 1, in_features, self.features), in_features, None)
    return kernel[0, 0], self._bias(self.features, in_features)


class _SiblingWeights(nn.Module):
  """Stands where a 1×1 ``BasicConv`` named like it stands, so the weights keep their names
  (``<branch>/conv/kernel``) and their ``state_dict`` keys."""

  features: int

  @nn.compact
  def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array]:
    return _PointwiseWeights(self.features, name="conv")(in_features)


class _Block(nn.Module):
  """What the mixed blocks share: their convolution constructors."""

  implementation: str = "auto"

  def conv(self, name: str, features: int, kernel_size=1, strides=1, padding=0) -> BasicConv:
    return BasicConv(features, kernel_size, strides, padding, self.implementation, name=name)

  def pointwise_siblings(self, x: jax.Array, *branches: tuple[str, int]) -> list[jax.Array]:
    """The 1×1 ``BasicConv``s ``(name, features)`` that several branches apply to the same
    ``x``, as one matrix product with their kernels side by side: ``x`` is read once and the
    GEMM is wider (faster on CPU). Each output column is the same dot product over ``x``'s
    channels as the branch's own convolution computes."""
    weights = [_SiblingWeights(features, name=name)(x.shape[-1]) for name, features in branches]
    kernel = jnp.concatenate([k for k, _ in weights], axis=-1)
    bias = jnp.concatenate([b for _, b in weights], axis=-1)
    y = jnp.einsum("bhwi,io->bhwo", x, kernel,
                   preferred_element_type=jnp.promote_types(x.dtype, jnp.float32)).astype(x.dtype)
    y = nn.relu(y + bias)
    splits = np.cumsum([features for _, features in branches])[:-1]
    return jnp.split(y, splits, axis=-1)


class InceptionA(_Block):
  """``FIDInceptionA`` (Mixed_5b, 5c, 5d)."""

  pool_features: int = 32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch1x1, branch5x5, branch3x3dbl = self.pointwise_siblings(
        x, ("branch1x1", 64), ("branch5x5_1", 48), ("branch3x3dbl_1", 64))
    branch5x5 = self.conv("branch5x5_2", 64, 5, padding=2)(branch5x5)
    branch3x3dbl = self.conv("branch3x3dbl_2", 96, 3, padding=1)(branch3x3dbl)
    branch3x3dbl = self.conv("branch3x3dbl_3", 96, 3, padding=1)(branch3x3dbl)
    branch_pool = self.conv("branch_pool", self.pool_features)(_avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(_Block):
  """torchvision's ``InceptionB`` (Mixed_6a): a stride-2 reduction."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3 = self.conv("branch3x3", 384, 3, strides=2)(x)
    branch3x3dbl = self.conv("branch3x3dbl_1", 64)(x)
    branch3x3dbl = self.conv("branch3x3dbl_2", 96, 3, padding=1)(branch3x3dbl)
    branch3x3dbl = self.conv("branch3x3dbl_3", 96, 3, strides=2)(branch3x3dbl)
    return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionC(_Block):
  """``FIDInceptionC`` (Mixed_6b-6e): factorized 7×7 convolutions."""

  channels_7x7: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    branch1x1, branch7x7, dbl = self.pointwise_siblings(
        x, ("branch1x1", 192), ("branch7x7_1", c7), ("branch7x7dbl_1", c7))
    branch7x7 = self.conv("branch7x7_2", c7, (1, 7), padding=(0, 3))(branch7x7)
    branch7x7 = self.conv("branch7x7_3", 192, (7, 1), padding=(3, 0))(branch7x7)
    dbl = self.conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))(dbl)
    dbl = self.conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))(dbl)
    dbl = self.conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))(dbl)
    dbl = self.conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))(dbl)
    branch_pool = self.conv("branch_pool", 192)(_avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([branch1x1, branch7x7, dbl, branch_pool], axis=-1)


class InceptionD(_Block):
  """torchvision's ``InceptionD`` (Mixed_7a): a stride-2 reduction."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3, branch7x7x3 = self.pointwise_siblings(
        x, ("branch3x3_1", 192), ("branch7x7x3_1", 192))
    branch3x3 = self.conv("branch3x3_2", 320, 3, strides=2)(branch3x3)
    branch7x7x3 = self.conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(branch7x7x3)
    branch7x7x3 = self.conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(branch7x7x3)
    branch7x7x3 = self.conv("branch7x7x3_4", 192, 3, strides=2)(branch7x7x3)
    return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionE(_Block):
  """``FIDInceptionE_1`` (Mixed_7b, ``max_pool=False``) and ``FIDInceptionE_2`` (Mixed_7c)."""

  max_pool: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch1x1, branch3x3, dbl = self.pointwise_siblings(
        x, ("branch1x1", 320), ("branch3x3_1", 384), ("branch3x3dbl_1", 448))
    branch3x3 = jnp.concatenate([
        self.conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(branch3x3),
        self.conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(branch3x3)], axis=-1)
    dbl = self.conv("branch3x3dbl_2", 384, 3, padding=1)(dbl)
    dbl = jnp.concatenate([
        self.conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(dbl),
        self.conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(dbl)], axis=-1)
    pooled = _max_pool_3x3(x, 1, 1) if self.max_pool else _avg_pool_3x3_exclude_pad(x)
    branch_pool = self.conv("branch_pool", 192)(pooled)
    return jnp.concatenate([branch1x1, branch3x3, dbl, branch_pool], axis=-1)


class FIDInceptionV3(nn.Module):
  """pytorch-fid's FID Inception: (B, 299, 299, 3) in [-1, 1] → (pool3, logits).

  Attributes:
    implementation: the convolutions' op (``'auto'``, ``'gemm'``, ``'xla'``;
      see `sagan_jax.ops.convolution`).
  """

  implementation: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    impl = self.implementation
    conv = lambda name, *args, **kw: BasicConv(*args, implementation=impl, name=name, **kw)
    x = conv("Conv2d_1a_3x3", 32, 3, strides=2)(x)
    x = conv("Conv2d_2a_3x3", 32, 3)(x)
    x = conv("Conv2d_2b_3x3", 64, 3, padding=1)(x)
    x = _max_pool_3x3(x, 2, 0)
    x = conv("Conv2d_3b_1x1", 80)(x)
    x = conv("Conv2d_4a_3x3", 192, 3)(x)
    x = _max_pool_3x3(x, 2, 0)
    x = InceptionA(impl, pool_features=32, name="Mixed_5b")(x)
    x = InceptionA(impl, pool_features=64, name="Mixed_5c")(x)
    x = InceptionA(impl, pool_features=64, name="Mixed_5d")(x)
    x = InceptionB(impl, name="Mixed_6a")(x)
    x = InceptionC(impl, channels_7x7=128, name="Mixed_6b")(x)
    x = InceptionC(impl, channels_7x7=160, name="Mixed_6c")(x)
    x = InceptionC(impl, channels_7x7=160, name="Mixed_6d")(x)
    x = InceptionC(impl, channels_7x7=192, name="Mixed_6e")(x)
    x = InceptionD(impl, name="Mixed_7a")(x)
    x = InceptionE(impl, max_pool=False, name="Mixed_7b")(x)
    x = InceptionE(impl, max_pool=True, name="Mixed_7c")(x)
    pool3 = x.mean(axis=(1, 2))  # AdaptiveAvgPool2d(1); dropout is the identity in eval mode
    return pool3, Dense(NUM_CLASSES, name="fc")(pool3)
