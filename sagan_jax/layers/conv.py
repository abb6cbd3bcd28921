"""Convolutions with PyTorch's semantics (NHWC), optionally spectrally normalized.

``Conv``, ``ConvTranspose`` and ``PointwiseConv`` take PyTorch's
``(kernel_size, stride, padding[, output_padding])`` arguments and compute
exactly what ``nn.Conv2d`` / ``nn.ConvTranspose2d`` compute, through the fast
ops of :mod:`sagan_jax.ops.convolution`. Kernels are stored HWIO
(``(kh, kw, in, out)``) for both, and biases as ``(out,)``.

With ``spectral_norm=True`` (or the ``SN*`` classes) the kernel is divided by
its spectral norm, with the power-iteration state in the ``spectral``
collection; such layers need ``update_stats`` (train mode) at call time. The
options shared with ``Dense`` (``use_bias``, ``spectral_norm``, …, ``bias_init``)
are keyword-only and documented on :class:`sagan_jax.layers.base.KernelLayer`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers.base import KernelLayer
from sagan_jax.layers.validation import require_rank
from sagan_jax.ops.convolution import IntOrPair, Padding, as_pair, conv2d, conv_transpose2d
from sagan_jax.ops.pooled_convolution import conv2d_avg_pool_2x2
from sagan_jax.ops.upsample_convolution import upsample_conv2d


class _Convolution(KernelLayer):
  """What ``Conv`` and ``ConvTranspose`` share: PyTorch's spatial arguments and the op choice.

  Attributes:
    features: output channels.
    kernel_size, strides: as PyTorch's ``kernel_size``, ``stride`` (an int or an
      (h, w) pair).
    padding: PyTorch's ``padding`` (an int or an (h, w) pair), or Flax's
      ``'SAME'`` / ``'VALID'`` (``Conv`` also takes ``((top, bottom), (left,
      right))``); see ``sagan_jax.ops.convolution``.
    implementation: 'auto' | 'gemm' | 'xla' (see ``sagan_jax.ops``).
    use_bias, spectral_norm, num_power_iterations, spectral_eps, update_stats,
      dtype, param_dtype, precision, kernel_init, bias_init: keyword-only, as in
      ``KernelLayer``.
  """

  features: int
  kernel_size: IntOrPair = 1
  strides: IntOrPair = 1
  padding: Padding = 0
  _: dataclasses.KW_ONLY
  implementation: str = "auto"

  def _operands(self, x: jax.Array, fan_in_channels: int, update_stats: Optional[bool]):
    """``(x, kernel, bias)`` in the computation's dtype; the kernel ``(kh, kw, in, out)``."""
    require_rank(self, x, 4, "(batch, height, width, channels)")
    kh, kw = as_pair(self.kernel_size, "kernel_size")
    fan_in = kh * kw * fan_in_channels
    kernel = self._kernel((kh, kw, x.shape[-1], self.features), fan_in, update_stats)
    return self._promote(x, kernel, fan_in)


class Conv(_Convolution):
  """``nn.Conv2d``: cross-correlation with symmetric zero padding.

  Constructed as ``Conv(features, kernel_size, strides, padding)``, the other
  attributes by keyword (see ``_Convolution`` and ``KernelLayer``). ``upsample=True``
  (keyword, stride 1) convolves the input nearest-upsampled x2 (``nn.Upsample(scale_factor=2)``
  then ``nn.Conv2d``) without materializing it: `sagan_jax.ops.upsample_convolution`.
  ``downsample=True`` (keyword, stride 1) average-pools the output 2×2 (``nn.Conv2d`` then
  ``nn.AvgPool2d(2)``), on CPU as one stride-2 convolution:
  `sagan_jax.ops.pooled_convolution`. The kernel is the same parameter either way.
  """

  _: dataclasses.KW_ONLY
  upsample: bool = False
  downsample: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, update_stats: Optional[bool] = None) -> jax.Array:
    x, kernel, bias = self._operands(x, x.shape[-1], update_stats)
    if self.upsample and self.downsample:
      raise ValueError("Conv: upsample=True and downsample=True together; choose one")
    if self.upsample or self.downsample:
      resampling = "upsample" if self.upsample else "downsample"
      if as_pair(self.strides, "strides") != (1, 1):
        raise ValueError(f"Conv({resampling}=True) needs stride 1, got {self.strides!r}")
      resampled = upsample_conv2d if self.upsample else conv2d_avg_pool_2x2
      y = resampled(x, kernel, padding=self.padding, implementation=self.implementation,
                    precision=self.precision)
      return self._add_bias(y, bias)
    y = conv2d(x, kernel, stride=self.strides, padding=self.padding,
               implementation=self.implementation, precision=self.precision)
    return self._add_bias(y, bias)


class ConvTranspose(_Convolution):
  """``nn.ConvTranspose2d``: output size ``(H-1)·s - 2p + k + output_padding``.

  Constructed as ``ConvTranspose(features, kernel_size, strides, padding,
  output_padding)``. The kernel ``(kh, kw, in, out)`` holds PyTorch's
  ``weight[in, out, kh, kw]`` transposed; the spectral norm treats ``out`` as
  the output dimension, as ``torch.nn.utils.spectral_norm`` does (its ``dim=1``
  for transposed convs).
  """

  output_padding: IntOrPair = 0

  @nn.compact
  def __call__(self, x: jax.Array, update_stats: Optional[bool] = None) -> jax.Array:
    # PyTorch computes the fan-in of a transposed conv from weight dim 1 (out).
    x, kernel, bias = self._operands(x, self.features, update_stats)
    y = conv_transpose2d(x, kernel, stride=self.strides, padding=self.padding,
                         output_padding=self.output_padding,
                         implementation=self.implementation, precision=self.precision)
    return self._add_bias(y, bias)


class PointwiseConv(KernelLayer):
  """The 1×1 convolution (``nn.Conv2d(kernel_size=1)``): a per-pixel linear map.

  Computed as one matrix product over the channel axis, which is both the
  clearest and the fastest form. Attributes are those of ``Conv`` without the
  spatial ones.
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, update_stats: Optional[bool] = None) -> jax.Array:
    require_rank(self, x, 4, "(batch, height, width, channels)")
    in_features = x.shape[-1]
    # Stored as a (1, 1, in, out) kernel so it is interchangeable with Conv.
    kernel = self._kernel((1, 1, in_features, self.features), in_features, update_stats)
    x, kernel, bias = self._promote(x, kernel, in_features)
    # Accumulated in float32 also for bfloat16 inputs (and then fast on CPU; see
    # sagan_jax/ops/convolution.py).
    y = jnp.einsum("bhwi,io->bhwo", x, kernel[0, 0], precision=self.precision,
                   preferred_element_type=jnp.promote_types(x.dtype, jnp.float32)).astype(x.dtype)
    return self._add_bias(y, bias)


class SNConv(Conv):
  """``Conv`` with spectral normalization on: PyTorch's
  ``spectral_norm(nn.Conv2d(...))``."""

  _: dataclasses.KW_ONLY
  spectral_norm: bool = True


class SNConvTranspose(ConvTranspose):
  """``ConvTranspose`` with spectral normalization on: PyTorch's
  ``spectral_norm(nn.ConvTranspose2d(...))``."""

  _: dataclasses.KW_ONLY
  spectral_norm: bool = True


class SNPointwiseConv(PointwiseConv):
  """``PointwiseConv`` with spectral normalization on: PyTorch's
  ``spectral_norm(nn.Conv2d(..., kernel_size=1))``."""

  _: dataclasses.KW_ONLY
  spectral_norm: bool = True
