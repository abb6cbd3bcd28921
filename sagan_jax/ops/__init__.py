"""Low-level array ops (pure functions) used by the layers."""

from sagan_jax.ops.convolution import conv2d, conv_transpose2d

__all__ = ['conv2d', 'conv_transpose2d']
