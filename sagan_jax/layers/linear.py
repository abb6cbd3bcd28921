"""Dense and embedding layers with optional PyTorch-exact spectral normalization.

``Dense`` is ``nn.Linear`` with the kernel stored ``(in, out)``; ``Embed`` is
``nn.Embedding`` with the table ``(num_embeddings, features)``. PyTorch's
spectral norm treats dim 0 of an embedding table (the embeddings) as the
output dimension, so ``SNEmbed``'s ``u`` has one entry per embedding — the
class-conditional BatchNorm gains of the SAGAN paper's models use this.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers.base import Initializer, KernelLayer, WeightLayer
from sagan_jax.layers.validation import layer_name


class Dense(KernelLayer):
  """``nn.Linear``: ``y = x @ kernel + bias`` over the last axis.

  Attributes:
    features: output features.
    use_bias, spectral_norm, num_power_iterations, spectral_eps, update_stats,
      dtype, param_dtype, precision, kernel_init, bias_init: keyword-only, as in
      ``KernelLayer``.
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, update_stats: Optional[bool] = None) -> jax.Array:
    if x.ndim < 1:
      raise ValueError(f"{layer_name(self)} expects at least a 1-D input, got a scalar.")
    in_features = x.shape[-1]
    kernel = self._kernel((in_features, self.features), in_features, update_stats)
    x, kernel, bias = self._promote(x, kernel, in_features)
    y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())),
                            precision=self.precision)
    return self._add_bias(y, bias)


class Embed(WeightLayer):
  """``nn.Embedding``: rows of a ``(num_embeddings, features)`` table.

  Attributes:
    num_embeddings, features: the table's shape.
    embedding_init: keyword-only; defaults to N(0, 1), PyTorch's default.
    spectral_norm, num_power_iterations, spectral_eps, update_stats, dtype,
      param_dtype: keyword-only, as in ``WeightLayer`` (``dtype``: of the
      returned rows; None: the table's).
  """

  num_embeddings: int
  features: int
  _: dataclasses.KW_ONLY
  embedding_init: Initializer = nn.initializers.normal(stddev=1.0)

  @nn.compact
  def __call__(self, indices: jax.Array, update_stats: Optional[bool] = None) -> jax.Array:
    if not jnp.issubdtype(indices.dtype, jnp.integer):
      raise ValueError(
          f"{layer_name(self)} expects integer indices, got dtype {indices.dtype}.")
    table = self._weight("embedding", self.embedding_init,
                         (self.num_embeddings, self.features), update_stats, out_axis=0)
    (table,) = nn.dtypes.promote_dtype(table, dtype=self.dtype)
    return jnp.take(table, indices, axis=0)


class SNDense(Dense):
  """``Dense`` with spectral normalization on: PyTorch's
  ``spectral_norm(nn.Linear(...))``."""

  _: dataclasses.KW_ONLY
  spectral_norm: bool = True


class SNEmbed(Embed):
  """``Embed`` with spectral normalization on: PyTorch's
  ``spectral_norm(nn.Embedding(...))``."""

  _: dataclasses.KW_ONLY
  spectral_norm: bool = True
