"""The SAGAN paper's ResNet generator and projection discriminator, at 32, 64 and 128 px.

The architecture of the paper's released code (brain-research/self-attention-gan
``generator.py``, ``discriminator.py``, ``non_local.py``) and of StudioGAN's
``src/models/resnet.py`` (which has the same 128-px network and adds the 32- and
64-px ones), class-conditional (``num_classes``) or not (``None``)::

    G: z ─ SN linear → 4×4×C₀ ─ up-blocks (conditional BN) ─ [attention] ─ …
         ─ BN ─ ReLU ─ SN conv3×3 ─ tanh
    D: x ─ optimized block ─ down-blocks ─ [attention] ─ … ─ ReLU ─ Σ_{H,W}
         ─ SN linear(1) + ⟨SN embedding(y), features⟩     (projection)

Channels per block, in multiples of the width (``g_conv_dim``/``gf_dim`` and
``d_conv_dim``/``df_dim``, 64 in both sources) — `GENERATOR_CHANNELS`,
`DISCRIMINATOR_CHANNELS`:

    G 128: 16 → 16, 8, 4, 2, 1      64: 16 → 8, 4, 2, 1      32: 4 → 4, 4, 4
    D 128: 1, 2, 4, 8, 16, 16 (the last keeps 4×4)
    D  64: 1, 2, 4, 8, 16 (the last keeps 4×4)
    D  32: 2, 2, 2, 2 (the last two keep 8×8)

Self-attention (``OfficialSelfAttention``: θ, φ C/8, g C/2, 2×2 max-pooled φ and
g, SN 1×1 output conv, γ = 0) sits after the block whose output has one of
``g_attention`` / ``d_attention``'s resolutions (the first such block in D):
the paper and its code put it at 32×32 in both networks at 128 px; StudioGAN's
configs at 64×64 (G, its ``attn_g_loc: [4]``) and after D's first block
(``attn_d_loc: [1]``) at 128 px, and at 16×16 in both at 32 px (CIFAR-10).

``bn_style`` chooses how BatchNorm is parametrized (see
``sagan_jax.layers.conditional_batch_norm``): ``'studiogan'`` (gain ``1 + SN
linear(one_hot(y))``, eps 1e-4, momentum 0.1, the last BN likewise) or
``'official'`` (per-class γ, β tables starting at 1, 0, eps 1e-5, moving
averages with decay 0.999, the last BN's 0.9999). ``shortcut_after_activation``
(D) gives its blocks' shortcuts ``relu(x)``, as StudioGAN's in-place ReLU does
(see `sagan_jax.models.resnet_blocks`). ``weight_init`` names the
initialization (`sagan_jax.models.initialization`). Module names:
``linear``, ``block1`` … (each ``conv1``, ``conv2``, ``shortcut``, ``bn1``,
``bn2``), ``attention<res>``, ``bn``, ``conv_out`` (G); ``block1`` …,
``attention<res>``, ``linear``, ``embedding`` (D). ``from_torch`` maps
StudioGAN's names onto these.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sagan_jax.layers import BatchNorm, Conv, Dense, OfficialSelfAttention, SNEmbed
from sagan_jax.layers.conditional_batch_norm import ConditionalBatchNorm
from sagan_jax.layers.spectral_norm import DEFAULT_EPS
from sagan_jax.layers.validation import layer_name
from sagan_jax.models.initialization import init_scheme
from sagan_jax.models.resnet_blocks import DiscriminatorBlock, GeneratorBlock, ModuleDef

RESOLUTIONS = (32, 64, 128)
BOTTOM = 4  # the generator starts from 4×4 features
# resolution -> (input multiple, output multiple of each up-block)
GENERATOR_CHANNELS = {
    32: (4, (4, 4, 4)),
    64: (16, (8, 4, 2, 1)),
    128: (16, (16, 8, 4, 2, 1)),
}
# resolution -> ((output multiple, downsamples) of each block; the first is the optimized one)
DISCRIMINATOR_CHANNELS = {
    32: ((2, True), (2, True), (2, False), (2, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
}
BN_STYLES = ("studiogan", "official")
# bn_style -> (epsilon, block BN momentum, last BN momentum) in PyTorch's convention.
_BN_SETTINGS = {"studiogan": (1e-4, 0.1, 0.1), "official": (1e-5, 1e-3, 1e-4)}


class Stage(NamedTuple):
  """One entry of a network's sequence: a residual block or a self-attention layer."""
  name: str  # the module name: 'block<k>' or 'attention<size>'
  multiple: int  # its output channels, in multiples of the width
  size: int  # its output's height and width
  downsample: bool = False  # (discriminator blocks)

  @property
  def is_attention(self) -> bool:
    return self.name.startswith("attention")


def generator_stages(resolution: int, attention: Sequence[int]) -> list[Stage]:
  """The generator's blocks and attention layers, in order (see the module docstring)."""
  stages, size = [], BOTTOM
  for index, multiple in enumerate(GENERATOR_CHANNELS[resolution][1], start=1):
    size *= 2
    stages.append(Stage(f"block{index}", multiple, size))
    if size in attention:
      stages.append(Stage(f"attention{size}", multiple, size))
  return stages


