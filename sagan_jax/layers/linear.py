"""Dense and embedding layers with optional PyTorch-exact spectral normalization.

``Dense`` is ``nn.Linear`` with the kernel stored ``(in, out)``; ``Embed`` is
``nn.Embedding`` with the table ``(num_embeddings, features)``. PyTorch's
spectral norm treats dim 0 of an embedding table (the embeddings) as the
output dimension, so ``SNEmbed``'s ``u`` has one entry per embedding — the
class-conditional BatchNorm gains of the SAGAN paper's models use this.
"""

from __future__ import annotations

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers.initializers import torch_uniform
from sagan_jax.layers.spectral_norm import DEFAULT_EPS, maybe_spectral_normalized
from sagan_jax.layers.validation import layer_name, shaped_param

Initializer = Callable[..., jax.Array]


class Dense(nn.Module):
  """``nn.Linear``: ``y = x @ kernel + bias`` over the last axis.

  Attributes:
    features: output features.
    use_bias: add a bias.
    spectral_norm: divide the kernel by its spectral norm.
    num_power_iterations: power-iteration rounds per train-mode call.
    spectral_eps: normalization floor of the power iteration.
    update_stats: train mode for spectral norm; may also be given at call time.
    kernel_init, bias_init: default to PyTorch's ``U(±1/√fan_in)``.
  """

  features: int
  use_bias: bool = True
  spectral_norm: bool = False
  num_power_iterations: int = 1
  spectral_eps: float = DEFAULT_EPS
  update_stats: Optional[bool] = None
  kernel_init: Optional[Initializer] = None
  bias_init: Optional[Initializer] = None

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: Optional[bool] = None) -> jax.Array:
    if x.ndim < 1:
      raise ValueError(f"{layer_name(self)} expects at least a 1-D input, got a scalar.")
    in_features = x.shape[-1]
    init = torch_uniform(in_features)
    kernel = shaped_param(self, "kernel", self.kernel_init or init,
                          (in_features, self.features))
    kernel = maybe_spectral_normalized(self, kernel, update_stats)
    y = x @ kernel.astype(x.dtype)
    if self.use_bias:
      bias = self.param("bias", self.bias_init or init, (self.features,))
      y = y + bias.astype(y.dtype)
    return y


class Embed(nn.Module):
  """``nn.Embedding``: rows of a ``(num_embeddings, features)`` table.

  ``embedding_init`` defaults to N(0, 1), PyTorch's default.
  """

  num_embeddings: int
  features: int
  spectral_norm: bool = False
  num_power_iterations: int = 1
  spectral_eps: float = DEFAULT_EPS
  update_stats: Optional[bool] = None
  embedding_init: Initializer = nn.initializers.normal(stddev=1.0)

  @nn.compact
  def __call__(self, indices: jax.Array, *, update_stats: Optional[bool] = None) -> jax.Array:
    if not jnp.issubdtype(indices.dtype, jnp.integer):
      raise ValueError(
          f"{layer_name(self)} expects integer indices, got dtype {indices.dtype}.")
    table = shaped_param(self, "embedding", self.embedding_init,
                         (self.num_embeddings, self.features))
    table = maybe_spectral_normalized(self, table, update_stats, out_axis=0)
    return jnp.take(table, indices, axis=0)


class SNDense(Dense):
  """``Dense`` with spectral normalization (``spectral_norm(nn.Linear(...))``)."""

  spectral_norm: bool = True


class SNEmbed(Embed):
  """``Embed`` with spectral normalization (``spectral_norm(nn.Embedding(...))``)."""

  spectral_norm: bool = True
