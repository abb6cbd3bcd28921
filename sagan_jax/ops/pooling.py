"""PyTorch's 2×2 stride-2 pools on NHWC maps, bit for bit: ``max_pool_2x2``, ``avg_pool_2x2``.

``max_pool_2x2`` is the 2×2 stride-2 max-pool of the official SAGAN attention's sources.
It scans each window as PyTorch's kernel does — row by row, ``(0,0) (0,1) (1,0) (1,1)``, a
later element taking over when it is strictly greater or NaN — so ties go to the first
maximum, a NaN wins (the last one), and ``-0.0`` before ``+0.0`` stays ``-0.0``; the
derivative routes each output's tangent to the element chosen, as PyTorch's backward does.
An odd last row or column is dropped (PyTorch's floor).

Why not ``flax.linen.max_pool``: that is a ``reduce_window`` whose derivative XLA computes
with a variadic (value, index) ``reduce_window`` and an index ``iota`` as large as the input.
On the 32-px ResNet SAGAN step on CPU those were ~20 ms of ~380 ms of CPU time; here the
pool is elementwise selects over four strided views, which XLA fuses with their neighbours.
Its tie-breaking is not specified; this one is PyTorch's.

``avg_pool_2x2`` is ``nn.AvgPool2d(2)`` of the ResNet discriminator's blocks, summed in
PyTorch's order, ``((x00 + x01) + x10) + x11``, then divided by 4. Not ``reshape(...).mean``:
XLA:CPU hands that reduction over two non-adjacent axes to YNNPACK, which took 32 ms of the
32-px step's CPU time for one [64, 32, 32, 32] map (the four adds: one elementwise fusion).

Both pools' tangents are sums over each window (of the chosen element, for the max), so that
the backward pass JAX derives from them is one broadcast over the windows: the transpose of
four strided views would be four zero-filled, input-sized pads and three adds. The 32-px
step, both forms in one process: 350 → 333 ms (benchmarks/README.md). Reverse-mode values are
unchanged, each input's gradient being one output's (or a quarter of it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _windows(x: jax.Array) -> jax.Array:
  """(B, H, W, C) → (B, H/2, 2, W/2, 2, C): each 2×2 window on axes 2 and 4 (odd edge dropped)."""
  b, h, w, c = x.shape
  return x[:, :h - h % 2, :w - w % 2].reshape(b, h // 2, 2, w // 2, 2, c)


def _window_elements(x: jax.Array) -> list[jax.Array]:
  """The four elements of each 2×2 window in PyTorch's scan order, each (B, H/2, W/2, C)."""
  windows = _windows(x)
  return [windows[:, :, row, :, col] for row in (0, 1) for col in (0, 1)]


def _sum_windows(windows: jax.Array) -> jax.Array:
  # For tangents only (why: the module docstring); the primal keeps PyTorch's order.
  return jnp.sum(windows, axis=(2, 4))


def avg_pool_2x2(x: jax.Array) -> jax.Array:
  """``F.avg_pool2d(x, 2)`` for NHWC ``x``: (B, H, W, C) → (B, H // 2, W // 2, C)."""
  _check_shape("avg_pool_2x2", x)
  return _avg_pool(x)


@jax.custom_jvp
def _avg_pool(x: jax.Array) -> jax.Array:
  top_left, top_right, bottom_left, bottom_right = _window_elements(x)
  return (((top_left + top_right) + bottom_left) + bottom_right) / 4


@_avg_pool.defjvp
def _avg_pool_jvp(primals, tangents):
  (x,), (x_dot,) = primals, tangents
  return _avg_pool(x), _sum_windows(_windows(x_dot)) / 4


def _check_shape(name: str, x: jax.Array) -> None:
  if x.ndim != 4 or x.shape[1] < 2 or x.shape[2] < 2:
    raise ValueError(f"{name}: x must be NHWC with H, W >= 2, got shape {x.shape}")


def _pool_with_choice(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(max, which of the four elements PyTorch picks), by PyTorch's sequential scan."""
  first, *rest = _window_elements(x)
  best, choice = first, jnp.zeros(first.shape, jnp.int8)
  for position, element in enumerate(rest, start=1):
    takes_over = (element > best) | jnp.isnan(element)
    best = jnp.where(takes_over, element, best)
    choice = jnp.where(takes_over, jnp.int8(position), choice)
  return best, choice


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """``F.max_pool2d(x, 2)`` for NHWC ``x``: (B, H, W, C) → (B, H // 2, W // 2, C)."""
  _check_shape("max_pool_2x2", x)
  return _max_pool(x)


@jax.custom_jvp
def _max_pool(x: jax.Array) -> jax.Array:
  return _pool_with_choice(x)[0]


@_max_pool.defjvp
def _max_pool_jvp(primals, tangents):
  (x,), (x_dot,) = primals, tangents
  pooled, choice = _pool_with_choice(x)
  # Linear in x_dot: the chosen element of each window, as a masked window sum.
  position = jnp.arange(4, dtype=choice.dtype).reshape(1, 1, 2, 1, 2, 1)  # scan order in a window
  chosen = choice[:, :, None, :, None, :] == position
  return pooled, _sum_windows(jnp.where(chosen, _windows(x_dot), 0))
