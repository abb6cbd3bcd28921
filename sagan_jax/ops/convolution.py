"""2-D convolution and transposed convolution with PyTorch semantics, fast on CPU.

Both ops take NHWC activations and HWIO kernels and add no bias (the calling modules
do). Two implementations compute the same function:

* ``'xla'``: one ``lax.conv_general_dilated`` each. The reference, and the right choice
  on GPU/TPU, where cuDNN/the TPU compiler are fast for all three products (forward,
  input gradient, kernel gradient).
* ``'gemm'``: matrix multiplies, for XLA:CPU. There the kernel gradient of a strided
  convolution is lowered to a dilated convolution that is more than an order of
  magnitude slower than the forward pass (measurements: benchmarks/README.md).

``'auto'`` (the default) picks per convolution: ``'xla'`` on GPU/TPU; on CPU ``'gemm'`` for a
strided or transposed one and for a stride-1 ``conv2d`` on a small map with many channels or
on an image's few input channels, ``'xla'`` for the rest (see `_cpu_prefers_gemm`; measured
with XLA's convolutions on Eigen, as `sagan_jax.ops.compiler_options` compiles them).
Both work under ``jit``, ``vmap``, ``lax.scan`` and autodiff in every mode (``grad``,
``vjp``, ``jvp``, ``jacfwd``, ``linearize``, to any order): ``'gemm'`` defines its
derivative with ``jax.custom_jvp`` (see 3. below).

The ``'gemm'`` formulation:

1. *Space-to-depth.* A stride-``s`` convolution with a ``k``-tap kernel is a stride-1
   convolution with ``a = ceil(k / s)`` taps on the input folded by ``s`` in each
   spatial dimension (channels ``s*s*C``): tap ``ky = s*ay + ry`` reads block
   ``oy + ay``, phase ``ry``. Stride 2, ``k = 4`` becomes a 2x2 stride-1 convolution,
   so im2col copies each input element 4 times instead of 16, with contiguous slices.
2. *im2col on the input side only.* ``conv2d`` is ``im2col(fold(x)) @ K``; its input
   gradient is the adjoint, ``unfold(col2im(dy @ K.T))``, and its kernel gradient
   ``im2col(fold(x)).T @ dy``. ``conv_transpose2d`` is that adjoint map, so its forward
   pass is ``unfold(col2im(x @ K.T))`` and both of its gradients use one
   ``im2col(fold(dy))``. Every GEMM has the long (taps x channels) side as its
   contraction or its output, never a transposed large operand.
3. *A hand-written tangent* (``jax.custom_jvp``). Plain autodiff of the im2col forward
   is correct but slow: it stores the whole batch's im2col for the backward and leaves
   the kernel gradient as a transposed-operand GEMM. The custom JVP is linear in the
   tangents and written so that its transpose, which reverse mode runs, recomputes
   the im2col slice by slice and is one plain GEMM per gradient.
4. *Batch slices.* The im2col of a whole batch-64 layer spills the L3 cache, and then
   memory traffic costs as much as the arithmetic; each op therefore runs over slices
   of the batch in a ``lax.map``/``lax.scan`` (~4 MiB of im2col each).

Both paths are float32 products summed in different orders; they agree with
PyTorch's ``conv2d``/``conv_transpose2d`` to float32 rounding (tests: <= 1e-5 absolute on
O(1) values).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
from jax import lax

IntOrPair = Union[int, Sequence[int]]
# PyTorch ints, explicit ((lo, hi), (lo, hi)) pairs, or Flax's 'SAME' / 'VALID'.
Padding = Union[str, int, Sequence[int], Sequence[Sequence[int]]]

PrecisionLike = Any  # None, a jax.lax.Precision or a pair of them, as lax.dot takes
_IMPLEMENTATIONS = ('auto', 'xla', 'gemm')
_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')

# Batch slicing of the GEMM path (see `_num_chunks`).
_CHUNK_BYTES = 4 * 2**20
_MIN_CHUNK_ROWS = 512


# ----------------------------------------------------------------------------------
# Argument handling.
# ----------------------------------------------------------------------------------


def as_pair(value: IntOrPair, name: str) -> tuple[int, int]:
  """``(h, w)`` from an int or a pair of ints (NumPy integers included); ``name`` is for
  the error message."""
  try:
    return (operator.index(value),) * 2
  except TypeError:
    pass
  try:
    pair = tuple(operator.index(v) for v in value)
  except TypeError:
    pair = ()
  if len(pair) != 2:
    raise ValueError(f'{name} must be an int or a pair of ints, got {value!r}.')
  return pair


def _check_operands(op: str, x: jax.Array, kernel: jax.Array) -> None:
  """Raises ValueError unless x is NHWC and kernel HWIO with matching channels."""
  if x.ndim != 4:
    raise ValueError(f'{op}: x must be 4-D (batch, height, width, channels), '
                     f'got shape {tuple(x.shape)}.')
  if kernel.ndim != 4:
    raise ValueError(f'{op}: kernel must be 4-D (kh, kw, in_channels, out_channels), '
                     f'got shape {tuple(kernel.shape)}.')
  if x.shape[3] != kernel.shape[2]:
    raise ValueError(f'{op}: x has {x.shape[3]} channels but kernel expects '
                     f'{kernel.shape[2]} (x shape {tuple(x.shape)}, kernel shape '
                     f'{tuple(kernel.shape)}).')


def _check_implementation(implementation: str) -> None:
  if implementation not in _IMPLEMENTATIONS:
    raise ValueError(f'implementation must be one of {_IMPLEMENTATIONS}, '
                     f'got {implementation!r}.')


def _check_stride(stride) -> None:
  if min(stride) < 1:
    raise ValueError(f'stride must be >= 1, got {stride}.')


def _check_padding(pairs) -> None:
  if min(min(p) for p in pairs) < 0:
    raise ValueError(f'padding must be >= 0, got {pairs}.')


_PADDING_FORMS = "an int, a pair, ((lo, hi), (lo, hi)), 'SAME' or 'VALID'"


def _padding_string(padding):
  """'SAME' or 'VALID' (any case) for a string padding, else None."""
  if not isinstance(padding, str):
    return None
  if padding.upper() not in ('SAME', 'VALID'):
    raise ValueError(f'padding must be {_PADDING_FORMS}, got {padding!r}.')
  return padding.upper()


def conv_padding(padding: Padding, in_size, kernel_size, stride) -> tuple[tuple[int, int], ...]:
  """``((lo, hi), (lo, hi))`` zero padding of a convolution.

  Ints and pairs pad both sides alike (PyTorch); ``'VALID'`` is no padding;
  ``'SAME'`` gives ``ceil(size / stride)`` outputs, the padding split as Flax
  and TensorFlow split it (an odd pixel goes at the end).
  """
  mode = _padding_string(padding)
  if mode == 'VALID':
    return ((0, 0), (0, 0))
  if mode == 'SAME':
    pads = []
    for n, k, s in zip(in_size, kernel_size, stride):
      total = max((-(-n // s) - 1) * s + k - n, 0)
      pads.append((total // 2, total - total // 2))
    return tuple(pads)
  try:
    return tuple((p, p) for p in as_pair(padding, 'padding'))
  except ValueError:
    pass
  try:
    pairs = tuple(tuple(operator.index(v) for v in pair) for pair in padding)
  except TypeError:
    pairs = ()
  if len(pairs) != 2 or any(len(pair) != 2 for pair in pairs):
    raise ValueError(f'padding must be {_PADDING_FORMS}, got {padding!r}.')
  return pairs


def conv_transpose_padding(padding: Padding, output_padding: IntOrPair, kernel_size, stride
                           ) -> tuple[tuple[int, int], tuple[int, int]]:
  """``(padding, output_padding)`` pairs of a transposed convolution, PyTorch's arguments.

  ``'SAME'`` gives ``size * stride`` outputs (for k4 s2: PyTorch's padding 1) and
  ``'VALID'`` ``(size - 1) * stride + max(kernel, stride)`` (Flax's sizes), each as a
  symmetric padding plus an ``output_padding`` below the stride.
  """
  mode = _padding_string(padding)
  if mode is None:
    return as_pair(padding, 'padding'), as_pair(output_padding, 'output_padding')
  if as_pair(output_padding, 'output_padding') != (0, 0):
    raise ValueError(f'output_padding must be 0 with padding {padding!r}, got '
                     f'{output_padding!r}.')
  pads, extra = [], []
  for k, s in zip(kernel_size, stride):
    p = 0 if mode == 'VALID' or k <= s else -(-(k - s) // 2)
    pads.append(p)
    extra.append(max(s - k, 0) if p == 0 else 2 * p - (k - s))
  return tuple(pads), tuple(extra)


# ----------------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------------


def conv2d(x: jax.Array, kernel: jax.Array, *, stride: IntOrPair = 1,
           padding: Padding = 0, implementation: str = 'auto',
           precision: PrecisionLike = None) -> jax.Array:
  """``torch.nn.functional.conv2d`` (cross-correlation, zero padding).

  ``y[b, oy, ox, o] = sum_{ky, kx, i} xp[b, oy*sh + ky, ox*sw + kx, i] * kernel[ky, kx, i, o]``
  where ``xp`` is ``x`` zero-padded by ``padding``.

  Args:
    x: ``(B, H, W, Cin)`` input.
    kernel: ``(kh, kw, Cin, Cout)``; ``kernel[ky, kx, i, o] == torch_weight[o, i, ky, kx]``.
    stride: int or ``(sh, sw)``.
    padding: int or ``(ph, pw)`` (both sides, as PyTorch), ``((top, bottom), (left,
      right))``, or ``'SAME'`` / ``'VALID'`` (as Flax; see `conv_padding`).
    implementation: ``'xla'`` (one ``lax.conv_general_dilated``), ``'gemm'`` (the
      matrix-multiply formulation that is fast on XLA:CPU), or ``'auto'``: the faster
      of the two for this convolution on the backend it is lowered for (on CPU by its
      stride, size and channels, else ``'xla'``; see `_cpu_prefers_gemm`).
    precision: ``jax.lax.Precision`` of the products (None: the backend's default).

  Returns:
    ``(B, (H + top + bottom - kh) // sh + 1, (W + left + right - kw) // sw + 1, Cout)``,
    dtype of ``x``/``kernel`` promoted.

  Raises:
    ValueError: for non-4-D operands, mismatched channels, bad stride/padding, or an
      empty output.
  """
  _check_implementation(implementation)
  x, kernel = jnp.asarray(x), jnp.asarray(kernel)
  _check_operands('conv2d', x, kernel)
  stride = as_pair(stride, 'stride')
  _check_stride(stride)
  kh, kw = kernel.shape[:2]
  h, w = x.shape[1:3]
  padding = conv_padding(padding, (h, w), (kh, kw), stride)
  _check_padding(padding)
  padded = (h + sum(padding[0]), w + sum(padding[1]))
  if padded[0] < kh or padded[1] < kw:
    raise ValueError(f'conv2d: padded input {padded} '
                     f'is smaller than the kernel ({kh}, {kw}) (x shape '
                     f'{tuple(x.shape)}, kernel shape {tuple(kernel.shape)}, '
                     f'padding {padding}): the output would be empty.')
  xla = functools.partial(_conv2d_xla, stride=stride, padding=padding, precision=precision)
  gemm = functools.partial(_conv2d_gemm, stride=stride, padding=padding, precision=precision)
  out_size = tuple((p - k) // st + 1 for p, k, st in zip(padded, (kh, kw), stride))
  cpu_gemm = _cpu_prefers_gemm(stride, padded, (kh, kw), out_size, kernel.shape[2:])
  return _dispatch(implementation, xla, gemm, x, kernel, cpu_gemm=cpu_gemm)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, *, stride: IntOrPair = 1,
                     padding: Padding = 0, output_padding: IntOrPair = 0,
                     implementation: str = 'auto', precision: PrecisionLike = None
                     ) -> jax.Array:
  """``torch.nn.functional.conv_transpose2d`` (the adjoint of ``conv2d`` in ``x``).

  ``y[b, iy*sh - ph + ky, ix*sw - pw + kx, o] += x[b, iy, ix, i] * kernel[ky, kx, i, o]``
  for every in-range output position; ``output_padding`` extends the output at the
  bottom/right (with zeros plus whatever contributions land there), as in PyTorch.

  Args:
    x: ``(B, H, W, Cin)`` input.
    kernel: ``(kh, kw, Cin, Cout)``; ``kernel[ky, kx, i, o] == torch_weight[i, o, ky, kx]``.
    stride: int or ``(sh, sw)``.
    padding: int or ``(ph, pw)``, or ``'SAME'`` (``H*sh`` outputs) / ``'VALID'``
      (see `conv_transpose_padding`).
    output_padding: int or pair, each smaller than the stride in that dimension.
    implementation: ``'xla'``, ``'gemm'`` or ``'auto'``, as in :func:`conv2d`.
    precision: as in :func:`conv2d`.

  Returns:
    ``(B, (H-1)*sh - 2*ph + kh + oph, (W-1)*sw - 2*pw + kw + opw, Cout)``.

  Raises:
    ValueError: for non-4-D operands, mismatched channels, bad stride/padding,
      ``output_padding >= stride``, or an output size <= 0.
  """
  _check_implementation(implementation)
  x, kernel = jnp.asarray(x), jnp.asarray(kernel)
  _check_operands('conv_transpose2d', x, kernel)
  stride = as_pair(stride, 'stride')
  _check_stride(stride)
  padding, output_padding = conv_transpose_padding(padding, output_padding, kernel.shape[:2],
                                                   stride)
  _check_padding([padding])
  if min(output_padding) < 0 or any(op >= s for op, s in zip(output_padding, stride)):
    raise ValueError(f'conv_transpose2d: output_padding {output_padding} must be >= 0 '
                     f'and smaller than stride {stride}.')
  out = _transpose_output_size(x.shape[1:3], kernel.shape[:2], stride, padding,
                               output_padding)
  if min(out) <= 0:
    raise ValueError(f'conv_transpose2d: output size {out} is not positive (x shape '
                     f'{tuple(x.shape)}, kernel shape {tuple(kernel.shape)}, stride '
                     f'{stride}, padding {padding}, output_padding {output_padding}).')
  xla = functools.partial(_conv_transpose2d_xla, stride=stride, padding=padding,
                          output_padding=output_padding, precision=precision)
  gemm = functools.partial(_conv_transpose2d_gemm, stride=stride, padding=padding,
                           output_padding=output_padding, precision=precision)
  return _dispatch(implementation, xla, gemm, x, kernel)


# Stride-1 conv2d on CPU: the GEMM path for few output positions with many channels, and
# for an image's few input channels (see `_cpu_prefers_gemm`).
_GEMM_MAX_POSITIONS = 64  # an 8x8 output
_GEMM_MIN_CHANNEL_PRODUCT = 2**19  # input x output channels, e.g. 512 -> 1024
_GEMM_MAX_IN_CHANNELS = 4  # gray, RGB, RGBA
_GEMM_MIN_OUT_CHANNELS = 8


def _cpu_prefers_gemm(stride, padded_size=None, kernel_size=None, out_size=None,
                      channels=None) -> bool:
  """Whether ``'auto'`` takes the GEMM path on CPU: for every strided and transposed
  convolution (``padded_size`` None), for a stride-1 ``conv2d`` whose kernel covers the
  whole padded input (a single matrix product, e.g. the chapter D's last 4x4 layer), and
  for a stride-1 ``conv2d`` with at least `_GEMM_MIN_OUT_CHANNELS` output ``channels`` and
  either at most `_GEMM_MAX_IN_CHANNELS` input channels or at most `_GEMM_MAX_POSITIONS`
  output positions with `_GEMM_MIN_CHANNEL_PRODUCT` channels in x out.

  Why (benchmarks/README.md, ``resnet_step.py --conv_table``, forward and both gradients,
  compiled as the library compiles, `sagan_jax.ops.compiler_options`: XLA's convolutions on
  Eigen): XLA:CPU lowers the kernel gradient of a strided convolution, and every product of
  a transposed one (an input-dilated convolution), to loops 10-40x slower than the GEMM
  path. Its stride-1 convolutions beat im2col + GEMM on almost every layer of the ResNet
  models (32² 32→32: 27 vs 57 ms; the 128-px G's 128² 128→64: 349 vs 862 ms; its 64→3
  output: 64 vs 299 ms), except on maps of a few positions and many channels, where
  im2col is cheap and one wide GEMM keeps the cores busy (8² 1024→1024: 148 vs 191 ms;
  4² 1024→1024: 56 vs 105 ms), and on an image's 1-3 input channels, which Eigen's
  convolution vectorizes poorly (D's 32² 1→32: 4.0 vs 7.1 ms; 128² 3→64: 53 vs 58 ms). A rule
  by shape costs nothing at run time and is the same on every machine.
  """
  if max(stride) > 1 or padded_size is None:
    return True
  if tuple(padded_size) == tuple(kernel_size):
    return True
  c_in, c_out = channels
  if c_out < _GEMM_MIN_OUT_CHANNELS:
    return False
  return c_in <= _GEMM_MAX_IN_CHANNELS or (
      out_size[0] * out_size[1] <= _GEMM_MAX_POSITIONS
      and c_in * c_out >= _GEMM_MIN_CHANNEL_PRODUCT)


def _dispatch(implementation, xla, gemm, x, kernel, *, cpu_gemm=True):
  # Both paths need one dtype (lax.dot/conv and the custom JVP's tangents).
  dtype = jnp.result_type(x, kernel)
  x, kernel = x.astype(dtype), kernel.astype(dtype)
  if implementation == 'xla':
    return xla(x, kernel)
  if implementation == 'gemm':
    return gemm(x, kernel)
  if not cpu_gemm:  # 'auto' on a convolution for which XLA's op is the faster everywhere
    return xla(x, kernel)
  # Chosen when the computation is lowered, so one jitted function picks the GEMM path
  # on CPU and cuDNN/TPU convolutions elsewhere; under grad each backend also gets its
  # own backward pass, as `platform_dependent` stages out a `switch` whose unused
  # branch is dropped at lowering.
  return lax.platform_dependent(x, kernel, cpu=gemm, default=xla)


def _transpose_output_size(size, ksize, stride, padding, output_padding):
  return tuple((n - 1) * s - 2 * p + k + op
               for n, k, s, p, op in zip(size, ksize, stride, padding, output_padding))


# ----------------------------------------------------------------------------------
# 'xla' implementation.
# ----------------------------------------------------------------------------------


def _conv2d_xla(x, kernel, *, stride, padding, precision):
  def conv(pads):
    return lax.conv_general_dilated(x, kernel, window_strides=stride, padding=pads,
                                    dimension_numbers=_DIMENSION_NUMBERS, precision=precision)

  pads = [tuple(p) for p in padding]  # ((top, bottom), (left, right))
  if any(lo or hi for lo, hi in pads) or kernel.shape[1] == 1:
    return conv(pads)
  # XLA:CPU's default convolution library (YNNPACK) runs a convolution without any padding
  # 2-3x slower than the same one with some (batch 10, 3x3, 80 -> 192 channels at 73x73:
  # 185 vs 69 ms). One zero column after the input takes the fast path; the extra output
  # column it adds is cut off, and the others read the same inputs: bit-identical results
  # on CPU. Programs compiled with `sagan_jax.ops.compiler_options` run convolutions on Eigen,
  # which has no such gap (59 vs 61 ms): the column is for a caller's own jit without them.
  width = (x.shape[2] - kernel.shape[1]) // stride[1] + 1
  return lax.platform_dependent(
      cpu=lambda: conv([pads[0], (0, 1)])[:, :, :width],
      default=lambda: conv(pads))


def _conv_transpose2d_xla(x, kernel, *, stride, padding, output_padding, precision):
  # The gradient-of-conv2d form: dilate the input by the stride, pad by k - 1 - p
  # (negative padding crops), correlate with the spatially flipped kernel.
  kh, kw = kernel.shape[:2]
  pads = [(k - 1 - p, k - 1 - p + op)
          for k, p, op in zip((kh, kw), padding, output_padding)]
  return lax.conv_general_dilated(
      x, kernel[::-1, ::-1], window_strides=(1, 1), padding=pads, lhs_dilation=stride,
      dimension_numbers=_DIMENSION_NUMBERS, precision=precision)


# ----------------------------------------------------------------------------------
# 'gemm' implementation: strided convolutions as 'a'-tap stride-1 correlations.
# ----------------------------------------------------------------------------------


def _conv2d_gemm(x, kernel, *, stride, padding, precision):
  (kh, kw), (h, w) = kernel.shape[:2], x.shape[1:3]
  out = tuple((n + lo + hi - k) // s + 1
              for n, k, s, (lo, hi) in zip((h, w), (kh, kw), stride, padding))
  taps = (-(-kh // stride[0]), -(-kw // stride[1]))
  # Pad by `lo` in front; behind, pad or crop so that the padded extent is exactly
  # `out + taps - 1` stride blocks (rows no output reads are dropped).
  pads = tuple((lo, s * (o + a - 1) - n - lo)
               for n, s, (lo, _), o, a in zip((h, w), stride, padding, out, taps))
  k = _fold_kernel(kernel, stride, taps)                   # (ah, aw, s*s*Cin, Cout)
  geometry = Geometry(stride, pads, taps, _num_chunks(x.shape[0], out, k.shape, x.dtype),
                      precision)
  return _conv_core(x, k.reshape(-1, k.shape[3]).T, geometry)


def _conv_transpose2d_gemm(x, kernel, *, stride, padding, output_padding, precision):
  (kh, kw), (h, w) = kernel.shape[:2], x.shape[1:3]
  out = _transpose_output_size((h, w), (kh, kw), stride, padding, output_padding)
  taps = (-(-kh // stride[0]), -(-kw // stride[1]))
  # The adjoint of a conv2d from the (B, *out, Cout) output to this (B, h, w, Cin)
  # input; the folded kernel swaps the roles of the channels:
  # k[ay, ax, (ry, rx, o), i] = kernel[s*ay + ry, s*ax + rx, i, o].
  pads = tuple((p, s * (n + a - 1) - o - p)
               for n, s, p, o, a in zip((h, w), stride, padding, out, taps))
  k = _fold_kernel(jnp.swapaxes(kernel, 2, 3), stride, taps)  # (ah, aw, s*s*Cout, Cin)
  geometry = Geometry(stride, pads, taps, _num_chunks(x.shape[0], (h, w), k.shape, x.dtype),
                      precision)
  return _conv_transpose_core(x, k.reshape(-1, k.shape[3]).T, geometry)


def _fold_kernel(kernel, stride, taps):
  """(kh, kw, I, O) -> (ah, aw, sh*sw*I, O) with [ay, ax, (ry, rx, i), o] = kernel[s*a + r].

  Taps past the end of the kernel (when the stride does not divide it) are zero.
  """
  (sh, sw), (ah, aw), (kh, kw, i, o) = stride, taps, kernel.shape
  kernel = jnp.pad(kernel, ((0, sh * ah - kh), (0, sw * aw - kw), (0, 0), (0, 0)))
  kernel = kernel.reshape(ah, sh, aw, sw, i, o).transpose(0, 2, 1, 3, 4, 5)
  return kernel.reshape(ah, aw, sh * sw * i, o)


def _num_chunks(batch, grid, k_shape, dtype):
  """How many slices of the batch to process in turn (a divisor of `batch`).

  The expansion (im2col) holds ``grid * ah * aw * I`` elements per image. Processed
  whole at batch 64 it spills the L3 cache and memory bandwidth dominates; slices of
  <= 4 MiB stay in cache (benchmarks/README.md). A slice keeps >= 512 GEMM rows so
  that the kernel, up to 8 MB, is re-read rarely.
  """
  ah, aw, i, _ = k_shape
  rows = grid[0] * grid[1]
  image_bytes = rows * ah * aw * i * jnp.dtype(dtype).itemsize
  want = max(1, -(-batch * image_bytes // _CHUNK_BYTES))
  cap = max(1, batch * rows // _MIN_CHUNK_ROWS)
  divisors = [c for c in range(1, batch + 1) if batch % c == 0 and c <= cap]
  return next((c for c in divisors if c >= want), divisors[-1])


# ----------------------------------------------------------------------------------
# The core: a stride-1 'valid' correlation of the folded (space-to-depth) input,
#   Y[m, n] = sum_{ay, ax} X[m + ay, n + ax] @ K[ay, ax],
#   X = fold(x): (B, gy + ah - 1, gx + aw - 1, I), K: (ah, aw, I, O), Y: (B, gy, gx, O),
# computed as im2col(X) @ K, and its adjoint in x as unfold(col2im(Y @ K.T)).
# ----------------------------------------------------------------------------------


def _fold(x, stride, pads):
  """Zero-pad/crop by `pads` ((lo, hi) per spatial dim), then space-to-depth by `stride`.

  (B, H, W, C) -> (B, M, N, sh*sw*C), channels ordered (ry, rx, c):
  out[b, m, n, (ry, rx, c)] = padded[b, sh*m + ry, sw*n + rx, c].
  """
  (sh, sw), ((lh, hh), (lw, hw)) = stride, pads
  x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (lh, hh, 0), (lw, hw, 0), (0, 0, 0)])
  b, h, w, c = x.shape
  if (sh, sw) == (1, 1):
    return x
  x = x.reshape(b, h // sh, sh, w // sw, sw, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // sh, w // sw, sh * sw * c)


def _unfold(x, stride, pads):
  """The transpose of `_fold`: depth-to-space, then drop (or zero-extend) `pads`."""
  (sh, sw), ((lh, hh), (lw, hw)) = stride, pads
  b, m, n, c = x.shape
  if (sh, sw) != (1, 1):
    x = x.reshape(b, m, n, sh, sw, c // (sh * sw)).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, m * sh, n * sw, c // (sh * sw))
  return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (-lh, -hh, 0), (-lw, -hw, 0),
                                             (0, 0, 0)])


def _windows(z, taps, grid):
  """im2col: (B, grid + taps - 1, C) -> (B, gh, gw, ah * aw * C), taps-major.

  [b, m, n, (ay, ax, c)] = z[b, m + ay, n + ax, c].
  """
  (ah, aw), (gh, gw) = taps, grid
  b, c = z.shape[0], z.shape[3]
  if grid == (1, 1):
    # A single window (the 4x4 -> 1x1 and 1x1 -> 4x4 layers) is a reshape; the general
    # form would stack ah * aw one-pixel slices.
    return z[:, :ah, :aw].reshape(b, 1, 1, ah * aw * c)
  # One concatenate of contiguous slices: XLA:CPU emits it as a single loop fusion,
  # unlike the transpose of strided slicing that plain autodiff of im2col produces
  # (one full-size padded array per tap, then their sum).
  cols = jnp.stack([z[:, ay:ay + gh, ax:ax + gw] for ay in range(ah) for ax in range(aw)],
                   axis=3)
  return cols.reshape(b, gh, gw, ah * aw * c)


def _col2im(r, taps):
  """The transpose of `_windows`: (B, gh, gw, ah * aw * C) -> (B, gh + ah - 1, gw + aw - 1, C).

  Adds r[b, m, n, (ay, ax, c)] into out[b, m + ay, n + ax, c].
  """
  (ah, aw), (b, gh, gw, _) = taps, r.shape
  r = r.reshape(b, gh, gw, ah, aw, -1)
  if (gh, gw) == (1, 1):
    return r.reshape(b, ah, aw, -1)  # one window: nothing overlaps
  out = None
  for ay in range(ah):
    for ax in range(aw):
      term = jnp.pad(r[:, :, :, ay, ax], ((0, 0), (ay, ah - 1 - ay), (ax, aw - 1 - ax),
                                          (0, 0)))
      out = term if out is None else out + term
  return out


class Geometry(NamedTuple):
  """The static arguments of a GEMM core (hashable: `custom_jvp`'s nondiff argument)."""
  stride: tuple[int, int]
  pads: tuple[tuple[int, int], tuple[int, int]]  # (lo, hi) per spatial dim, before folding
  taps: tuple[int, int]  # (ah, aw) of the folded, stride-1 correlation
  chunks: int  # batch slices (`_num_chunks`)
  precision: PrecisionLike


def _accumulate(dot, a, b):
  """``dot(a, b)`` accumulated in (at least) float32, returned in the operands' dtype.

  For bfloat16 operands this is also the fast form on XLA:CPU: with a float32
  result the product uses the CPU's bf16 dot-product instructions, where a bfloat16
  result is slower than a float32 GEMM (benchmarks/README.md). For float32 operands
  nothing changes.
  """
  acc = jnp.promote_types(a.dtype, jnp.float32)
  return dot(a, b, preferred_element_type=acc).astype(a.dtype)


def _matmul(a, b, precision=None):
  """(..., K) @ (K, N) -> (..., N) as one 2-D GEMM (rows = all leading axes)."""
  out = _accumulate(functools.partial(lax.dot, precision=precision),
                    a.reshape(-1, a.shape[-1]), b)
  return out.reshape(*a.shape[:-1], b.shape[-1])


def _matmul_nt(a, b, precision=None):
  """(..., K) @ (N, K).T -> (..., N) as one 2-D GEMM."""
  nt = functools.partial(lax.dot_general, dimension_numbers=(((1,), (1,)), ((), ())),
                         precision=precision)
  out = _accumulate(nt, a.reshape(-1, a.shape[-1]), b)
  return out.reshape(*a.shape[:-1], b.shape[0])


def _in_chunks(fn, chunks, *arrays):
  """fn applied to `chunks` equal slices of the batch axis in turn (a `lax.map`).

  Keeps each slice's expansion cache-resident (see `_num_chunks`).
  """
  if chunks == 1:
    return fn(*arrays)
  b = arrays[0].shape[0]
  out = lax.map(lambda args: fn(*args),
                [a.reshape(chunks, b // chunks, *a.shape[1:]) for a in arrays])
  return out.reshape(b, *out.shape[2:])


# Differentiation. Both cores are bilinear in (x, kt), so their JVP
#   d core = core(dx, kt) + core(x, dkt)
# is linear in the tangents (dx, dkt), and reverse mode is JAX transposing it. The
# tangent is written so that its transpose is a hand-written backward pass: per batch
# slice, one im2col (of x for conv2d, of dy for conv_transpose2d, recomputed under
# `jax.checkpoint` rather than stored for the whole batch) serves both gradients, and the
# kernel gradient is one plain GEMM (`_matmul_transposable`). A `custom_jvp` (not a
# `custom_vjp`) keeps forward mode (`jvp`, `jacfwd`, `linearize`) and every higher order
# working: the rule is plain JAX, differentiable again.


def _is_zero(tangent) -> bool:
  return isinstance(tangent, jax.custom_derivatives.SymbolicZero)


def _kernel_operand(w):
  """A kernel tangent ``w`` (P, Q) as `_matmul_transposable` takes it: ``w`` for P <= Q,
  else ``wᵀ``, in (at least) float32. Oriented outside the batch loop, so that the loop
  accumulates the kernel gradient in the layout its GEMM produces (a transpose inside the
  loop lets XLA swap the GEMM's operands into the slow transposed form again); float32,
  so that a bfloat16 model's kernel gradient is summed over the batch slices in float32
  and rounded once."""
  w = w.astype(jnp.promote_types(w.dtype, jnp.float32))
  return w if w.shape[0] <= w.shape[1] else w.T


def _matmul_transposable(a, operand, precision=None):
  """``a @ w``, (..., P) x (P, Q) -> (..., Q) in ``a``'s dtype, for a tangent linear in
  ``w`` given as ``operand = _kernel_operand(w)``.

  Its transpose in ``w`` (the kernel gradient, ``aᵀ @ ct`` over all rows) is, written
  directly, a transposed-operand GEMM, which XLA:CPU runs at half the speed of a plain
  one inside the batch loop. So the narrower of ``a`` and ``ct`` is transposed explicitly
  (cheap) and a barrier stops XLA from folding that transpose back into the dot: for
  P <= Q the transpose is ``(aᵀ) @ ct``, else ``(ctᵀ) @ a``.
  """
  acc = jnp.promote_types(a.dtype, jnp.float32)
  a2 = a.reshape(-1, a.shape[-1])
  operand = operand.astype(a.dtype)  # the GEMM in the operands' dtype (bf16: fast on CPU)
  p = a2.shape[1]
  q = operand.shape[1] if operand.shape[0] == p else operand.shape[0]
  if p <= q:  # operand is w, (P, Q)
    tn = (((0,), (0,)), ((), ()))
    out = lax.dot_general(lax.optimization_barrier(a2.T), operand, tn, precision=precision,
                          preferred_element_type=acc)
  else:  # operand is wᵀ, (Q, P)
    nt = (((1,), (1,)), ((), ()))
    out = lax.optimization_barrier(
        lax.dot_general(operand, a2, nt, precision=precision, preferred_element_type=acc)).T
  return out.astype(a.dtype).reshape(*a.shape[:-1], q)


def _cols(x, stride, pads, taps):
  """im2col of the folded ``x``: (B, gy, gx, ah*aw*s*s*C)."""
  folded = _fold(x, stride, pads)
  grid = (folded.shape[1] - taps[0] + 1, folded.shape[2] - taps[1] + 1)
  return _windows(folded, taps, grid)


def _tangent_in_chunks(slice_tangent, chunks, x, dx):
  """``slice_tangent(x, dx)`` over batch slices, ``dx`` None for a zero input tangent;
  checkpointed, so its transpose recomputes what it needs of ``x`` slice by slice."""
  if dx is None:
    return _in_chunks(jax.checkpoint(lambda x: slice_tangent(x, None)), chunks, x)
  return _in_chunks(jax.checkpoint(slice_tangent), chunks, x, dx)


def _sum(terms):
  return functools.reduce(operator.add, terms)


# conv2d: y = im2col(fold(x)) @ K. The kernel is passed as kt = K.T, (O, ah*aw*I).


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv_core(x, kt, geometry):
  stride, pads, taps, chunks, precision = geometry
  return _in_chunks(lambda x: _matmul_nt(_cols(x, stride, pads, taps), kt, precision),
                    chunks, x)


@functools.partial(_conv_core.defjvp, symbolic_zeros=True)
def _conv_core_jvp(geometry, primals, tangents):
  (x, kt), (dx, dkt) = primals, tangents
  stride, pads, taps, chunks, precision = geometry
  dx = None if _is_zero(dx) else dx
  dw = None if _is_zero(dkt) else _kernel_operand(dkt.T)  # w: (ah*aw*I, O)

  def slice_tangent(x, dx):
    terms = [] if dx is None else [_matmul_nt(_cols(dx, stride, pads, taps), kt, precision)]
    if dw is not None:
      terms.append(_matmul_transposable(_cols(x, stride, pads, taps), dw, precision))
    return _sum(terms)

  return _conv_core(x, kt, geometry), _tangent_in_chunks(slice_tangent, chunks, x, dx)


# conv_transpose2d: y = unfold(col2im(x @ K.T)), the adjoint of the above in x; again
# kt = K.T, here (Cin, ah*aw*s*s*Cout). Its tangent sums both products before the one
# col2im, so the transpose takes one im2col of the output gradient for both gradients.


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv_transpose_core(x, kt, geometry):
  stride, pads, taps, chunks, precision = geometry
  return _in_chunks(lambda x: _unfold(_col2im(_matmul(x, kt, precision), taps), stride, pads),
                    chunks, x)


@functools.partial(_conv_transpose_core.defjvp, symbolic_zeros=True)
def _conv_transpose_core_jvp(geometry, primals, tangents):
  (x, kt), (dx, dkt) = primals, tangents
  stride, pads, taps, chunks, precision = geometry
  dx = None if _is_zero(dx) else dx
  dw = None if _is_zero(dkt) else _kernel_operand(dkt)  # w: (Cin, ah*aw*s*s*Cout)

  def slice_tangent(x, dx):
    terms = [] if dx is None else [_matmul(dx, kt, precision)]
    if dw is not None:
      terms.append(_matmul_transposable(x, dw, precision))
    return _unfold(_col2im(_sum(terms), taps), stride, pads)

  return _conv_transpose_core(x, kt, geometry), _tangent_in_chunks(slice_tangent, chunks, x, dx)
