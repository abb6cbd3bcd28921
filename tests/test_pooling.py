"""`sagan_jax.ops.pooling`: PyTorch's 2×2 pools, bit for bit, value and gradient.

Neither pool rounds differently from PyTorch's CPU kernels: the max-pool only selects, and the
average-pool adds its four elements in PyTorch's order and divides by 4 (exact), its gradient
being each output's cotangent divided by 4 (exact) and placed once. So every comparison here
is ``array_equal`` (NaNs equal, and the sign of zero checked), against a loop that follows
PyTorch's kernel (always) and against PyTorch itself (where importable).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.ops.pooling import avg_pool_2x2, max_pool_2x2


def _map_with_ties(shape=(3, 7, 6, 5)) -> np.ndarray:
  """Random NHWC values with windows that tie, hold signed zeros, or hold NaNs; odd H."""
  x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  x[0, 0:2, 0:2, 0] = 1.5                         # four-way tie
  x[0, 2:4, 2:4, 1] = [[0.0, 2.0], [2.0, -1.0]]   # tie between (0,1) and (1,0)
  x[1, 0:2, 0:2, 2] = [[-0.0, 0.0], [-1.0, -2.0]]  # -0.0 first, +0.0 not greater
  x[1, 2:4, 0:2, 3] = [[np.nan, 3.0], [np.nan, 1.0]]  # two NaNs: the last one wins
  x[2, 4:6, 4:6, 4] = [[5.0, np.nan], [7.0, 1.0]]    # a NaN after the running max
  return x


def _torch_scan_max_pool(x: np.ndarray):
  """PyTorch's CPU max-pool kernel, per window: scan row-major, take over on ``>`` or NaN.
  Returns the pooled map and, per output, the flat (row, col) offset chosen."""
  b, h, w, c = x.shape
  pooled = np.empty((b, h // 2, w // 2, c), x.dtype)
  chosen = np.empty(pooled.shape, np.int64)
  for index in np.ndindex(pooled.shape):
    n, i, j, k = index
    best, best_at = None, None
    for at, (di, dj) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
      value = x[n, 2 * i + di, 2 * j + dj, k]
      if best is None or value > best or np.isnan(value):
        best, best_at = value, at
    pooled[index], chosen[index] = best, best_at
  return pooled, chosen


def _scatter_to_choice(cotangent: np.ndarray, chosen: np.ndarray, shape) -> np.ndarray:
  grad = np.zeros(shape, cotangent.dtype)
  for index in np.ndindex(cotangent.shape):
    n, i, j, k = index
    di, dj = divmod(int(chosen[index]), 2)
    grad[n, 2 * i + di, 2 * j + dj, k] = cotangent[index]
  return grad


def _assert_identical(actual, expected):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape
  np.testing.assert_array_equal(actual, expected)  # NaNs compare equal here
  np.testing.assert_array_equal(np.signbit(actual), np.signbit(expected))


def test_max_pool_scans_each_window_as_pytorch_does():
  x = _map_with_ties()
  cotangent = np.random.default_rng(1).standard_normal((3, 3, 3, 5)).astype(np.float32)
  pooled, vjp = jax.vjp(max_pool_2x2, jnp.asarray(x))
  (grad,) = vjp(jnp.asarray(cotangent))
  want, chosen = _torch_scan_max_pool(x)
  _assert_identical(pooled, want)
  _assert_identical(grad, _scatter_to_choice(cotangent, chosen, x.shape))
  assert np.signbit(np.asarray(pooled)[1, 0, 0, 2])  # the window's -0.0 came first


def test_max_pool_forward_mode_selects_the_same_element():
  x = _map_with_ties()
  tangent = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
  _, pooled_dot = jax.jvp(max_pool_2x2, (jnp.asarray(x),), (jnp.asarray(tangent),))
  _, chosen = _torch_scan_max_pool(x)
  rows, cols = np.divmod(chosen, 2)
  n, i, j, k = np.indices(chosen.shape)
  _assert_identical(pooled_dot, tangent[n, 2 * i + rows, 2 * j + cols, k])


def test_avg_pool_adds_in_pytorchs_order():
  x = np.random.default_rng(3).standard_normal((2, 6, 5, 4)).astype(np.float32) * 1e3
  cotangent = np.random.default_rng(4).standard_normal((2, 3, 2, 4)).astype(np.float32)
  pooled, vjp = jax.vjp(avg_pool_2x2, jnp.asarray(x))
  (grad,) = vjp(jnp.asarray(cotangent))
  w = x[:, :6, :4]
  want = (((w[:, 0::2, 0::2] + w[:, 0::2, 1::2]) + w[:, 1::2, 0::2]) + w[:, 1::2, 1::2]) / 4
  _assert_identical(pooled, want)
  want_grad = np.zeros_like(x)
  for di in (0, 1):
    for dj in (0, 1):
      want_grad[:, di:6:2, dj:4:2] = cotangent / 4
  _assert_identical(grad, want_grad)


@pytest.mark.parametrize("pool, torch_name", [(max_pool_2x2, "max_pool2d"),
                                              (avg_pool_2x2, "avg_pool2d")])
def test_pools_match_torch_bit_for_bit(pool, torch_name):
  torch = pytest.importorskip("torch")
  x = _map_with_ties()
  if pool is avg_pool_2x2:
    x = np.nan_to_num(x)  # a NaN poisons its whole window there; nothing to compare
  cotangent = np.random.default_rng(5).standard_normal((3, 3, 3, 5)).astype(np.float32)
  pooled, vjp = jax.vjp(pool, jnp.asarray(x))
  (grad,) = vjp(jnp.asarray(cotangent))
  x_torch = torch.tensor(x).permute(0, 3, 1, 2).requires_grad_()
  y_torch = getattr(torch.nn.functional, torch_name)(x_torch, 2)
  y_torch.backward(torch.tensor(cotangent).permute(0, 3, 1, 2))
  _assert_identical(pooled, y_torch.detach().permute(0, 2, 3, 1).numpy())
  _assert_identical(grad, x_torch.grad.permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("pool", [max_pool_2x2, avg_pool_2x2])
def test_gradients_compile_without_a_window_reduction_or_pads(pool):
  """The reason these exist: XLA's reduce-window (and its (value, index) derivative) and the
  reshape-mean's two-axis reduction are the slow forms on CPU; and the backward is one
  broadcast over the windows, not the four zero-filled pads that transposing four strided
  views gives."""
  x = jnp.ones((2, 8, 8, 3))
  text = jax.jit(jax.grad(lambda x: jnp.sum(pool(x) ** 2))).lower(x).as_text()
  # (The loss's own sum needs no reduction under grad: its derivative is a broadcast.)
  assert re.findall(r"stablehlo\.(reduce\w*|select_and_\w+|pad)\b", text) == []


@pytest.mark.parametrize("pool", [max_pool_2x2, avg_pool_2x2])
@pytest.mark.parametrize("shape", [(4, 4, 3), (2, 1, 4, 3), (2, 4, 1, 3)])
def test_bad_shapes_are_one_clear_error(pool, shape):
  with pytest.raises(ValueError, match=r"must be NHWC with H, W >= 2, got shape"):
    pool(jnp.zeros(shape))