def discriminator_stages(resolution: int, attention: Sequence[int]) -> list[Stage]:
  """The discriminator's blocks and attention layers, in order; attention follows the
  first block with an output of its size."""
  stages, size, attended = [], resolution, set()
  for index, (multiple, down) in enumerate(DISCRIMINATOR_CHANNELS[resolution], start=1):
    size //= 2 if down else 1
    stages.append(Stage(f"block{index}", multiple, size, down))
    if size in attention and size not in attended:
      attended.add(size)
      stages.append(Stage(f"attention{size}", multiple, size))
  return stages


def _check_resolution(module: nn.Module, resolution: int) -> None:
  if resolution not in RESOLUTIONS:
    raise ValueError(f"{layer_name(module)} makes {list(RESOLUTIONS)} px images, "
                     f"got {resolution}")


def _labels(module: nn.Module, labels: Optional[jax.Array], batch: int,
            num_classes: Optional[int]) -> Optional[jax.Array]:
  """Checks that ``labels`` fit the model: ``(batch,)`` ints iff it is conditional."""
  if num_classes is None:
    if labels is not None:
      raise ValueError(f"{layer_name(module)} is unconditional (num_classes=None) but got "
                       "labels")
    return None
  if labels is None:
    raise ValueError(f"{layer_name(module)} is conditional ({num_classes} classes) and needs "
                     f"labels of shape ({batch},)")
  labels = jnp.asarray(labels)
  if labels.shape != (batch,) or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{layer_name(module)} expects integer labels of shape ({batch},), got "
                     f"{labels.dtype} {labels.shape}")
  return labels


def _which_conv(init: str, spectral_eps: float, implementation: str) -> ModuleDef:
  scheme = init_scheme(init)
  return functools.partial(Conv, spectral_norm=True, spectral_eps=spectral_eps,
                           kernel_init=scheme.kernel, bias_init=scheme.bias,
                           implementation=implementation)


def _which_attention(init: str, chunk_size: Optional[int]) -> ModuleDef:
  # The attention's 1×1 convs keep the layers' SN floor (1e-12): max(‖x‖, eps) only
  # differs from StudioGAN's 1e-6 for a power-iteration vector of norm below 1e-6.
  return functools.partial(OfficialSelfAttention, kernel_init=init_scheme(init).kernel,
                           chunk_size=chunk_size)


def _attend(layer: nn.Module, x: jax.Array, return_attention: bool, train: bool):
  if return_attention:
    return layer(x, return_attention=True, update_stats=train)
  return layer(x, update_stats=train), None


class ResNetGenerator(nn.Module):
  """``(z (B, z_dim), labels (B,) | None)`` → images ``(B, R, R, channels)`` in [-1, 1].

  ``train=True`` uses batch statistics and advances spectral norm (apply with
  ``mutable=['spectral', 'batch_stats']``). ``return_attention=True`` returns
  ``(images, maps)``, one (B, N, N/4) map per attention layer.

  Attributes:
    resolution: 32, 64 or 128.
    z_dim, width (``g_conv_dim``), channels: latent size, channel unit, image channels.
    num_classes: classes of the conditional BN; None: unconditional (plain BN).
    attention: feature resolutions after which self-attention runs.
    weight_init: 'xavier' | 'orthogonal' | 'pytorch'.
    bn_style: 'studiogan' | 'official'.
    cbn_spectral_norm: spectral norm on the conditional BN's class tables.
    spectral_eps: the power iteration's normalization floor (StudioGAN: 1e-6).
    attention_chunk_size, conv_implementation, dtype: as the chapter's models.
  """

  resolution: int = 128
  z_dim: int = 128
  width: int = 64
  channels: int = 3
  num_classes: Optional[int] = None
  attention: Sequence[int] = (32,)
  weight_init: str = "xavier"
  bn_style: str = "official"
  cbn_spectral_norm: bool = False
  spectral_eps: float = DEFAULT_EPS
  attention_chunk_size: Optional[int] = 1024
  conv_implementation: str = "auto"
  dtype: Any = jnp.float32

  def which_bn(self, last: bool = False) -> ModuleDef:
    """The BatchNorm constructor of the blocks (conditional when ``num_classes``), or of
    the last BN (``last``, never conditional)."""
    epsilon, momentum, last_momentum = _BN_SETTINGS[self.bn_style]
    if last or self.num_classes is None:
      return functools.partial(BatchNorm, epsilon=epsilon,
                               momentum=last_momentum if last else momentum)
    scheme = init_scheme(self.weight_init)
    if self.bn_style == "official":  # γ, β tables: gain = γ[y]
      tables = dict(gain_offset=0.0, gain_init=nn.initializers.ones,
                    bias_init=nn.initializers.zeros)
    else:  # gain = 1 + W_g[y], initialized like the other linear layers
      tables = dict(gain_offset=1.0, gain_init=scheme.kernel, bias_init=scheme.kernel)
    return functools.partial(ConditionalBatchNorm, self.num_classes, momentum=momentum,
                             epsilon=epsilon, spectral_norm=self.cbn_spectral_norm,
                             spectral_eps=self.spectral_eps, **tables)

  @nn.compact
  def __call__(self, z: jax.Array, labels: Optional[jax.Array] = None, *, train: bool = False,
               return_attention: bool = False):
    _check_resolution(self, self.resolution)
    if z.ndim != 2 or z.shape[1] != self.z_dim:
      raise ValueError(f"{layer_name(self)} expects z of shape (batch, {self.z_dim}), "
                       f"got {z.shape}.")
    labels = _labels(self, labels, z.shape[0], self.num_classes)
    scheme = init_scheme(self.weight_init)
    which_conv = _which_conv(self.weight_init, self.spectral_eps, self.conv_implementation)
    which_attention = _which_attention(self.weight_init, self.attention_chunk_size)
    which_bn = self.which_bn()
    first = GENERATOR_CHANNELS[self.resolution][0]
    x = Dense(BOTTOM * BOTTOM * first * self.width, spectral_norm=True,
              spectral_eps=self.spectral_eps, kernel_init=scheme.kernel, bias_init=scheme.bias,
              name="linear")(z.astype(self.dtype), update_stats=train)
    x = x.reshape(z.shape[0], BOTTOM, BOTTOM, first * self.width)
    maps = []
    for stage in generator_stages(self.resolution, self.attention):
      if stage.is_attention:
        x, attention_map = _attend(which_attention(name=stage.name), x, return_attention, train)
        maps.append(attention_map)
      else:
        x = GeneratorBlock(stage.multiple * self.width, which_conv, which_bn, name=stage.name)(
            x, labels, train=train)
    x = nn.relu(self.which_bn(last=True)(name="bn")(x, use_running_average=not train))
    x = which_conv(self.channels, kernel_size=3, padding=1, name="conv_out")(
        x, update_stats=train)
    images = jnp.tanh(x.astype(jnp.float32))
    return (images, tuple(maps)) if return_attention else images


