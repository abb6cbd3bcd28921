"""Low-level array ops (pure functions) used by the layers."""

from sagan_jax.ops.attention import attend, attention_weights
from sagan_jax.ops.convolution import conv2d, conv_transpose2d

__all__ = ['attend', 'attention_weights', 'conv2d', 'conv_transpose2d']
