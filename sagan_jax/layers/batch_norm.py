"""BatchNorm with ``torch.nn.BatchNorm2d``'s exact semantics.

Flax's ``nn.BatchNorm`` differs in two ways that matter for parity: it keeps
the *biased* batch variance in its running average (PyTorch keeps the unbiased
one, ``n/(n-1)`` larger) and its momentum is the complement of PyTorch's.
This layer normalizes with the biased variance and tracks the unbiased one,
with PyTorch's ``momentum`` convention. Statistics are reduced over every axis
but the last, so under ``jit`` with a batch sharded over devices they are
those of the global batch.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers.validation import layer_name


class BatchNorm(nn.Module):
  """``nn.BatchNorm2d`` (any rank; features last).

  Attributes:
    momentum: PyTorch's convention: ``running = (1-m)·running + m·batch``.
    epsilon: added to the variance.
    use_running_average: eval mode; may also be given at call time.
    scale_init: PyTorch initialises the scale to 1 (the chapter uses N(1, 0.02)).
    dtype: the output's dtype (None: the input's); statistics are float32 either way.
    param_dtype: the scale's and bias's dtype.
    use_scale, use_bias: learn a per-feature scale / bias (PyTorch's ``affine``;
      a conditional BatchNorm has neither: its gain and bias come per class).
  """

  momentum: float = 0.1
  epsilon: float = 1e-5
  use_running_average: Optional[bool] = None
  scale_init: nn.initializers.Initializer = nn.initializers.ones
  bias_init: nn.initializers.Initializer = nn.initializers.zeros
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32
  use_scale: bool = True
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, *, use_running_average: Optional[bool] = None) -> jax.Array:
    use_running_average = nn.merge_param(
        "use_running_average", self.use_running_average, use_running_average)
    features = x.shape[-1]
    scale = (self.param("scale", self.scale_init, (features,), self.param_dtype)
             if self.use_scale else 1.0)
    bias = (self.param("bias", self.bias_init, (features,), self.param_dtype)
            if self.use_bias else 0.0)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
    if running_mean.value.shape != (features,):
      raise ValueError(
          f"{layer_name(self)}: input has {features} features, the statistics hold "
          f"{running_mean.value.shape[0]}.")
    reduce_axes = tuple(range(x.ndim - 1))
    # Statistics in float32 even for bfloat16 activations.
    x32 = x.astype(jnp.float32)
    if use_running_average:
      mean, var = running_mean.value, running_var.value
    else:
      count = x.size // features
      if count < 2 and not self.is_initializing():
        raise ValueError(
            f"{layer_name(self)}: train-mode batch norm needs more than one value per "
            f"channel, got input shape {x.shape}.")
      mean = jnp.mean(x32, axis=reduce_axes)
      var = jnp.mean(jnp.square(x32 - mean), axis=reduce_axes)
      if not self.is_initializing():
        unbiased = var * (count / max(count - 1, 1))
        m = self.momentum
        running_mean.value = (1 - m) * running_mean.value + m * mean
        running_var.value = (1 - m) * running_var.value + m * unbiased
    inv_std = jax.lax.rsqrt(var + self.epsilon)
    y = (x32 - mean) * (inv_std * scale) + bias
    return y.astype(self.dtype or x.dtype)
