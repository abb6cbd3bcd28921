"""A linear map of one-hot class labels, computed as a row lookup.

StudioGAN's conditional BatchNorm (its ``ConditionalBatchNorm2d``) feeds
``one_hot(y)`` to an ``nn.Linear(num_classes, features, bias=False)``,
spectrally normalized in the SAGAN configs. ``one_hot(y) @ kernel`` is row
``y`` of the kernel, exactly (every other term is a product with 0), so
``LabelLinear`` stores that kernel, ``(num_classes, features)`` like a
``Dense`` kernel, and gathers rows: no B × num_classes one-hot matrix. Unlike
``Embed`` (``nn.Embedding``, whose spectral norm takes the classes as the
matrix's rows), the spectral norm here takes the *features* as the rows, as
PyTorch does for ``nn.Linear``; the two have the same σ but different u, v.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers.base import Initializer, WeightLayer
from sagan_jax.layers.initializers import torch_uniform
from sagan_jax.layers.validation import layer_name


class LabelLinear(WeightLayer):
  """``nn.Linear(num_classes, features, bias=False)(one_hot(labels))`` as a lookup.

  Attributes:
    num_classes: the labels' range.
    features: output features.
    kernel_init: keyword-only; default PyTorch's ``U(±1/√num_classes)``.
    spectral_norm, num_power_iterations, spectral_eps, update_stats:
      keyword-only, as in ``WeightLayer``.
  """

  num_classes: int
  features: int
  _: dataclasses.KW_ONLY
  kernel_init: Optional[Initializer] = None

  @nn.compact
  def __call__(self, labels: jax.Array, *, update_stats: Optional[bool] = None) -> jax.Array:
    if not jnp.issubdtype(labels.dtype, jnp.integer):
      raise ValueError(f"{layer_name(self)} expects integer labels, got dtype {labels.dtype}.")
    kernel = self._weight("kernel", self.kernel_init or torch_uniform(self.num_classes),
                          (self.num_classes, self.features), update_stats)
    return jnp.take(kernel, labels, axis=0)
