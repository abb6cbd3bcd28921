"""The chapter's 64×64 SAGAN generator and discriminator.

Layer for layer the PyTorch models of the seed chapter (DESIGN.md), in NHWC:

    G: z → SNConvT(8w, k4 s1) BN ReLU → SNConvT(4w, k4 s2 p1) BN ReLU
         → SNConvT(2w) BN ReLU → Attn(2w) → SNConvT(w) BN ReLU → Attn(w)
         → ConvT(channels, k4 s2 p1) tanh                         (64×64)
    D: x → SNConv(w, k4 s2 p1) LReLU(0.1) → SNConv(2w) LReLU → SNConv(4w) LReLU
         → Attn(4w) → SNConv(8w) LReLU → Attn(8w) → Conv(1, k4 s1)  (logit)

``width`` is the chapter's ``image_size`` (a channel multiplier). Weights start
as the chapter's ``weights_init``: conv kernels N(0, 0.02), biases 0, BN scales
N(1, 0.02). Module names follow the PyTorch ones (``layer1`` … ``last``,
``self_attention1/2`` for its ``self_attntion1/2``), each block holding
``conv`` (and ``bn``), so ``sagan_jax.interop.torch.from_torch`` maps them 1:1.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers import BatchNorm, Conv, ConvTranspose, SelfAttention
from sagan_jax.layers.validation import layer_name

CHAPTER_KERNEL_INIT = nn.initializers.normal(stddev=0.02)
CHAPTER_BIAS_INIT = nn.initializers.zeros


def chapter_scale_init(key, shape, dtype=jnp.float32):
  """BatchNorm scale ~ N(1, 0.02), as the chapter's ``weights_init``."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class UpBlock(nn.Module):
  """SN transposed conv → BatchNorm → ReLU (the generator's ``layerN``)."""

  features: int
  strides: int = 2
  padding: int = 1
  conv_implementation: str = "auto"

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = ConvTranspose(self.features, kernel_size=4, strides=self.strides, padding=self.padding,
                      spectral_norm=True, kernel_init=CHAPTER_KERNEL_INIT,
                      bias_init=CHAPTER_BIAS_INIT, implementation=self.conv_implementation,
                      name="conv")(x, update_stats=train)
    x = BatchNorm(scale_init=chapter_scale_init, name="bn")(x, use_running_average=not train)
    return nn.relu(x)


class DownBlock(nn.Module):
  """SN conv (k4 s2 p1) → LeakyReLU(0.1) (the discriminator's ``layerN``)."""

  features: int
  conv_implementation: str = "auto"

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = Conv(self.features, kernel_size=4, strides=2, padding=1, spectral_norm=True,
             kernel_init=CHAPTER_KERNEL_INIT, bias_init=CHAPTER_BIAS_INIT,
             implementation=self.conv_implementation, name="conv")(x, update_stats=train)
    return nn.leaky_relu(x, negative_slope=0.1)


def _chapter_attention(name: str, chunk_size: Optional[int]) -> SelfAttention:
  return SelfAttention(kernel_init=CHAPTER_KERNEL_INIT, bias_init=CHAPTER_BIAS_INIT,
                       chunk_size=chunk_size, name=name)


class Generator64(nn.Module):
  """The chapter's generator: ``z (B, z_dim)`` → images ``(B, 64, 64, channels)`` in [-1, 1].

  ``train=True`` uses batch statistics and advances the spectral-norm state:
  apply with ``mutable=['spectral', 'batch_stats']``. With
  ``return_attention=True`` it returns ``(images, (map1, map2))``, maps of
  shape (B, 256, 256) and (B, 1024, 1024) oriented as the seed's.
  """

  z_dim: int = 20
  width: int = 64
  channels: int = 1
  attention_chunk_size: Optional[int] = 1024
  conv_implementation: str = "auto"
  dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool = False, return_attention: bool = False):
    if z.ndim != 2 or z.shape[1] != self.z_dim:
      raise ValueError(f"{layer_name(self)} expects z of shape (batch, {self.z_dim}), "
                       f"got {z.shape}.")
    w, impl = self.width, self.conv_implementation
    x = z.astype(self.dtype).reshape(z.shape[0], 1, 1, self.z_dim)
    x = UpBlock(8 * w, strides=1, padding=0, conv_implementation=impl, name="layer1")(x, train=train)
    x = UpBlock(4 * w, conv_implementation=impl, name="layer2")(x, train=train)
    x = UpBlock(2 * w, conv_implementation=impl, name="layer3")(x, train=train)
    x, map1 = _attend(_chapter_attention("self_attention1", self.attention_chunk_size), x,
                      return_attention)
    x = UpBlock(w, conv_implementation=impl, name="layer4")(x, train=train)
    x, map2 = _attend(_chapter_attention("self_attention2", self.attention_chunk_size), x,
                      return_attention)
    x = ConvTranspose(self.channels, kernel_size=4, strides=2, padding=1,
                      kernel_init=CHAPTER_KERNEL_INIT, bias_init=CHAPTER_BIAS_INIT,
                      implementation=impl, name="last")(x)
    images = jnp.tanh(x.astype(jnp.float32))
    return (images, (map1, map2)) if return_attention else images


class Discriminator64(nn.Module):
  """The chapter's discriminator: images ``(B, 64, 64, channels)`` → logits ``(B,)``.

  ``train=True`` advances the spectral-norm state (``mutable=['spectral']``).
  With ``return_attention=True`` it returns ``(logits, (map1, map2))``, maps of
  shape (B, 64, 64) and (B, 16, 16).
  """

  width: int = 64
  channels: int = 1
  attention_chunk_size: Optional[int] = 1024
  conv_implementation: str = "auto"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False, return_attention: bool = False):
    if images.ndim != 4 or images.shape[1:] != (64, 64, self.channels):
      raise ValueError(f"{layer_name(self)} expects images of shape (batch, 64, 64, "
                       f"{self.channels}), got {images.shape}.")
    w, impl = self.width, self.conv_implementation
    x = images.astype(self.dtype)
    x = DownBlock(w, conv_implementation=impl, name="layer1")(x, train=train)
    x = DownBlock(2 * w, conv_implementation=impl, name="layer2")(x, train=train)
    x = DownBlock(4 * w, conv_implementation=impl, name="layer3")(x, train=train)
    x, map1 = _attend(_chapter_attention("self_attention1", self.attention_chunk_size), x,
                      return_attention)
    x = DownBlock(8 * w, conv_implementation=impl, name="layer4")(x, train=train)
    x, map2 = _attend(_chapter_attention("self_attention2", self.attention_chunk_size), x,
                      return_attention)
    x = Conv(1, kernel_size=4, strides=1, padding=0, kernel_init=CHAPTER_KERNEL_INIT,
             bias_init=CHAPTER_BIAS_INIT, implementation=impl, name="last")(x)
    logits = x.reshape(x.shape[0]).astype(jnp.float32)
    return (logits, (map1, map2)) if return_attention else logits


def _attend(layer: SelfAttention, x: jax.Array, return_attention: bool):
  if return_attention:
    return layer(x, return_attention=True)
  return layer(x), None