class ResNetDiscriminator(nn.Module):
  """``(images (B, R, R, channels), labels (B,) | None)`` → logits ``(B,)``.

  The projection discriminator: ``linear(φ(x)) + ⟨embedding(y), φ(x)⟩`` with
  ``φ(x)`` the ReLU'd last features summed over positions. ``train=True``
  advances spectral norm (``mutable=['spectral']``).

  Attributes:
    resolution, width (``d_conv_dim``), channels, num_classes, attention, weight_init,
    spectral_eps, attention_chunk_size, conv_implementation, dtype: as the generator's.
    shortcut_after_activation: the blocks after the first add ``relu(x)``, not ``x``,
      through their shortcut (StudioGAN's in-place ReLU; off: the official code).
  """

  resolution: int = 128
  width: int = 64
  channels: int = 3
  num_classes: Optional[int] = None
  attention: Sequence[int] = (32,)
  weight_init: str = "xavier"
  spectral_eps: float = DEFAULT_EPS
  shortcut_after_activation: bool = False
  attention_chunk_size: Optional[int] = 1024
  conv_implementation: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, labels: Optional[jax.Array] = None, *,
               train: bool = False, return_attention: bool = False):
    _check_resolution(self, self.resolution)
    shape = (self.resolution, self.resolution, self.channels)
    if images.ndim != 4 or images.shape[1:] != shape:
      raise ValueError(f"{layer_name(self)} expects images of shape (batch, "
                       f"{', '.join(map(str, shape))}), got {images.shape}.")
    labels = _labels(self, labels, images.shape[0], self.num_classes)
    scheme = init_scheme(self.weight_init)
    which_conv = _which_conv(self.weight_init, self.spectral_eps, self.conv_implementation)
    which_attention = _which_attention(self.weight_init, self.attention_chunk_size)
    x = images.astype(self.dtype)
    maps = []
    for index, stage in enumerate(discriminator_stages(self.resolution, self.attention)):
      if stage.is_attention:
        x, attention_map = _attend(which_attention(name=stage.name), x, return_attention, train)
        maps.append(attention_map)
      else:
        x = DiscriminatorBlock(stage.multiple * self.width, which_conv,
                               downsample=stage.downsample, optimized=index == 0,
                               shortcut_after_activation=self.shortcut_after_activation,
                               name=stage.name)(x, train=train)
    # Sum over positions in float32 (bf16 would round a sum of 16-4096 terms).
    features = jnp.sum(nn.relu(x).astype(jnp.float32), axis=(1, 2))
    logits = Dense(1, spectral_norm=True, spectral_eps=self.spectral_eps,
                   kernel_init=scheme.kernel, bias_init=scheme.bias, name="linear")(
                       features, update_stats=train)[:, 0]
    if labels is not None:
      embedding = SNEmbed(self.num_classes, features.shape[-1], spectral_eps=self.spectral_eps,
                          embedding_init=scheme.embedding, name="embedding")(
                              labels, update_stats=train)
      logits = logits + jnp.sum(embedding * features, axis=-1)
    return (logits, tuple(maps)) if return_attention else logits
