"""Class-conditional BatchNorm: normalize without an affine, then a per-class gain and bias.

    y = BN(x) · gain[label] + bias[label]        (BN: batch statistics, no scale/bias)

The sources differ in how the per-class gain is parametrized, and this layer
follows each where it claims compatibility (``sagan_jax.models.resnet``):

* StudioGAN (``ConditionalBatchNorm2d``, ``src/utils/ops.py``): ``gain = 1 +
  W_g · one_hot(y)``, ``bias = W_b · one_hot(y)`` with two spectrally normalized
  ``nn.Linear(num_classes, C, bias=False)`` (``LabelLinear`` here), BatchNorm
  ``eps=1e-4, momentum=0.1``: ``gain_offset=1``, ``spectral_norm=True``.
* The SAGAN paper's released TF code (``ops.ConditionalBatchNorm``): ``gamma``
  and ``beta`` tables initialised to ones and zeros, no spectral norm, eps
  1e-5, moving averages with decay 0.999: ``gain_offset=0``, ``gain_init=ones``,
  ``bias_init=zeros``, ``momentum=0.001``.

With Adam the two gain parametrizations train identically (a constant offset
does not change the gradient); they differ in initialization and in what a
stored table means.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax

from sagan_jax.layers.base import Initializer
from sagan_jax.layers.batch_norm import BatchNorm
from sagan_jax.layers.label_linear import LabelLinear
from sagan_jax.layers.spectral_norm import DEFAULT_EPS
from sagan_jax.layers.validation import layer_name


class ConditionalBatchNorm(nn.Module):
  """``BN(x) · (gain_offset + gain[y]) + bias[y]`` on NHWC features (any rank, features last).

  Attributes:
    num_classes: the labels' range.
    gain_offset: added to the looked-up gain (1: StudioGAN's ``1 + embed``).
    momentum, epsilon: of the normalization, PyTorch's conventions
      (``running = (1 - momentum)·running + momentum·batch``).
    spectral_norm: spectral norm on the gain and bias tables (StudioGAN).
    num_power_iterations, spectral_eps: of that spectral norm.
    gain_init, bias_init: initializers of the ``(num_classes, C)`` tables
      (default PyTorch's ``nn.Linear`` init, as StudioGAN before its own).
  """

  num_classes: int
  gain_offset: float = 1.0
  momentum: float = 0.1
  epsilon: float = 1e-5
  spectral_norm: bool = False
  num_power_iterations: int = 1
  spectral_eps: float = DEFAULT_EPS
  gain_init: Optional[Initializer] = None
  bias_init: Optional[Initializer] = None

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
    if labels.shape != x.shape[:1]:
      raise ValueError(f"{layer_name(self)} expects one label per example: labels of shape "
                       f"({x.shape[0]},), got {labels.shape}.")
    features = x.shape[-1]
    table = lambda name, init: LabelLinear(  # noqa: E731
        self.num_classes, features, kernel_init=init, spectral_norm=self.spectral_norm,
        num_power_iterations=self.num_power_iterations, spectral_eps=self.spectral_eps,
        name=name)(labels, update_stats=train)
    gain = self.gain_offset + table("gain", self.gain_init)
    bias = table("bias", self.bias_init)
    y = BatchNorm(momentum=self.momentum, epsilon=self.epsilon, use_scale=False,
                  use_bias=False, name="bn")(x, use_running_average=not train)
    broadcast = (x.shape[0],) + (1,) * (x.ndim - 2) + (features,)
    return y * gain.reshape(broadcast).astype(y.dtype) + bias.reshape(broadcast).astype(y.dtype)
