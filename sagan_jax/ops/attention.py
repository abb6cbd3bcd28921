"""Row-softmax attention without the N×N matrix: pure functions under ``jit``, ``grad``, ``vmap``.

``attend(q, k, v)`` is ``softmax(q kᵀ) v`` with no 1/√D scaling, as SAGAN
computes it. Given a ``chunk_size`` and no request for the weights, it runs
block by block — a few images × a few hundred query rows at a time — the
forward keeping only each row's max and sum of exp. Its derivative is a
``custom_jvp`` whose tangent JAX transposes into a flash-attention backward
(each block's softmax recomputed from those two numbers), so ``grad``,
``jvp``, ``jacfwd``, ``linearize`` and every higher order work, and no
(B, Nq, Nk) array exists in any pass. On CPU it is also faster than the
materialized path, because a block stays in cache. Block sizes depend on
the platform the computation is lowered for. Measurements behind these choices: ``benchmarks/README.md``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp


def attention_weights(queries: jax.Array, keys: jax.Array, precision=None) -> jax.Array:
  """``softmax(queries · keysᵀ)`` over the keys: (B, Nq, D), (B, Nk, D) → (B, Nq, Nk).

  No 1/√D scaling, as in SAGAN.
  """
  logits = jnp.einsum("bqd,bkd->bqk", queries, keys, precision=precision,
                      preferred_element_type=jnp.promote_types(queries.dtype, jnp.float32))
  return jax.nn.softmax(logits, axis=-1).astype(queries.dtype)


def _attend_materialized(queries, keys, values, precision=None):
  weights = attention_weights(queries, keys, precision)
  return jnp.einsum("bqk,bkd->bqd", weights, values, precision=precision), weights


# The blocked path. Its hand-written tangent lets the backward skip the softmax
# reductions and P·V that plain jax.checkpoint (remat) of the blocks re-runs.
# jax.nn.dot_product_attention saves nothing here: its CPU path rejects v
# wider than q/k and, padded, builds the full matrix. Blocks on CPU hold ~2²⁰ scores (4 MiB, cache-resident); on
# GPU/TPU, where each block is a loop step of small kernels, 2²⁶ (a reasoned
# default, not yet measured). Numbers: benchmarks/README.md.


class BlockSizes(NamedTuple):
  """Target scores per block and per image-row slab, and the fewest query rows."""
  block_elements: int
  row_elements: int
  min_rows: int


CPU_BLOCKS = BlockSizes(block_elements=1 << 20, row_elements=1 << 19, min_rows=64)
ACCELERATOR_BLOCKS = BlockSizes(block_elements=1 << 26, row_elements=1 << 25, min_rows=64)


class BlockLayout(NamedTuple):
  """How ``attend`` tiles (B, Nq, Nk): ``group`` images × ``rows`` queries a block."""
  group: int
  num_chunks: int
  rows: int


def _largest_divisor_at_most(n: int, limit: int) -> int:
  return max(d for d in range(1, min(n, max(1, limit)) + 1) if n % d == 0)


def _block_layout(batch: int, num_queries: int, num_keys: int, chunk_size: int,
                  sizes: BlockSizes = CPU_BLOCKS) -> BlockLayout:
  """Images per block (a divisor of ``batch``) and balanced query chunks of ≤ chunk_size rows."""
  rows = max(sizes.min_rows, sizes.row_elements // max(1, num_keys))
  rows = max(1, min(rows, chunk_size, num_queries))
  num_chunks = math.ceil(num_queries / rows)
  # Balanced chunks: pad Nq by fewer than num_chunks rows, not up to rows − 1.
  rows = math.ceil(num_queries / num_chunks)
  group = _largest_divisor_at_most(batch, sizes.block_elements // max(1, rows * num_keys))
  return BlockLayout(group, num_chunks, rows)


def _split_rows(t: jax.Array, num_chunks: int, rows: int, fill=0) -> jax.Array:
  """(B, N, ...) → (num_chunks, B, rows, ...), padding N with ``fill``."""
  pad = num_chunks * rows - t.shape[1]
  t = jnp.pad(t, [(0, 0), (0, pad)] + [(0, 0)] * (t.ndim - 2), constant_values=fill)
  return t.reshape(t.shape[0], num_chunks, rows, *t.shape[2:]).swapaxes(0, 1)


def _merge_rows(t: jax.Array, num_rows: int) -> jax.Array:
  """(num_chunks, B, rows, ...) → (B, num_rows, ...)."""
  t = t.swapaxes(0, 1)
  return t.reshape(t.shape[0], t.shape[1] * t.shape[2], *t.shape[3:])[:, :num_rows]


def _map_groups(fn: Callable, group: int, *arrays):
  """``fn`` over consecutive groups of ``group`` images (a lax.map), results re-joined."""
  batch = arrays[0].shape[0]
  if group == batch:
    return fn(*arrays)
  split = lambda t: t.reshape(batch // group, group, *t.shape[1:])
  out = jax.lax.map(lambda xs: fn(*xs), tuple(split(t) for t in arrays))
  return jax.tree.map(lambda t: t.reshape(batch, *t.shape[2:]), out)


def _accumulation_dtype(*arrays) -> jnp.dtype:
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _flash_forward_group(queries, keys, values, num_chunks, rows, precision):
  acc = _accumulation_dtype(queries, keys, values)
  # The materialized path's output dtype: einsum(weights in q's dtype, values).
  out_dtype = jnp.result_type(queries.dtype, values.dtype)
  keys_t = keys.swapaxes(1, 2)  # (b, D, Nk): a plain (rows × D)·(D × Nk) product per image

  def one_chunk(q_chunk):
    logits = jnp.einsum("bqd,bdk->bqk", q_chunk, keys_t, precision=precision,
                        preferred_element_type=acc)
    peak = jnp.max(logits, axis=-1, keepdims=True)
    unnormalized = jnp.exp(logits - peak)
    total = jnp.sum(unnormalized, axis=-1, keepdims=True)
    out = jnp.einsum("bqk,bkd->bqd", unnormalized.astype(values.dtype), values,
                     precision=precision,
                     preferred_element_type=acc) / total
    return out.astype(out_dtype), peak[..., 0], total[..., 0]

  out, peak, total = jax.lax.map(one_chunk, _split_rows(queries, num_chunks, rows))
  num_queries = queries.shape[1]
  return tuple(_merge_rows(t, num_queries) for t in (out, peak, total))


def _flash_tangent_group(queries, keys, values, peak, total, q_dot, k_dot, v_dot,
                         num_chunks, rows, precision):
  """The JVP of ``_flash_forward_group``'s output, linear in the tangents
  ``q_dot, k_dot, v_dot`` (None: zero).

  With P = softmax(q kᵀ) and dS = dq kᵀ + q dkᵀ the scores' tangent,
  ``d out = (P ⊙ (dS − Σₖ P ⊙ dS)) v + P dv``, block by block like the forward,
  each block's P recomputed from the forward's row max and sum of exp. Every
  einsum is oriented so that its *transpose* — the reverse-mode backward JAX
  derives from this function — is the plain GEMM of a flash backward, with dKᵀ
  and dVᵀ accumulated as (b, D, Nk) (as (b, Nk, D) the backward was slower on
  XLA:CPU). Each block is checkpointed: the backward recomputes P instead of
  storing an (Nq, Nk) array.
  """
  acc = _accumulation_dtype(queries, keys, values)
  out_dtype = jnp.result_type(queries.dtype, values.dtype)
  keys_t, values_t = keys.swapaxes(1, 2), values.swapaxes(1, 2)
  k_dot_t = None if k_dot is None else k_dot.swapaxes(1, 2)
  v_dot_t = None if v_dot is None else v_dot.swapaxes(1, 2)
  einsum = functools.partial(jnp.einsum, precision=precision, preferred_element_type=acc)

  @jax.checkpoint
  def one_chunk(q_chunk, peak_chunk, total_chunk, q_dot_chunk):
    logits = einsum("bqd,bdk->bqk", q_chunk, keys_t)
    # The softmax as the forward computed it. (exp(logits − lse) with
    # lse = peak + log(total) saves one array but scales every weight by the
    # rounding of lse, ~eps·|lse|, a bias: dK, dV errors against float64 grew
    # ~1.5× at N=300 with unit-normal q, k.)
    weights = jnp.exp(logits - peak_chunk[..., None]) / total_chunk[..., None]
    scores_dot = []
    if q_dot_chunk is not None:
      scores_dot.append(einsum("bqd,bkd->bqk", q_dot_chunk, keys))
    if k_dot_t is not None:
      scores_dot.append(einsum("bqd,bdk->bqk", q_chunk, k_dot_t))
    terms = []
    if scores_dot:
      scores_dot = functools.reduce(jnp.add, scores_dot)
      # The softmax JVP as jax.nn.softmax's, P ⊙ (dS − Σₖ P ⊙ dS); its transpose
      # is the backward's Σₖ P·dP form. (Flash attention's dO·O, algebraically
      # equal and one pass cheaper, gave 3–4× the materialized path's dq error
      # against float64 at N=300.)
      delta = jnp.sum(weights * scores_dot, axis=-1, keepdims=True)
      logits_dot = weights * (scores_dot - delta)
      terms.append(einsum("bqk,bdk->bqd", logits_dot.astype(values.dtype), values_t))
    if v_dot_t is not None:
      terms.append(einsum("bqk,bdk->bqd", weights.astype(v_dot_t.dtype), v_dot_t))
    return functools.reduce(jnp.add, terms).astype(out_dtype)

  # Padded query rows get sum of exp 1, not 0 (0/0 would be NaN); their tangent
  # is dropped, so in the backward their cotangent is zero.
  chunks = (_split_rows(queries, num_chunks, rows), _split_rows(peak, num_chunks, rows),
            _split_rows(total, num_chunks, rows, fill=1))
  if q_dot is None:
    out = jax.lax.map(lambda c: one_chunk(*c, None), chunks)
  else:
    out = jax.lax.map(lambda c: one_chunk(*c), (*chunks, _split_rows(q_dot, num_chunks, rows)))
  return _merge_rows(out, queries.shape[1])


def _flash_forward(queries, keys, values, layout: BlockLayout, precision):
  """(out, row max, row sum of exp), block by block."""
  group_forward = functools.partial(_flash_forward_group, num_chunks=layout.num_chunks,
                                    rows=layout.rows, precision=precision)
  return _map_groups(group_forward, layout.group, queries, keys, values)


def _zero_to_none(tangent):
  return None if isinstance(tangent, jax.custom_derivatives.SymbolicZero) else tangent


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _attend_flash(queries, keys, values, layout: BlockLayout, precision=None):
  return _flash_forward(queries, keys, values, layout, precision)[0]


@functools.partial(_attend_flash.defjvp, symbolic_zeros=True)
def _attend_flash_jvp(layout: BlockLayout, precision, primals, tangents):
  out, peak, total = _flash_forward(*primals, layout, precision)
  tangents = [_zero_to_none(t) for t in tangents]
  given = [i for i, t in enumerate(tangents) if t is not None]

  def group_tangent(queries, keys, values, peak, total, *nonzero):
    dots = [None] * 3
    for i, t in zip(given, nonzero):
      dots[i] = t
    return _flash_tangent_group(queries, keys, values, peak, total, *dots,
                                num_chunks=layout.num_chunks, rows=layout.rows,
                                precision=precision)

  out_dot = _map_groups(group_tangent, layout.group, *primals, peak, total,
                        *[tangents[i] for i in given])
  return out, out_dot


def _is_one_block(layout: BlockLayout, batch: int) -> bool:
  return layout.num_chunks == 1 and layout.group == batch


def _attend_in_blocks(queries, keys, values, layout: BlockLayout, precision=None):
  if _is_one_block(layout, queries.shape[0]):
    return _attend_materialized(queries, keys, values, precision)[0]
  return _attend_flash(queries, keys, values, layout, precision)


def _attend_chunked(queries, keys, values, chunk_size):
  """Attention block by block (``_block_layout`` with the CPU sizes), never
  holding more than one (images, rows, Nk) block of scores, in the forward
  or any derivative: the blocked path on any platform and whatever the size,
  for the tests and ``benchmarks/attention.py``.

  Each output row depends only on its own query and image, so blocking
  changes no value (only float32 summation order: ~1e-6 relative).
  """
  batch, num_queries, _ = queries.shape
  layout = _block_layout(batch, num_queries, keys.shape[1], chunk_size)
  return _attend_flash(queries, keys, values, layout, None)


def attend(queries: jax.Array, keys: jax.Array, values: jax.Array, *,
           return_weights: bool = False, chunk_size: Optional[int] = None,
           precision=None):
  """Row-softmax attention ``softmax(Q Kᵀ) V`` without scaling.

  Args:
    queries: (B, Nq, D).
    keys: (B, Nk, D).
    values: (B, Nk, Dv).
    return_weights: also return the (B, Nq, Nk) weights (forces the
      materialized path).
    chunk_size: None: the materialized path (softmax over the full
      (B, Nq, Nk) array). An int, with weights not requested: when the scores
      exceed one block (``_block_layout``: on CPU ~2²⁰ scores, a few images ×
      at most ``chunk_size`` query rows), the blocked path, which never holds
      the (B, Nq, Nk) array in any pass. Equal to the materialized path up to
      float32 summation order, and differentiable in every mode (``grad``,
      ``jvp``, ``jacfwd``, ``linearize``, to any order).
    precision: ``jax.lax.Precision`` of the products (None: the default).

  Returns:
    (B, Nq, Dv) outputs, or ``(outputs, weights)``.
  """
  if return_weights or chunk_size is None:
    out, weights = _attend_materialized(queries, keys, values, precision)
    return (out, weights) if return_weights else out
  shape = (queries.shape[0], queries.shape[1], keys.shape[1], chunk_size)
  on_cpu = _block_layout(*shape, CPU_BLOCKS)
  elsewhere = _block_layout(*shape, ACCELERATOR_BLOCKS)
  if on_cpu == elsewhere:
    return _attend_in_blocks(queries, keys, values, on_cpu, precision)
  # Chosen when lowered, as the conv ops choose their implementation.
  return jax.lax.platform_dependent(
      queries, keys, values,
      cpu=functools.partial(_attend_in_blocks, layout=on_cpu, precision=precision),
      default=functools.partial(_attend_in_blocks, layout=elsewhere, precision=precision))
