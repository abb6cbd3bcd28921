"""A stride-1 convolution followed by a 2×2 average pool, as one stride-2 convolution.

``conv2d_avg_pool_2x2(x, kernel, padding=p)`` computes
``avg_pool_2x2(conv2d(x, kernel, padding=p))`` (PyTorch's ``nn.Conv2d`` then
``nn.AvgPool2d(2)``, the ResNet discriminator block's downsampling).

Why it is exact. With ``y[p] = Σ_u K[u] xp[p + u]`` per spatial dimension and the pool
``y'[i] = ½ Σ_{d∈{0,1}} y[2i + d]`` (in 2-D the product of the two), ``y'[i] = Σ_a xp[2i + a]
K'[a]`` with ``K'[a] = ½ Σ_d K[a - d]`` (``K`` zero outside its taps): a stride-2 convolution of
the same padded input with the kernel's 2×2 box sum over 4, ``(kh + 1) × (kw + 1)`` taps. Its
output size ``⌊(P - kh - 1) / 2⌋ + 1`` is ``⌊n / 2⌋`` for the stride-1 output size ``n = P -
kh + 1``, the pool's floor. Only the order of float32 additions differs (and the box sum's
rounding, in float32 or wider), the same function up to rounding as the tests bound it.

Why: a 3×3 kernel reads 9 taps at every position, then the pool averages; the stride-2 4×4
kernel reads 16 taps at a quarter of the positions, 2.25× fewer FLOPs, and the pool's pass
over the full-resolution map is gone. Measured on CPU (benchmarks/README.md), forward and
both gradients, against the stride-1 convolution (``auto``) then `avg_pool_2x2`: 32² 32→32 at
batch 64 42.8 → 26.0 ms, 128² 64→64 at batch 8 228 → 169 ms, 64² 64→128 103 → 50 ms; on
pooled maps of 8×8 it lost (16² 32→32: 7.0 vs 7.9 ms; 16² 256→512 at batch 8: 59 vs 96 ms),
and in the whole 32-px step its 32² 32→32 layer's gain vanished (356 vs 359 ms), while the
128-px step went 6,966 → 6,375 ms. So on CPU the fused form is taken for pooled maps of at
least `_CPU_MIN_POOLED_POSITIONS` with at least `_CPU_MIN_CHANNEL_PRODUCT` channels in × out.
On GPU/TPU it is not taken: unmeasured there, and cuDNN's Winograd 3×3 convolutions stand
against the FLOP saving.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from sagan_jax.ops.convolution import Padding, PrecisionLike, conv2d, conv_padding
from sagan_jax.ops.pooling import avg_pool_2x2

# On CPU: pooled outputs of 16×16 and larger, 64 channels in and out or more (see the
# module docstring's numbers).
_CPU_MIN_POOLED_POSITIONS = 256
_CPU_MIN_CHANNEL_PRODUCT = 64 * 64


def conv2d_avg_pool_2x2(x: jax.Array, kernel: jax.Array, *, padding: Padding = 0,
                        implementation: str = 'auto',
                        precision: PrecisionLike = None) -> jax.Array:
  """``avg_pool_2x2(conv2d(x, kernel, padding=padding))``, on CPU as one stride-2 conv.

  Args:
    x: ``(B, H, W, Cin)``.
    kernel: ``(kh, kw, Cin, Cout)`` (HWIO) of the stride-1 convolution.
    padding: of the stride-1 convolution, as ``conv2d`` takes it.
    implementation: the convolution op, as ``conv2d`` takes it (``'auto'``, ``'xla'``,
      ``'gemm'``).
    precision: as in ``conv2d``.

  Returns:
    ``(B, n_h // 2, n_w // 2, Cout)`` for the stride-1 convolution's output ``(n_h, n_w)``.
  """
  x, kernel = jnp.asarray(x), jnp.asarray(kernel)
  if x.ndim != 4 or kernel.ndim != 4:
    raise ValueError(f'conv2d_avg_pool_2x2: x must be NHWC and kernel HWIO (4-D), got '
                     f'shapes {tuple(x.shape)} and {tuple(kernel.shape)}.')
  (h, w), (kh, kw) = x.shape[1:3], kernel.shape[:2]
  pads = conv_padding(padding, (h, w), (kh, kw), (1, 1))

  def plain(x, kernel):
    return avg_pool_2x2(conv2d(x, kernel, padding=pads, implementation=implementation,
                               precision=precision))

  out = [n + lo + hi - k + 1 for n, k, (lo, hi) in zip((h, w), (kh, kw), pads)]
  if (min(out) < 2 or (out[0] // 2) * (out[1] // 2) < _CPU_MIN_POOLED_POSITIONS
      or kernel.shape[2] * kernel.shape[3] < _CPU_MIN_CHANNEL_PRODUCT):
    return plain(x, kernel)  # (and conv2d/avg_pool_2x2 report bad shapes in one line)

  def fused(x, kernel):
    return conv2d(x, _box_kernel(kernel), stride=2, padding=pads,
                  implementation=implementation, precision=precision)

  # Chosen when lowered, as conv2d's 'auto' is: one jitted function, each backend its form.
  return lax.platform_dependent(x, kernel, cpu=fused, default=plain)


def _box_kernel(kernel: jax.Array) -> jax.Array:
  """``K'[a, b] = (K[a, b] + K[a, b-1] + K[a-1, b] + K[a-1, b-1]) / 4``, (kh+1, kw+1) taps;
  summed in float32 at least and rounded once to the kernel's dtype (bfloat16 too)."""
  wide = kernel.astype(jnp.promote_types(kernel.dtype, jnp.float32))
  shifted = [jnp.pad(wide, ((top, 1 - top), (left, 1 - left), (0, 0), (0, 0)))
             for top in (0, 1) for left in (0, 1)]
  return ((((shifted[0] + shifted[1]) + shifted[2]) + shifted[3]) / 4).astype(kernel.dtype)
