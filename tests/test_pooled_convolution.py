"""`sagan_jax.ops.pooled_convolution`: conv3×3 then 2×2 average pool as one stride-2 conv.

Checked against PyTorch in float64 (``F.conv2d`` then ``F.avg_pool2d(2)``, the ResNet
discriminator block's source form), value and both gradients, with a bound derived per
element, as tests/test_upsample_convolution.py derives it: the float32 result is a sum of
``n`` products, each product and addition rounding once (``u = 2**-24``), so ``|computed -
exact| <= gamma_{n+1} * sum |terms|`` with ``sum |terms|`` the same float64 computation on
absolute values. The fused kernel's taps are 2×2 box sums of the kernel over 4 (three
additions and an exact division: ``+ 3`` terms in ``n``). ``n`` per quantity: value
``(kh+1)(kw+1)·Cin``; input gradient: each input element feeds ``(kh+1)(kw+1)`` taps ×
``Cout``; kernel gradient: ``B·H_out·W_out`` positions per fused tap, then the box's
transpose adds 4 taps. A wrong tap, phase or pad is off by O(1), far above the bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.layers import Conv
from sagan_jax.ops import pooled_convolution
from sagan_jax.ops.convolution import conv2d
from sagan_jax.ops.pooled_convolution import conv2d_avg_pool_2x2
from sagan_jax.ops.pooling import avg_pool_2x2
from tests.parity import assert_conv_within_summation_bound

# (input (H, W, Cin), Cout, kernel (kh, kw), padding): the block's 3×3 pad-1 first, then an
# odd stride-1 output (the pool's floor drops a row), no padding, a 1×1 and a 2×3 kernel.
CASES = [
    ((8, 8, 5), 6, (3, 3), 1),
    ((7, 6, 3), 4, (3, 3), 1),
    ((8, 9, 2), 3, (3, 3), 0),
    ((6, 6, 3), 2, (1, 1), 0),
    ((6, 8, 2), 3, (2, 3), ((1, 0), (1, 1))),
]


@pytest.fixture
def always_fused(monkeypatch):
  """The fused form on every geometry (on CPU it is chosen for large maps only)."""
  monkeypatch.setattr(pooled_convolution, "_CPU_MIN_POOLED_POSITIONS", 1)
  monkeypatch.setattr(pooled_convolution, "_CPU_MIN_CHANNEL_PRODUCT", 1)


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("implementation", ["auto", "xla"])
def test_matches_torch_float64_within_the_summation_bound(case, implementation, always_fused):
  torch = pytest.importorskip("torch")
  (h, w, cin), cout, (kh, kw), padding = case
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (2, h, w, cin)).astype(np.float32)
  kernel = (0.3 * rng.standard_normal((kh, kw, cin, cout))).astype(np.float32)
  fn = lambda x, k: conv2d_avg_pool_2x2(x, k, padding=padding,  # noqa: E731
                                        implementation=implementation)
  y, vjp = jax.vjp(fn, x, kernel)
  r = rng.uniform(-1, 1, y.shape).astype(np.float32)
  dx, dk = vjp(r)
  pads = ((padding, padding),) * 2 if isinstance(padding, int) else padding
  functional = torch.nn.functional

  def source_form(x, k):  # the discriminator block's: pad, convolve, average-pool
    return functional.avg_pool2d(functional.conv2d(functional.pad(x, (*pads[1], *pads[0])), k), 2)

  taps = (kh + 1) * (kw + 1)
  lengths = (taps * cin + 3, taps * cout + 3, y.shape[0] * y.shape[1] * y.shape[2] + 3)
  assert_conv_within_summation_bound(source_form, x, kernel, r, (y, dx, dk), lengths)


def _stride_two_convolutions(fn, *args, platform="cpu") -> int:
  text = jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text()
  return text.count("stride = [2, 2]")


def test_cpu_fuses_large_maps_only_and_other_platforms_never():
  pool_after_xla_conv = lambda x, k: conv2d_avg_pool_2x2(x, k, padding=1,  # noqa: E731
                                                         implementation="xla")
  large = (jnp.ones((1, 32, 32, 64)), jnp.ones((3, 3, 64, 64)))  # pooled 16², 64 → 64
  assert _stride_two_convolutions(pool_after_xla_conv, *large) == 1
  assert _stride_two_convolutions(pool_after_xla_conv, *large, platform="cuda") == 0
  small_map = (jnp.ones((1, 16, 16, 64)), jnp.ones((3, 3, 64, 64)))  # pooled 8²
  few_channels = (jnp.ones((1, 32, 32, 32)), jnp.ones((3, 3, 32, 32)))
  for args in (small_map, few_channels):
    assert _stride_two_convolutions(pool_after_xla_conv, *args) == 0


def test_downsampled_conv_layer_is_the_conv_then_pool(always_fused):
  # The layer option the discriminator uses: same parameter, same function up to rounding.
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  fused = Conv(5, 3, padding=1, downsample=True)
  plain = Conv(5, 3, padding=1)
  params = fused.init(jax.random.key(1), x)
  want = avg_pool_2x2(plain.apply(params, x))
  got = fused.apply(params, x)
  # 48 products of O(1) values (16 taps x 3 channels) and a bias: gamma_52 * 48 * max|x| |k|
  # is ~1e-5 here; 1e-5 absolute.
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5)
  with pytest.raises(ValueError, match="stride 1"):
    Conv(5, 3, 2, padding=1, downsample=True).init(jax.random.key(1), x)
  with pytest.raises(ValueError, match="choose one"):
    Conv(5, 3, padding=1, upsample=True, downsample=True).init(jax.random.key(1), x)


def test_fewer_flops_than_the_conv_then_pool(always_fused):
  # The point of the rewrite, counted by XLA: 3x3 on n x n vs 4x4 on the n/2 x n/2 outputs.
  x, k = jnp.ones((2, 16, 16, 16)), jnp.ones((3, 3, 16, 16))

  def flops(fn):
    cost = jax.jit(fn).lower(x, k).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return cost["flops"]

  fused = flops(lambda x, k: conv2d_avg_pool_2x2(x, k, padding=1, implementation="xla"))
  plain = flops(lambda x, k: avg_pool_2x2(conv2d(x, k, padding=1, implementation="xla")))
  assert fused < plain / 2


def test_bad_operands_are_one_clear_error():
  with pytest.raises(ValueError, match="must be NHWC and kernel HWIO"):
    conv2d_avg_pool_2x2(jnp.ones((8, 8, 3)), jnp.ones((3, 3, 3, 4)))
