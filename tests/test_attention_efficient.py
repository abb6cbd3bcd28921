"""The memory-efficient attention path (blocks of images × query rows, custom JVP) against the
materialized one: values and gradients (≤ 1e-5, scaled as in tests/parity.py),
dtypes, and the compiled memory (a deterministic size, not a time)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.layers import SelfAttention, attend
from sagan_jax.ops import attention as attention_lib
from tests.parity import assert_close, assert_tree_close


def _normal(rng, shape, scale=1.0, dtype=jnp.float32):
  # NumPy draws: eager jax.random ops would each cost a compile.
  return jnp.asarray((scale * rng.standard_normal(shape)).astype(np.float32), dtype)


def _inputs(batch, num_queries, num_keys, depth, value_depth, dtype=jnp.float32, seed=0,
            qk_scale=1.0):
  rng = np.random.default_rng(seed)
  q = _normal(rng, (batch, num_queries, depth), qk_scale, dtype)
  k = _normal(rng, (batch, num_keys, depth), qk_scale, dtype)
  v = _normal(rng, (batch, num_keys, value_depth), dtype=dtype)
  r = _normal(rng, (batch, num_queries, value_depth), dtype=dtype)
  return q, k, v, r


def _value_and_grads(fn, q, k, v, r):
  """(out, dq, dk, dv) of L = Σ fn(q, k, v)·r, jitted."""

  @jax.jit
  def run(q, k, v, r):
    out, vjp = jax.vjp(fn, q, k, v)
    return (out,) + vjp(r.astype(out.dtype))

  return run(q, k, v, r)


MATERIALIZED = functools.partial(attend, chunk_size=None)


@pytest.mark.parametrize("batch, num_queries, num_keys, depth, value_depth, chunk_size", [
    (3, 300, 300, 8, 64, 64),  # 300 = 5·60: balanced chunks; v wider than q/k
    (2, 300, 75, 8, 24, 13),   # pooled sources (Nk = Nq/4); 24 chunks of 13: 12 padded
], ids=["batch3", "pooled_tiny_chunks"])
def test_chunked_equals_materialized_values_and_grads(batch, num_queries, num_keys, depth,
                                                      value_depth, chunk_size):
  q, k, v, r = _inputs(batch, num_queries, num_keys, depth, value_depth)
  chunked = functools.partial(attention_lib._attend_chunked, chunk_size=chunk_size)
  got = _value_and_grads(chunked, q, k, v, r)
  want = _value_and_grads(MATERIALIZED, q, k, v, r)
  for g, w, what in zip(got, want, ("out", "dq", "dk", "dv")):
    assert g.shape == w.shape and g.dtype == w.dtype, what
    assert_close(g, w, what=what)


def _jaxpr(**kwargs) -> str:
  args = [jax.ShapeDtypeStruct((2, 100, d), jnp.float32) for d in (8, 8, 16)]
  return str(jax.make_jaxpr(functools.partial(attend, **kwargs))(*args)).replace(" ", "")


def test_attend_routes_to_the_chunked_path_only_when_it_should():
  # Not set, or one block holds all scores (2 images × 100 × 100): materialized.
  for chunk_size in (None, 100, 1000):
    jaxpr = _jaxpr(chunk_size=chunk_size)
    assert "custom_jvp" not in jaxpr and "100,100" in jaxpr, chunk_size
  jaxpr = _jaxpr(chunk_size=33)
  assert "custom_jvp" in jaxpr and "100,100" not in jaxpr  # no N×N array anywhere
  assert "100,100" in _jaxpr(chunk_size=33, return_weights=True)  # maps need the matrix


def test_second_order_reverse_mode_matches():
  """Gradient penalties differentiate a gradient: reverse over reverse works."""
  q, k, v, r = _inputs(2, 40, 40, 8, 16, qk_scale=0.5)  # ≈ logits at init; see below

  def penalty(fn, q, k, v):
    grads = jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v) * r), argnums=(0, 1, 2))(q, k, v)
    return sum(jnp.sum(g ** 2) for g in grads)

  chunked = functools.partial(attend, chunk_size=16)  # 3 chunks of 14: two padded rows
  got = jax.jit(jax.grad(functools.partial(penalty, chunked), argnums=(0, 1, 2)))(q, k, v)
  want = jax.jit(jax.grad(functools.partial(penalty, MATERIALIZED), argnums=(0, 1, 2)))(q, k, v)
  # Second derivatives compound float32 rounding: with unit-normal q, k (sharp
  # softmax) both paths differ from each other by ~1e-4 relative; at this scale
  # they agree to 1e-5 like the first derivatives.
  for g, w, what in zip(got, want, "qkv"):
    assert_close(g, w, what=f"d(penalty)/d{what}")


def test_vmap_over_an_extra_axis():
  q, k, v, _ = _inputs(2, 40, 40, 8, 16)
  stack = lambda t: jnp.stack([t, 2 * t])
  got = jax.vmap(functools.partial(attend, chunk_size=16))(stack(q), stack(k), stack(v))
  want = jax.vmap(MATERIALIZED)(stack(q), stack(k), stack(v))
  assert_close(got, want, what="vmapped out")


@pytest.mark.parametrize("given", ["qkv", "q", "k", "v", "kv"])
def test_forward_mode_matches_the_materialized_path(given):
  """jvp through the blocked path (any subset of tangents; the others symbolic zeros)."""
  q, k, v, _ = _inputs(2, 40, 30, 8, 16)
  rng = np.random.default_rng(1)
  primals = (q, k, v)
  tangents = tuple(_normal(rng, t.shape) if name in given else jnp.zeros_like(t)
                   for name, t in zip("qkv", primals))
  blocked = functools.partial(attention_lib._attend_chunked, chunk_size=16)  # 3 chunks, padded

  def jvp(fn, *args):
    # Arguments without a tangent are closed over, so their tangent is a symbolic zero.
    def partial_fn(*moving):
      full = dict(zip("qkv", primals)) | dict(zip(given, moving))
      return fn(*(full[name] for name in "qkv"))
    moving = [t for name, t in zip("qkv", args[:3]) if name in given]
    moving_dots = [t for name, t in zip("qkv", args[3:]) if name in given]
    return jax.jvp(partial_fn, moving, moving_dots)

  got = jax.jit(functools.partial(jvp, blocked))(*primals, *tangents)
  want = jax.jit(functools.partial(jvp, MATERIALIZED))(*primals, *tangents)
  assert_tree_close(got, want, what=f"jvp in {given}")


def test_jacfwd_linearize_and_forward_over_reverse_match():
  q, k, v, r = _inputs(1, 24, 24, 4, 6, qk_scale=0.5)
  blocked = functools.partial(attention_lib._attend_chunked, chunk_size=8)
  for name, transform in [
      ("jacfwd", lambda fn: jax.jacfwd(fn, argnums=(0, 1, 2))(q, k, v)),
      ("linearize", lambda fn: jax.linearize(fn, q, k, v)[1](r[..., :4], q, v)),
      ("hvp", lambda fn: jax.jvp(jax.grad(lambda *a: jnp.sum(fn(*a) * r), (0, 1, 2)),
                                 (q, k, v), (q, k, v))[1])]:
    assert_tree_close(jax.jit(lambda: transform(blocked))(),
                      jax.jit(lambda: transform(MATERIALIZED))(), what=name)


def test_bfloat16_runs_and_is_finite():
  q, k, v, r = _inputs(2, 100, 100, 8, 32, dtype=jnp.bfloat16)
  chunked = functools.partial(attend, chunk_size=32)
  got = _value_and_grads(chunked, q, k, v, r)
  for g, shape, what in zip(got, (r.shape, q.shape, k.shape, v.shape), ("out", "dq", "dk", "dv")):
    assert g.dtype == jnp.bfloat16 and g.shape == shape, what
    assert bool(jnp.all(jnp.isfinite(g))), what
  # Loosely the float32 values (bfloat16 keeps 8 bits of mantissa).
  q, k, v = (np.asarray(t, np.float32) for t in (q, k, v))
  logits = np.einsum("bqd,bkd->bqk", q, k)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  want = (weights / weights.sum(-1, keepdims=True)) @ v
  error = np.max(np.abs(np.asarray(got[0], np.float32) - want))
  assert error <= 0.05 * max(1.0, float(np.max(np.abs(want)))), error


def _compiled_temp_bytes(fn, *args) -> int:
  loss = lambda q, k, v, r: jnp.sum(fn(q, k, v) * r)
  compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).lower(*args).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_efficient_path_compiles_to_much_less_memory():
  """fwd+bwd temp buffers at N=2048 (one N×N float32 matrix is 16 MiB)."""
  args = [jax.ShapeDtypeStruct((1, 2048, d), jnp.float32) for d in (8, 8, 64, 64)]
  materialized = _compiled_temp_bytes(MATERIALIZED, *args)
  efficient = _compiled_temp_bytes(functools.partial(attend, chunk_size=128), *args)
  assert materialized >= 2048 * 2048 * 4  # it does hold the matrix
  assert efficient < 2048 * 2048 * 4 / 2  # not even half of one
  assert materialized / efficient >= 4, (materialized, efficient)


@pytest.mark.parametrize("batch, num_queries, num_keys, chunk_size", [
    (1, 4096, 4096, 1024), (64, 1024, 1024, 1024), (64, 256, 256, 1024), (61, 1024, 1024, 512),
    (1, 300, 75, 64), (2, 10, 10, 3),
])
def test_block_layout(batch, num_queries, num_keys, chunk_size):
  group, num_chunks, rows = attention_lib._block_layout(batch, num_queries, num_keys, chunk_size)
  assert 1 <= rows <= chunk_size
  assert num_chunks * rows >= num_queries > (num_chunks - 1) * rows
  assert num_chunks * rows - num_queries < num_chunks  # balanced: little padding
  assert batch % group == 0  # whole images per block, no padded images
  assert group * rows * num_keys <= max(attention_lib.CPU_BLOCKS.block_elements, rows * num_keys)


def test_blocks_span_several_images():
  """The chapter generator's 32×32 attention at batch 64: 2 images × 512 rows a block."""
  assert attention_lib._block_layout(64, 1024, 1024, 1024) == (2, 2, 512)
  q, k, v, r = _inputs(6, 40, 40, 8, 16)
  layout = attention_lib.BlockLayout(group=3, num_chunks=3, rows=14)  # 2 groups, padded rows
  blocked = functools.partial(attention_lib._attend_flash, layout=layout)
  got = _value_and_grads(blocked, q, k, v, r)
  want = _value_and_grads(MATERIALIZED, q, k, v, r)
  for g, w, what in zip(got, want, ("out", "dq", "dk", "dv")):
    assert_close(g, w, what=what)


