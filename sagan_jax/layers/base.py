"""The common base of the layers that own a weight (``Conv``, ``Dense``, ``Embed``, …).

The options every such layer takes are declared here once, keyword-only, so a
subclass lists only its own positional fields (``Conv(features, kernel_size,
strides, padding)``), and the steps every such layer takes are written here
once: declare the weight (explaining a shape mismatch with stored variables),
divide it by its spectral norm when asked, add the bias. Flax's conventions
live here too: ``dtype`` (the computation's; None: promote the input and the
parameters, as ``flax.linen.Dense`` does), ``param_dtype``, ``precision``,
``kernel_init``, ``bias_init``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers.initializers import torch_uniform
from sagan_jax.layers.spectral_norm import DEFAULT_EPS, spectral_normalized
from sagan_jax.layers.validation import shaped_param

Initializer = Callable[..., jax.Array]
Dtype = Any  # a jnp dtype or its name
PrecisionLike = Any  # None, a jax.lax.Precision or a pair of them


class WeightLayer(nn.Module):
  """A layer with one weight that may be spectrally normalized.

  Attributes:
    spectral_norm: divide the weight by its spectral norm (as
      ``torch.nn.utils.spectral_norm``), with ``u``, ``v`` and ``sigma`` in the
      ``spectral`` collection.
    num_power_iterations: power-iteration rounds per train-mode call.
    spectral_eps: normalization floor of the power iteration.
    update_stats: train mode for spectral norm; may also be given at call time
      (merged as Flax's BatchNorm merges ``use_running_average``), as a Python
      bool or a traced one (under ``nn.scan``, ``nn.remat``; see
      ``spectral_normalized``).
    dtype: the computation's dtype (None: the input's and parameters' promoted).
    param_dtype: the parameters' dtype.
    precision: ``jax.lax.Precision`` of the products (None: the default).
  """

  _: dataclasses.KW_ONLY
  spectral_norm: bool = False
  num_power_iterations: int = 1
  spectral_eps: float = DEFAULT_EPS
  update_stats: Optional[bool] = None
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = None

  def _weight(self, name: str, init: Initializer, shape: tuple[int, ...],
              update_stats: Optional[bool], *, out_axis: int = -1) -> jax.Array:
    """The parameter ``name`` of ``shape``, spectrally normalized if asked.

    ``out_axis`` is the weight's output dimension, the rows of the matrix
    whose spectral norm is taken.
    """
    weight = shaped_param(self, name, init, shape, self.param_dtype)
    if not self.spectral_norm:
      return weight
    update = nn.merge_param("update_stats", self.update_stats, update_stats)
    return spectral_normalized(self, weight, update_stats=update, out_axis=out_axis,
                               num_iterations=self.num_power_iterations,
                               eps=self.spectral_eps)


class KernelLayer(WeightLayer):
  """A ``WeightLayer`` whose weight is a ``kernel`` with the output last, plus a bias.

  Attributes:
    use_bias: add a bias.
    kernel_init, bias_init: default to PyTorch's ``U(±1/√fan_in)``.
  """

  _: dataclasses.KW_ONLY
  use_bias: bool = True
  kernel_init: Optional[Initializer] = None
  bias_init: Optional[Initializer] = None

  def _kernel(self, shape: tuple[int, ...], fan_in: int,
              update_stats: Optional[bool]) -> jax.Array:
    """The (maybe spectrally normalized) ``kernel`` of ``shape``, output features last."""
    return self._weight("kernel", self.kernel_init or torch_uniform(fan_in), shape,
                        update_stats)

  def _bias(self, features: int, fan_in: int) -> Optional[jax.Array]:
    """The ``bias`` of ``features`` entries, or None without ``use_bias``."""
    if not self.use_bias:
      return None
    return self.param("bias", self.bias_init or torch_uniform(fan_in), (features,),
                      self.param_dtype)

  def _promote(self, x: jax.Array, kernel: jax.Array, fan_in: int):
    """``(x, kernel, bias)`` in the computation's dtype (bias None without ``use_bias``)."""
    bias = self._bias(kernel.shape[-1], fan_in)
    return nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)

  @staticmethod
  def _add_bias(y: jax.Array, bias: Optional[jax.Array]) -> jax.Array:
    return y if bias is None else y + bias

