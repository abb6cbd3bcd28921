"""`sagan_jax.ops.upsample_convolution`: the phase-decomposed conv of a 2x-upsampled input.

Checked against PyTorch in float64 (``F.interpolate(scale_factor=2)`` then ``F.conv2d``,
the ResNet generator's source form), value and both gradients, with an error bound derived
per element rather than a fixed tolerance:

The float32 result is a sum of ``n`` products computed in some order; each product and each
addition rounds once (relative ``u = 2**-24``), and the phase kernel's tap sums
(``K1 + K2``) add one more rounding per term. The standard bound for a recursively summed
dot product is ``|computed - exact| <= gamma_{n+1} * sum |terms|`` with ``gamma_m = m·u /
(1 - m·u)``, where ``sum |terms|`` is the same computation on absolute values (for the
value: the float64 convolution of ``up(|x|)`` with ``|K|``; for the gradients: the
gradients of ``sum(conv(up(x), K) · r)`` taken with ``|x|``, ``|K|``, ``|r|``). ``n`` is the
longest sum each quantity has: value ``kh·kw·Cin``; input gradient: each low-res input feeds
4 upsampled copies × ``kh·kw`` taps × ``Cout``; kernel gradient: ``B·H_out·W_out`` output
positions. A wrong tap or phase is off by O(1), orders of magnitude above the bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.ops import conv2d
from sagan_jax.ops.upsample_convolution import upsample_conv2d, upsample_nearest_2x
from tests.parity import assert_conv_within_summation_bound

# (input (H, W, Cin), Cout, kernel (kh, kw), padding): the generator's 3x3 pad-1 conv first,
# then geometries where a phase crops the input or pads beyond a tap; the last (odd output)
# falls back to upsample + conv2d.
CASES = [
    ((4, 4, 5), 6, (3, 3), 1),
    ((5, 3, 2), 3, (3, 3), 0),
    ((4, 4, 2), 3, (5, 5), 2),
    ((4, 6, 3), 2, (2, 3), ((0, 1), (2, 2))),
    ((3, 4, 2), 2, (3, 3), 3),
    ((4, 4, 2), 3, (4, 4), 1),
]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("implementation", ["auto", "gemm"])
def test_matches_torch_float64_within_the_summation_bound(case, implementation):
  torch = pytest.importorskip("torch")
  (h, w, cin), cout, (kh, kw), padding = case
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (2, h, w, cin)).astype(np.float32)
  kernel = (0.3 * rng.standard_normal((kh, kw, cin, cout))).astype(np.float32)
  fn = lambda x, k: upsample_conv2d(x, k, padding=padding,  # noqa: E731
                                    implementation=implementation)
  y, vjp = jax.vjp(fn, x, kernel)
  r = rng.uniform(-1, 1, y.shape).astype(np.float32)
  dx, dk = vjp(r)

  pads = ((padding, padding),) * 2 if isinstance(padding, int) else padding
  functional = torch.nn.functional

  def source_form(x, k):  # the generator's: upsample, pad, convolve
    up = functional.interpolate(x, scale_factor=2, mode="nearest")
    return functional.conv2d(functional.pad(up, (*pads[1], *pads[0])), k)

  lengths = (kh * kw * cin, 4 * kh * kw * cout, y.shape[0] * y.shape[1] * y.shape[2])
  assert_conv_within_summation_bound(source_form, x, kernel, r, (y, dx, dk), lengths)


def test_upsampled_conv_layer_is_the_upsample_then_conv():
  # The layer option the generator uses is the same function (float32 rounding apart).
  from sagan_jax.layers import Conv  # pylint: disable=import-outside-toplevel
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  fused = Conv(5, 3, padding=1, upsample=True)
  plain = Conv(5, 3, padding=1)
  params = fused.init(jax.random.key(1), x)
  want = plain.apply(params, upsample_nearest_2x(x))
  got = fused.apply(params, x)
  # 27 products of O(1) values: gamma_28 * 27 * max|x| |k| is ~1e-5; 1e-5 absolute.
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5)
  with pytest.raises(ValueError, match="stride 1"):
    Conv(5, 3, 2, padding=1, upsample=True).init(jax.random.key(1), x)


def test_fewer_flops_than_the_upsampled_conv():
  # The point of the decomposition, counted by XLA: 3x3 on 2n x 2n vs four 2x2 on n x n.
  x = jnp.ones((2, 8, 8, 16))
  k = jnp.ones((3, 3, 16, 16))

  def flops(fn):
    cost = jax.jit(fn).lower(x, k).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return cost["flops"]

  fused = flops(lambda x, k: upsample_conv2d(x, k, padding=1, implementation="xla"))
  plain = flops(lambda x, k: conv2d(upsample_nearest_2x(x), k, padding=1, implementation="xla"))
  assert fused < plain / 2
