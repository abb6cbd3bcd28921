"""Convolutions with PyTorch's semantics (NHWC), optionally spectrally normalized.

``Conv``, ``ConvTranspose`` and ``PointwiseConv`` take PyTorch's
``(kernel_size, stride, padding[, output_padding])`` arguments and compute
exactly what ``nn.Conv2d`` / ``nn.ConvTranspose2d`` compute, through the fast
ops of :mod:`sagan_jax.ops.convolution`. Kernels are stored HWIO
(``(kh, kw, in, out)``) for both, and biases as ``(out,)``.

With ``spectral_norm=True`` (or the ``SN*`` classes) the kernel is divided by
its spectral norm, with the power-iteration state in the ``spectral``
collection; such layers need ``update_stats`` (train mode) at call time.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers.initializers import torch_uniform
from sagan_jax.layers.spectral_norm import DEFAULT_EPS, maybe_spectral_normalized
from sagan_jax.layers.validation import require_rank, shaped_param
from sagan_jax.ops.convolution import conv2d, conv_transpose2d

IntPair = Union[int, Sequence[int]]
Initializer = Callable[..., jax.Array]


def _pair(value: IntPair) -> tuple[int, int]:
  if isinstance(value, int):
    return (value, value)
  pair = tuple(int(v) for v in value)
  if len(pair) != 2:
    raise ValueError(f"expected an int or a pair, got {value!r}")
  return pair


class Conv(nn.Module):
  """``nn.Conv2d``: cross-correlation with symmetric zero padding.

  Attributes:
    features: output channels.
    kernel_size, strides, padding: as PyTorch's ``kernel_size``, ``stride``,
      ``padding`` (an int or an (h, w) pair).
    use_bias: add a bias.
    spectral_norm: divide the kernel by its spectral norm.
    num_power_iterations: power-iteration rounds per train-mode call.
    spectral_eps: normalization floor of the power iteration.
    update_stats: train mode for spectral norm; may also be given at call time.
    kernel_init, bias_init: default to PyTorch's ``U(±1/√fan_in)``.
    implementation: 'auto' | 'gemm' | 'xla' (see ``sagan_jax.ops``).
  """

  features: int
  kernel_size: IntPair = 1
  strides: IntPair = 1
  padding: IntPair = 0
  use_bias: bool = True
  spectral_norm: bool = False
  num_power_iterations: int = 1
  spectral_eps: float = DEFAULT_EPS
  update_stats: Optional[bool] = None
  kernel_init: Optional[Initializer] = None
  bias_init: Optional[Initializer] = None
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: Optional[bool] = None) -> jax.Array:
    require_rank(self, x, 4, "(batch, height, width, channels)")
    kh, kw = _pair(self.kernel_size)
    in_features = x.shape[-1]
    fan_in = kh * kw * in_features
    kernel = shaped_param(self, "kernel", self.kernel_init or torch_uniform(fan_in),
                          (kh, kw, in_features, self.features))
    kernel = maybe_spectral_normalized(self, kernel, update_stats)
    y = conv2d(x, kernel.astype(x.dtype), stride=_pair(self.strides),
               padding=_pair(self.padding), implementation=self.implementation)
    if self.use_bias:
      bias = self.param("bias", self.bias_init or torch_uniform(fan_in), (self.features,))
      y = y + bias.astype(y.dtype)
    return y


class ConvTranspose(nn.Module):
  """``nn.ConvTranspose2d``: output size ``(H-1)·s - 2p + k + output_padding``.

  The kernel ``(kh, kw, in, out)`` holds PyTorch's ``weight[in, out, kh, kw]``
  transposed; the spectral norm treats ``out`` as the output dimension, as
  ``torch.nn.utils.spectral_norm`` does (its ``dim=1`` for transposed convs).
  Attributes are those of ``Conv`` plus ``output_padding``.
  """

  features: int
  kernel_size: IntPair = 1
  strides: IntPair = 1
  padding: IntPair = 0
  output_padding: IntPair = 0
  use_bias: bool = True
  spectral_norm: bool = False
  num_power_iterations: int = 1
  spectral_eps: float = DEFAULT_EPS
  update_stats: Optional[bool] = None
  kernel_init: Optional[Initializer] = None
  bias_init: Optional[Initializer] = None
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: Optional[bool] = None) -> jax.Array:
    require_rank(self, x, 4, "(batch, height, width, channels)")
    kh, kw = _pair(self.kernel_size)
    in_features = x.shape[-1]
    # PyTorch computes the fan-in of a transposed conv from weight dim 1 (out).
    fan_in = kh * kw * self.features
    kernel = shaped_param(self, "kernel", self.kernel_init or torch_uniform(fan_in),
                          (kh, kw, in_features, self.features))
    kernel = maybe_spectral_normalized(self, kernel, update_stats)
    y = conv_transpose2d(x, kernel.astype(x.dtype), stride=_pair(self.strides),
                         padding=_pair(self.padding),
                         output_padding=_pair(self.output_padding),
                         implementation=self.implementation)
    if self.use_bias:
      bias = self.param("bias", self.bias_init or torch_uniform(fan_in), (self.features,))
      y = y + bias.astype(y.dtype)
    return y


class PointwiseConv(nn.Module):
  """The 1×1 convolution (``nn.Conv2d(kernel_size=1)``): a per-pixel linear map.

  Computed as one matrix product over the channel axis, which is both the
  clearest and the fastest form. Attributes are those of ``Conv`` without the
  spatial ones.
  """

  features: int
  use_bias: bool = True
  spectral_norm: bool = False
  num_power_iterations: int = 1
  spectral_eps: float = DEFAULT_EPS
  update_stats: Optional[bool] = None
  kernel_init: Optional[Initializer] = None
  bias_init: Optional[Initializer] = None

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: Optional[bool] = None) -> jax.Array:
    require_rank(self, x, 4, "(batch, height, width, channels)")
    in_features = x.shape[-1]
    init = torch_uniform(in_features)
    # Stored as a (1, 1, in, out) kernel so it is interchangeable with Conv.
    kernel = shaped_param(self, "kernel", self.kernel_init or init,
                          (1, 1, in_features, self.features))
    kernel = maybe_spectral_normalized(self, kernel, update_stats)
    # Accumulated in float32 also for bfloat16 inputs (and then fast on CPU; see
    # sagan_jax/ops/convolution.py).
    y = jnp.einsum("bhwi,io->bhwo", x, kernel[0, 0].astype(x.dtype),
                   preferred_element_type=jnp.promote_types(x.dtype, jnp.float32)).astype(x.dtype)
    if self.use_bias:
      bias = self.param("bias", self.bias_init or init, (self.features,))
      y = y + bias.astype(y.dtype)
    return y


class SNConv(Conv):
  """``Conv`` with spectral normalization (``spectral_norm(nn.Conv2d(...))``)."""

  spectral_norm: bool = True


class SNConvTranspose(ConvTranspose):
  """``ConvTranspose`` with spectral normalization."""

  spectral_norm: bool = True


class SNPointwiseConv(PointwiseConv):
  """``PointwiseConv`` with spectral normalization."""

  spectral_norm: bool = True
