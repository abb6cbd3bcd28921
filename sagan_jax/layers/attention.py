"""Self-attention of SAGAN, as the seed notebook writes it, and the paper's variant.

The seed (NCHW, ``N = H·W``) computes

    S = qᵀk                      S[i, j] = q_i · k_j          (N × N)
    attention_map[j, i] = softmax over i of S[i, j]            (rows sum to 1)
    o[:, j] = Σ_i v[:, i] · attention_map[j, i]
    y = x + γ·o                  γ initialised to 0

so output position ``j`` attends over source positions ``i`` with scores
``k_j · q_i``: ordinary row-softmax attention whose *queries* come from the
seed's ``key_conv`` and whose *keys* come from its ``query_conv``. The pure
function ``attend`` (:mod:`sagan_jax.ops.attention`, re-exported here) uses
the ordinary orientation; ``SelfAttention`` keeps the seed's parameter names
and feeds them the right way round.

The variant of the paper's released code (also BigGAN's) differs by arguments
only: values with C/2 channels, a 2×2 max-pool over the source positions
(``query_conv`` and ``value_conv`` in seed names; ``phi`` and ``g`` in the
official code, whose ``theta`` is our ``key_conv`` and ``o`` our
``output_conv``), spectral norm on every 1×1 conv, no biases, and a 1×1
output conv back to C channels. ``OfficialSelfAttention`` presets them.
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers.base import Dtype, Initializer, PrecisionLike
from sagan_jax.layers.conv import PointwiseConv
from sagan_jax.layers.spectral_norm import DEFAULT_EPS
from sagan_jax.layers.validation import layer_name, require_rank
from sagan_jax.ops.attention import attend, attention_weights
from sagan_jax.ops.pooling import max_pool_2x2

__all__ = ["OfficialSelfAttention", "SelfAttention", "attend", "attention_weights"]


def _flatten_positions(t: jax.Array) -> jax.Array:
  return t.reshape(t.shape[0], t.shape[1] * t.shape[2], t.shape[3])


class SelfAttention(nn.Module):
  """SAGAN self-attention on NHWC feature maps.

  Defaults reproduce the seed notebook's ``Self_Attention``. Call
  ``layer(x)`` for ``y``, or ``layer(x, return_attention=True)`` for
  ``(y, attention_map)`` with the map (B, N, N_source) oriented like the seed's
  (``attention_map[b, j]`` is the distribution over source positions for
  output position ``j``; positions flattened row-major, ``y·W + x``).

  Not ``flax.linen.SelfAttention``, which shares the name: that one is
  multi-head dot-product attention over a sequence (scaled by 1/√d, no
  residual); this is SAGAN's attention over the positions of a feature map,
  added to the input through a learned gate γ. With both in scope, import one
  under another name (``from sagan_jax.layers import SelfAttention as
  SAGANAttention``).

  Attributes:
    qk_reduction: query/key channels are C // qk_reduction (8).
    value_reduction: value channels are C // value_reduction (1; official 2).
    pool_sources: 2×2 max-pool the attended-over positions (official).
    output_conv: a 1×1 conv from the value channels back to C (official).
    use_bias: biases on the 1×1 convs (the seed has them; official not).
    spectral_norm: spectral norm on the 1×1 convs (official).
    num_power_iterations: power-iteration rounds per train-mode call.
    spectral_eps: the power iteration's normalization floor.
    update_stats: train mode for spectral norm; may also be given at call time
      (the second positional argument, so ``nn.remat(..., static_argnums=(2,))``
      can mark it static; a traced flag works too, see ``spectral_normalized``).
    dtype: the computation's dtype (None: the input's and parameters' promoted).
    param_dtype: the parameters' dtype.
    precision: ``jax.lax.Precision`` of the products (None: the default).
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
  spectral_eps: float = DEFAULT_EPS
  update_stats: Optional[bool] = None
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = None
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
  def __call__(self, x: jax.Array, update_stats: Optional[bool] = None, *,
               return_attention: bool = False):
    self._check_input(x)
    batch, height, width, channels = x.shape
    conv = functools.partial(
        PointwiseConv, use_bias=self.use_bias, spectral_norm=self.spectral_norm,
        num_power_iterations=self.num_power_iterations, spectral_eps=self.spectral_eps,
        update_stats=self.update_stats, dtype=self.dtype, param_dtype=self.param_dtype,
        precision=self.precision, kernel_init=self.kernel_init, bias_init=self.bias_init)
    qk_channels = channels // self.qk_reduction
    value_channels = channels // self.value_reduction
    # Seed names: key_conv scores the output positions, query_conv the sources.
    source_proj = conv(qk_channels, name="query_conv")(x, update_stats=update_stats)
    target_proj = conv(qk_channels, name="key_conv")(x, update_stats=update_stats)
    value = conv(value_channels, name="value_conv")(x, update_stats=update_stats)
    if self.pool_sources:
      source_proj, value = max_pool_2x2(source_proj), max_pool_2x2(value)
    out = attend(_flatten_positions(target_proj), _flatten_positions(source_proj),
                 _flatten_positions(value), return_weights=return_attention,
                 chunk_size=self.chunk_size, precision=self.precision)
    out, attention_map = out if return_attention else (out, None)
    out = out.reshape(batch, height, width, value_channels)
    if self.output_conv:
      out = conv(channels, name="output_conv")(out, update_stats=update_stats)
    gamma = self.param("gamma", self.gamma_init, (), self.param_dtype)
    x, gamma, out = nn.dtypes.promote_dtype(x, gamma, out, dtype=self.dtype)
    y = x + gamma * out
    return (y, attention_map) if return_attention else y


class OfficialSelfAttention(SelfAttention):
  """The self-attention of the SAGAN paper's released code (and BigGAN's).

  ``SelfAttention`` with C/2 value channels, the sources (``query_conv`` and
  ``value_conv``) 2×2 max-pooled, spectral norm on every 1×1 conv, no biases,
  and a 1×1 output conv from C/2 back to C channels. Any of these may still be
  overridden, as for ``SelfAttention``.
  """

  value_reduction: int = 2
  pool_sources: bool = True
  output_conv: bool = True
  use_bias: bool = False
  spectral_norm: bool = True
