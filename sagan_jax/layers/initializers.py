"""Initializers with PyTorch's defaults, so a layer built here starts like its
PyTorch counterpart (``reset_parameters`` of ``nn.Linear``/``nn.Conv2d``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def torch_uniform(fan_in: int):
  """``U(-1/√fan_in, 1/√fan_in)``: PyTorch's default for weights and biases.

  (Its weight init is ``kaiming_uniform_(a=√5)``, whose bound reduces to this.)
  """
  bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init
