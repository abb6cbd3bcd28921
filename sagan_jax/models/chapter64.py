"""The chapter's 64×64 SAGAN generator and discriminator.

Layer for layer the PyTorch ``Generator`` and ``Discriminator`` of the seed
chapter (book 5-4 and its notebook; ``tests/reference/torch_sagan.py`` holds
them as the parity tests run them), in NHWC:

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

As in BigGAN-PyTorch, the models build their layer constructors once —
``which_conv`` (a partially applied ``Conv``/``ConvTranspose``) and
``which_attention`` — and the blocks take ``which_conv`` instead of repeating
its options.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers import BatchNorm, Conv, ConvTranspose, SelfAttention
from sagan_jax.layers.validation import layer_name

ModuleDef = Callable[..., Any]  # a module class or a partial of one

CHAPTER_KERNEL_INIT = nn.initializers.normal(stddev=0.02)
CHAPTER_BIAS_INIT = nn.initializers.zeros


def chapter_scale_init(key, shape, dtype=jnp.float32):
  """BatchNorm scale ~ N(1, 0.02), as the chapter's ``weights_init``."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def chapter_conv(conv: ModuleDef, implementation: str, dtype: Any = None) -> ModuleDef:
  """``conv`` (``Conv`` or ``ConvTranspose``) with the chapter's k4 s2 p1, init,
  ``implementation`` and compute ``dtype``; spectral norm on, as on every layer but the
  last."""
  return functools.partial(conv, kernel_size=4, strides=2, padding=1, spectral_norm=True,
                           kernel_init=CHAPTER_KERNEL_INIT, bias_init=CHAPTER_BIAS_INIT,
                           implementation=implementation, dtype=dtype)


def chapter_attention(chunk_size: Optional[int], dtype: Any = None) -> ModuleDef:
  """The seed's ``SelfAttention`` with the chapter's init and compute ``dtype``."""
  return functools.partial(SelfAttention, kernel_init=CHAPTER_KERNEL_INIT,
                           bias_init=CHAPTER_BIAS_INIT, chunk_size=chunk_size, dtype=dtype)


class ConvBlock(nn.Module):
  """``which_conv`` → (BatchNorm) → ``activation``: a ``layerN`` of the chapter's models
  (the generator's with BatchNorm and ReLU, the discriminator's LeakyReLU(0.1) alone)."""

  features: int
  which_conv: ModuleDef
  activation: Callable[[jax.Array], jax.Array]
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = self.which_conv(self.features, name="conv")(x, update_stats=train)
    if self.batch_norm:
      x = BatchNorm(scale_init=chapter_scale_init, name="bn")(x, use_running_average=not train)
    return self.activation(x)


UpBlock = functools.partial(ConvBlock, activation=nn.relu, batch_norm=True)
DownBlock = functools.partial(ConvBlock,
                              activation=functools.partial(nn.leaky_relu, negative_slope=0.1))


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
    w = self.width
    which_conv = chapter_conv(ConvTranspose, self.conv_implementation, self.dtype)
    which_attention = chapter_attention(self.attention_chunk_size, self.dtype)
    x = z.astype(self.dtype).reshape(z.shape[0], 1, 1, self.z_dim)
    first_conv = functools.partial(which_conv, strides=1, padding=0)  # 1×1 → 4×4
    x = UpBlock(8 * w, first_conv, name="layer1")(x, train=train)
    x = UpBlock(4 * w, which_conv, name="layer2")(x, train=train)
    x = UpBlock(2 * w, which_conv, name="layer3")(x, train=train)
    x, map1 = _attend(which_attention(name="self_attention1"), x, return_attention)
    x = UpBlock(w, which_conv, name="layer4")(x, train=train)
    x, map2 = _attend(which_attention(name="self_attention2"), x, return_attention)
    x = which_conv(self.channels, spectral_norm=False, name="last")(x)
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
    w = self.width
    which_conv = chapter_conv(Conv, self.conv_implementation, self.dtype)
    which_attention = chapter_attention(self.attention_chunk_size, self.dtype)
    x = images.astype(self.dtype)
    x = DownBlock(w, which_conv, name="layer1")(x, train=train)
    x = DownBlock(2 * w, which_conv, name="layer2")(x, train=train)
    x = DownBlock(4 * w, which_conv, name="layer3")(x, train=train)
    x, map1 = _attend(which_attention(name="self_attention1"), x, return_attention)
    x = DownBlock(8 * w, which_conv, name="layer4")(x, train=train)
    x, map2 = _attend(which_attention(name="self_attention2"), x, return_attention)
    # 4×4 → 1×1: the logit.
    x = which_conv(1, strides=1, padding=0, spectral_norm=False, name="last")(x)
    logits = x.reshape(x.shape[0]).astype(jnp.float32)
    return (logits, (map1, map2)) if return_attention else logits


def _attend(layer: SelfAttention, x: jax.Array, return_attention: bool):
  if return_attention:
    return layer(x, return_attention=True)
  return layer(x), None