def test_layer_with_small_chunks_equals_unchunked():
  rng = np.random.default_rng(0)
  x, r = _normal(rng, (2, 8, 6, 16)), _normal(rng, (2, 8, 6, 16))  # N = 48
  # Random parameters of the layer's shapes (no init run: it costs compiles).
  shapes = jax.eval_shape(SelfAttention().init, jax.random.key(1), x)["params"]
  params = jax.tree.map(lambda leaf: _normal(rng, leaf.shape, 0.3), shapes)

  def loss(chunk_size, params, x):
    y = SelfAttention(chunk_size=chunk_size).apply({"params": params}, x)
    return jnp.sum(y * r), y

  results = {}
  for chunk_size in (None, 20):  # 3 chunks of 16
    (_, y), grads = jax.jit(jax.value_and_grad(
        functools.partial(loss, chunk_size), argnums=(0, 1), has_aux=True))(params, x)
    results[chunk_size] = (y, grads)
  assert_close(results[20][0], results[None][0], what="y")
  assert_tree_close(results[20][1], results[None][1], what="grads (params, x)")


def test_block_size_is_chosen_per_platform_when_lowered():
  """The chapter generator's 32×32 attention at batch 64: blocked on CPU, one
  materialized (64, 1024, 1024) block where blocks are large (GPU/TPU)."""
  shapes = [jax.ShapeDtypeStruct((64, 1024, d), jnp.float32) for d in (8, 8, 64)]
  fn = jax.jit(functools.partial(attend, chunk_size=1024))
  full_scores = "64x1024x1024xf32"
  assert full_scores not in fn.lower(*shapes).as_text()  # this CPU: blocks
  try:
    exported = jax.export.export(fn, platforms=["cuda"])(*shapes)
  except Exception as error:  # pylint: disable=broad-except
    pytest.skip(f"cannot lower for cuda here: {error}")
  assert full_scores in exported.mlir_module()
