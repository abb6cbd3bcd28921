"""Self-attention of SAGAN, as the seed notebook writes it, and the paper's variant.

The seed (NCHW, ``N = H·W``) computes

    S = qᵀk                      S[i, j] = q_i · k_j          (N × N)
    attention_map[j, i] = softmax over i of S[i, j]            (rows sum to 1)
    o[:, j] = Σ_i v[:, i] · attention_map[j, i]
    y = x + γ·o                  γ initialised to 0

so output position ``j`` attends over source positions ``i`` with scores
``k_j · q_i``: ordinary row-softmax attention whose *queries* come from the
seed's ``key_conv`` and whose *keys* come from its ``query_conv``. The pure
function ``attend`` uses the ordinary orientation; ``SelfAttention`` keeps the
seed's parameter names and feeds them the right way round.

The variant of the paper's released code (also BigGAN's) differs by arguments
only: values with C/2 channels, a 2×2 max-pool over the source positions
(``query_conv`` and ``value_conv`` in seed names; ``phi`` and ``g`` in the
official code, whose ``theta`` is our ``key_conv`` and ``o`` our
``output_conv``), spectral norm on every 1×1 conv, no biases, and a 1×1
output conv back to C channels. ``OfficialSelfAttention`` presets them.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers.conv import PointwiseConv
from sagan_jax.layers.validation import layer_name, require_rank

Initializer = Callable[..., jax.Array]


def attention_weights(queries: jax.Array, keys: jax.Array) -> jax.Array:
  """``softmax(queries · keysᵀ)`` over the keys: (B, Nq, D), (B, Nk, D) → (B, Nq, Nk).

  No 1/√D scaling, as in SAGAN.
  """
  logits = jnp.einsum("bqd,bkd->bqk", queries, keys,
                      preferred_element_type=jnp.promote_types(queries.dtype, jnp.float32))
  return jax.nn.softmax(logits, axis=-1).astype(queries.dtype)


def _attend_materialized(queries, keys, values):
  weights = attention_weights(queries, keys)
  return jnp.einsum("bqk,bkd->bqd", weights, values), weights


# ---------------------------------------------------------------------------
# Memory-efficient path (maps not requested).
#
# Choice, measured on this project's 2-core CPU (jax 0.10.2), fwd+bwd of
# sum(attend(q, k, v) · r), B=1, N=4096, q/k width 8, v width 64. "temp" is the
# compiled program's temp buffer size (`compile().memory_analysis()`); time is
# process CPU time, median (the machine was shared; wall clock was noisier):
#   materialized                        temp 256 MB   cpu ~475 ms
#   jax.nn.dot_product_attention 'xla'  temp 259 MB   wall 2.3 s vs 1.0 s for the
#       materialized path: with q, k zero-padded to v's width (its CPU path
#       rejects unequal head widths) and scale=1, its XLA implementation is an
#       einsum + softmax over the full N×N matrix, so it saves nothing. 'cudnn'
#       needs a GPU and bf16/fp16 and caps the head width, which the seed's
#       v = C (up to 512 in the chapter's D) exceeds. Not used.
#   lax.map + jax.checkpoint (remat)    temp 8.2 MB   cpu ~240 ms   } 32 chunks
#   custom VJP (below)                  temp 7.2 MB   cpu ~187 ms   } of 128 rows
# (benchmarks/attention.py prints these for N = 1024, 4096, 16384.)
# The custom VJP is the flash-attention backward: the forward keeps the
# per-row max and sum of exp (two (B, Nq) arrays), the backward recomputes
# exp(q·kᵀ − max)/sum per query chunk, so it skips re-running the softmax
# reductions and P·V that remat repeats. Its residuals are q, k, v and those
# two rows: no (B, Nq, Nk) array is stored, forward or backward. The remat
# version stays as the fallback for forward-mode autodiff (jax.jvp / jacfwd),
# which a custom VJP does not support; reverse-over-reverse (gradient
# penalties) works with both. Layout mattered: with dK, dV accumulated as
# (B, Nk, D) the custom VJP was ~10% *slower* than remat; accumulating their
# transposes (B, D, Nk), i.e. dVᵀ = gᵀ·P, as XLA's own transpose rule does,
# made its backward ~30% faster than remat's.
# ---------------------------------------------------------------------------

# Blocks: the scores are computed one (images × query rows × Nk) block at a
# time, ~2²⁰ elements (4 MiB in float32: it stays in cache while exp, the row
# sums and the two products run over it). Rows per image: ~2¹⁹ / Nk (at least
# 64; `chunk_size` caps them); images per block: the rest of the 2²⁰.
# Measured fwd+bwd (CPU, 2 cores, wall median of 7) at B=64, N=1024, q/k 8,
# v 64 (the chapter generator's second attention): materialized 863 ms;
# query chunks over the whole batch (the previous layout) 64 rows 446 ms, 128
# rows 373 ms; 2 images × 512 rows 246 ms, 4 × 256 257 ms, 4 × 128 261 ms,
# 8 × 128 276 ms, 1 × 256 397 ms; forward alone 77 ms (materialized 267 ms).
# At B=1, N=4096 rows 128 (2¹⁹) were best: 16 → 241 ms, 64 → 181, 128 → 172,
# 256 → 188, 512 → 196.
#
# On GPU/TPU the cache argument does not apply and every block is a loop
# iteration of small kernels, so blocks there are 64× larger (2²⁶ scores,
# 256 MiB): the chapter's attention (B·N² = 2²⁶ at batch 64) stays one
# materialized block, and only maps that would not fit run blocked. (A
# reasoned default, not a measurement: no GPU was available to tune it.)
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


def _flash_forward_group(queries, keys, values, num_chunks, rows):
  acc = _accumulation_dtype(queries, keys, values)
  # The materialized path's output dtype: einsum(weights in q's dtype, values).
  out_dtype = jnp.result_type(queries.dtype, values.dtype)
  keys_t = keys.swapaxes(1, 2)  # (b, D, Nk): a plain (rows × D)·(D × Nk) product per image

  def one_chunk(q_chunk):
    logits = jnp.einsum("bqd,bdk->bqk", q_chunk, keys_t, preferred_element_type=acc)
    peak = jnp.max(logits, axis=-1, keepdims=True)
    unnormalized = jnp.exp(logits - peak)
    total = jnp.sum(unnormalized, axis=-1, keepdims=True)
    out = jnp.einsum("bqk,bkd->bqd", unnormalized.astype(values.dtype), values,
                     preferred_element_type=acc) / total
    return out.astype(out_dtype), peak[..., 0], total[..., 0]

  out, peak, total = jax.lax.map(one_chunk, _split_rows(queries, num_chunks, rows))
  num_queries = queries.shape[1]
  return tuple(_merge_rows(t, num_queries) for t in (out, peak, total))


def _flash_backward_group(queries, keys, values, peak, total, out_grad, num_chunks, rows):
  acc = _accumulation_dtype(queries, keys, values, out_grad)
  keys_t, values_t = keys.swapaxes(1, 2), values.swapaxes(1, 2)

  def one_chunk(carry, chunk):
    keys_grad, values_grad = carry
    q_chunk, g_chunk, peak_chunk, total_chunk = chunk
    logits = jnp.einsum("bqd,bdk->bqk", q_chunk, keys_t, preferred_element_type=acc)
    # The softmax, recomputed as the forward computed it. (exp(logits − lse)
    # with lse = peak + log(total) saves one array but scales every weight by
    # the rounding of lse, ~eps·|lse|, a bias: dK, dV errors against float64
    # grew ~1.5× at N=300 with unit-normal q, k.)
    weights = jnp.exp(logits - peak_chunk[..., None]) / total_chunk[..., None]
    values_grad += jnp.einsum("bqd,bqk->bdk", g_chunk, weights.astype(g_chunk.dtype),
                              preferred_element_type=acc)
    weights_grad = jnp.einsum("bqd,bdk->bqk", g_chunk, values_t, preferred_element_type=acc)
    # Softmax backward as jax.nn.softmax's: Σ_k P·dP over the keys. Flash
    # attention's dO·O (over Dv) is algebraically equal and one pass cheaper,
    # but gave 3–4× the materialized path's dq error (2e-5 vs 5e-6 against
    # float64 at N=300, unit-normal q/k); this pass cost no measurable time.
    delta = jnp.sum(weights * weights_grad, axis=-1, keepdims=True)
    logits_grad = weights * (weights_grad - delta)
    q_grad = jnp.einsum("bqk,bkd->bqd", logits_grad.astype(keys.dtype), keys,
                        preferred_element_type=acc)
    keys_grad += jnp.einsum("bqd,bqk->bdk", q_chunk, logits_grad.astype(q_chunk.dtype),
                            preferred_element_type=acc)
    return (keys_grad, values_grad), q_grad.astype(queries.dtype)

  # Padded query rows get a zero output gradient, so they add nothing to dK, dV
  # (their sum of exp is padded with 1, not 0: 0/0 would give NaN·0 = NaN).
  chunks = (_split_rows(queries, num_chunks, rows), _split_rows(out_grad, num_chunks, rows),
            _split_rows(peak, num_chunks, rows), _split_rows(total, num_chunks, rows, fill=1))
  # dKᵀ, dVᵀ (b, D, Nk) accumulate faster on XLA:CPU than dK, dV (see above).
  init = (jnp.zeros(keys.shape, acc).swapaxes(1, 2), jnp.zeros(values.shape, acc).swapaxes(1, 2))
  (keys_grad, values_grad), q_grad = jax.lax.scan(one_chunk, init, chunks)
  return (_merge_rows(q_grad, queries.shape[1]), keys_grad.swapaxes(1, 2).astype(keys.dtype),
          values_grad.swapaxes(1, 2).astype(values.dtype))


def _flash_forward(queries, keys, values, layout: BlockLayout):
  group_forward = functools.partial(_flash_forward_group, num_chunks=layout.num_chunks,
                                    rows=layout.rows)
  out, peak, total = _map_groups(group_forward, layout.group, queries, keys, values)
  return out, (queries, keys, values, peak, total)


def _flash_backward(layout: BlockLayout, residuals, out_grad):
  group_backward = functools.partial(_flash_backward_group, num_chunks=layout.num_chunks,
                                     rows=layout.rows)
  return _map_groups(group_backward, layout.group, *residuals, out_grad)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _attend_flash(queries, keys, values, layout: BlockLayout):
  return _flash_forward(queries, keys, values, layout)[0]


_attend_flash.defvjp(_flash_forward, _flash_backward)


def _attend_chunked_remat(queries, keys, values, layout: BlockLayout):
  """Fallback: the blocks of the materialized math under jax.checkpoint (the
  backward re-runs each block's forward). Supports forward-mode autodiff;
  slower than the custom VJP (see above)."""

  @jax.checkpoint
  def one_chunk(q_chunk, keys, values):
    return _attend_materialized(q_chunk, keys, values)[0]

  def one_group(queries, keys, values):
    out = jax.lax.map(lambda q_chunk: one_chunk(q_chunk, keys, values),
                      _split_rows(queries, layout.num_chunks, layout.rows))
    return _merge_rows(out, queries.shape[1])

  return _map_groups(one_group, layout.group, queries, keys, values)


def _is_one_block(layout: BlockLayout, batch: int) -> bool:
  return layout.num_chunks == 1 and layout.group == batch


def _attend_in_blocks(queries, keys, values, layout: BlockLayout):
  if _is_one_block(layout, queries.shape[0]):
    return _attend_materialized(queries, keys, values)[0]
  return _attend_flash(queries, keys, values, layout)


def _attend_chunked(queries, keys, values, chunk_size, *, remat: bool = False):
  """Attention block by block (``_block_layout`` with the CPU sizes), never
  holding more than one (images, rows, Nk) block of scores, in the forward
  or the backward.

  Each output row depends only on its own query and image, so blocking
  changes no value (only float32 summation order: ~1e-6 relative).
  ``remat=True`` selects the jax.checkpoint fallback.
  """
  batch, num_queries, _ = queries.shape
  layout = _block_layout(batch, num_queries, keys.shape[1], chunk_size)
  fn = _attend_chunked_remat if remat else _attend_flash
  return fn(queries, keys, values, layout)


def attend(queries: jax.Array, keys: jax.Array, values: jax.Array, *,
           return_weights: bool = False, chunk_size: Optional[int] = None):
  """Row-softmax attention ``softmax(Q Kᵀ) V`` without scaling.

  Args:
    queries: (B, Nq, D).
    keys: (B, Nk, D).
    values: (B, Nk, Dv).
    return_weights: also return the (B, Nq, Nk) weights (forces the
      materialized path).
    chunk_size: None: the materialized path (softmax over the full
      (B, Nq, Nk) array). An int, with weights not requested: when the scores
      exceed one block (on CPU ~2²⁰ elements: a few images × at most
      ``chunk_size`` query rows; on accelerators 2²⁶; see ``_block_layout``
      and the notes above it), attention runs block by block with
      a custom VJP that recomputes each block's scores in the backward from
      the saved row max and sum of exp, so the full (B, Nq, Nk) array never
      exists, in the forward or the backward pass. Faster as well as smaller
      on CPU (a block stays in cache). Equal to the materialized path up to
      float32 summation order. The blocked path is reverse-mode
      differentiable to any order, but not forward-mode (``jax.jvp``): use
      ``chunk_size=None`` for that.

  Returns:
    (B, Nq, Dv) outputs, or ``(outputs, weights)``.
  """
  if return_weights or chunk_size is None:
    out, weights = _attend_materialized(queries, keys, values)
    return (out, weights) if return_weights else out
  shape = (queries.shape[0], queries.shape[1], keys.shape[1], chunk_size)
  on_cpu = _block_layout(*shape, CPU_BLOCKS)
  elsewhere = _block_layout(*shape, ACCELERATOR_BLOCKS)
  if on_cpu == elsewhere:
    return _attend_in_blocks(queries, keys, values, on_cpu)
  # Chosen when lowered, as the conv ops choose their implementation.
  return jax.lax.platform_dependent(
      queries, keys, values, cpu=functools.partial(_attend_in_blocks, layout=on_cpu),
      default=functools.partial(_attend_in_blocks, layout=elsewhere))


def _flatten_positions(t: jax.Array) -> jax.Array:
  return t.reshape(t.shape[0], t.shape[1] * t.shape[2], t.shape[3])


def _max_pool_2x2(t: jax.Array) -> jax.Array:
  return nn.max_pool(t, window_shape=(2, 2), strides=(2, 2))


class SelfAttention(nn.Module):
  """SAGAN self-attention on NHWC feature maps.

  Defaults reproduce the seed notebook's ``Self_Attention``. Call
  ``layer(x)`` for ``y``, or ``layer(x, return_attention=True)`` for
  ``(y, attention_map)`` with the map (B, N, N_source) oriented like the seed's
  (``attention_map[b, j]`` is the distribution over source positions for
  output position ``j``; positions flattened row-major, ``y·W + x``).

  Attributes:
    qk_reduction: query/key channels are C // qk_reduction (8).
    value_reduction: value channels are C // value_reduction (1; official 2).
    pool_sources: 2×2 max-pool the attended-over positions (official).
    output_conv: a 1×1 conv from the value channels back to C (official).
    use_bias: biases on the 1×1 convs (the seed has them; official not).
    spectral_norm: spectral norm on the 1×1 convs (official).
    num_power_iterations: power-iteration rounds per train-mode call.
    update_stats: train mode for spectral norm; may also be given at call time.
    kernel_init, bias_init: for the 1×1 convs (default PyTorch's).
    gamma_init: the residual gate's init (0, so the layer starts as identity).
    chunk_size: when maps are not requested, attention runs block by block
      with at most this many query rows a block, without materializing the
      N×N matrix (see `attend`; None: always materialized).
  """

  qk_reduction: int = 8
  value_reduction: int = 1
  pool_sources: bool = False
  output_conv: bool = False
  use_bias: bool = True
  spectral_norm: bool = False
  num_power_iterations: int = 1
  update_stats: Optional[bool] = None
  kernel_init: Optional[Initializer] = None
  bias_init: Optional[Initializer] = None
  gamma_init: Initializer = nn.initializers.zeros
  chunk_size: Optional[int] = 1024

  def _check_input(self, x: jax.Array) -> None:
    require_rank(self, x, 4, "(batch, height, width, channels)")
    _, height, width, channels = x.shape
    if channels < self.qk_reduction or channels % self.qk_reduction:
      raise ValueError(
          f"{layer_name(self)} needs channels divisible by qk_reduction="
          f"{self.qk_reduction} (at least {self.qk_reduction}), got input shape {x.shape}.")
    if channels % self.value_reduction:
      raise ValueError(
          f"{layer_name(self)} needs channels divisible by value_reduction="
          f"{self.value_reduction}, got input shape {x.shape}.")
    if self.value_reduction != 1 and not self.output_conv:
      raise ValueError(
          f"{layer_name(self)}: value_reduction={self.value_reduction} gives "
          f"{channels // self.value_reduction} value channels; set output_conv=True "
          f"to project them back to {channels}.")
    stored = self.variables.get("params", {}).get("value_conv", {}).get("kernel")
    if stored is not None and stored.shape[2] != channels:
      raise ValueError(
          f"{layer_name(self)} was initialised for {stored.shape[2]} channels, got input "
          f"shape {x.shape}.")
    if self.pool_sources and (height % 2 or width % 2):
      raise ValueError(
          f"{layer_name(self)}: pool_sources needs even height and width, got input "
          f"shape {x.shape}.")

  @nn.compact
  def __call__(self, x: jax.Array, *, return_attention: bool = False,
               update_stats: Optional[bool] = None):
    self._check_input(x)
    batch, height, width, channels = x.shape
    conv = functools.partial(
        PointwiseConv, use_bias=self.use_bias, spectral_norm=self.spectral_norm,
        num_power_iterations=self.num_power_iterations, update_stats=self.update_stats,
        kernel_init=self.kernel_init, bias_init=self.bias_init)
    qk_channels = channels // self.qk_reduction
    value_channels = channels // self.value_reduction
    # Seed names: key_conv scores the output positions, query_conv the sources.
    source_proj = conv(qk_channels, name="query_conv")(x, update_stats=update_stats)
    target_proj = conv(qk_channels, name="key_conv")(x, update_stats=update_stats)
    value = conv(value_channels, name="value_conv")(x, update_stats=update_stats)
    if self.pool_sources:
      source_proj, value = _max_pool_2x2(source_proj), _max_pool_2x2(value)
    out = attend(_flatten_positions(target_proj), _flatten_positions(source_proj),
                 _flatten_positions(value), return_weights=return_attention,
                 chunk_size=self.chunk_size)
    out, attention_map = out if return_attention else (out, None)
    out = out.reshape(batch, height, width, value_channels)
    if self.output_conv:
      out = conv(channels, name="output_conv")(out, update_stats=update_stats)
    gamma = self.param("gamma", self.gamma_init, ())
    y = x + gamma.astype(x.dtype) * out
    return (y, attention_map) if return_attention else y


OfficialSelfAttention = functools.partial(
    SelfAttention, value_reduction=2, pool_sources=True, output_conv=True,
    use_bias=False, spectral_norm=True)
OfficialSelfAttention.__doc__ = (
    "The self-attention of the SAGAN paper's released code (and BigGAN): C/2 "
    "values, 2×2 max-pooled sources, spectral norm, no biases, 1×1 output conv.")
