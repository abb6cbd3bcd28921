"""The residual blocks of the SAGAN paper's ResNet generator and discriminator.

Generator block (up, ×2), as ``generator.py:block`` of the released code and
StudioGAN's ``GenBlock``::

    x ─ BN ─ ReLU ─ up×2 ─ conv3×3 ─ BN ─ ReLU ─ conv3×3 ─┐
    └──────────────── conv1×1 ─ up×2 ─────────────────────+─ out

Discriminator block (``discriminator.py:block`` / ``DiscBlock``) and the
optimized first block (``optimized_block`` / ``DiscOptBlock``)::

    x ─ ReLU ─ conv3×3 ─ ReLU ─ conv3×3 ─ [avgpool] ─┐       (optimized: no first ReLU)
    └────── [avgpool] ─ conv1×1 ─────────────────────+─ out   (identity when neither
                                                              downsampling nor widening)

``shortcut_after_activation`` feeds a (non-optimized) block's shortcut ``relu(x)``
instead of ``x``: what StudioGAN's ``DiscBlock`` computes, by accident. Its
activation is ``nn.ReLU(inplace=True)`` and ``forward`` keeps ``x0 = x`` before
``x = self.activation(x)``, so the in-place ReLU rewrites ``x0`` too (the 1×1
shortcut, or the identity, sees ``relu(x)``). The official TF code and
BigGAN-PyTorch (whose ``DBlock`` warns against exactly this) use ``x``. The
optimized block has no activation before its shortcut, so it is unaffected.

The sources apply the 1×1 shortcut convolution at the *larger* resolution
(after the generator's upsampling, before the discriminator's pooling). A
1×1 convolution commutes with nearest upsampling and with average pooling,
so here it runs at the smaller one: the same function, 4× fewer FLOPs (float32
sums in another order). Likewise the generator's upsample + conv3×3 runs as four
phase convolutions on the small map, and the discriminator's conv3×3 + avgpool
(bias added after the pool) on CPU as one stride-2 4×4 convolution
(`sagan_jax.ops.upsample_convolution`, `sagan_jax.ops.pooled_convolution`).
BatchNorm (``which_bn``) is conditional when the block gets labels;
``which_conv`` carries spectral norm, init and the conv implementation, as
BigGAN's partially applied constructors do.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax

from sagan_jax.ops.pooling import avg_pool_2x2
from sagan_jax.ops.upsample_convolution import upsample_nearest_2x

ModuleDef = Callable[..., Any]


def normalize(which_bn: ModuleDef, name: str, x: jax.Array, labels: Optional[jax.Array],
              train: bool) -> jax.Array:
  """``which_bn`` (a ``ConditionalBatchNorm`` or a ``BatchNorm``) applied to ``x``."""
  if labels is None:
    return which_bn(name=name)(x, use_running_average=not train)
  return which_bn(name=name)(x, labels, train=train)


class GeneratorBlock(nn.Module):
  """Up residual block: ``(B, H, W, C_in)`` → ``(B, 2H, 2W, features)``."""

  features: int
  which_conv: ModuleDef
  which_bn: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, labels: Optional[jax.Array], *, train: bool) -> jax.Array:
    shortcut = self.which_conv(self.features, kernel_size=1, name="shortcut")(
        x, update_stats=train)
    h = nn.relu(normalize(self.which_bn, "bn1", x, labels, train))
    # conv3×3(up×2(h)) as four 2×2 phase convolutions on h: 2.25× fewer FLOPs, same function.
    h = self.which_conv(self.features, kernel_size=3, padding=1, upsample=True, name="conv1")(
        h, update_stats=train)
    h = nn.relu(normalize(self.which_bn, "bn2", h, labels, train))
    h = self.which_conv(self.features, kernel_size=3, padding=1, name="conv2")(
        h, update_stats=train)
    return h + upsample_nearest_2x(shortcut)


class DiscriminatorBlock(nn.Module):
  """Residual block of the discriminator; ``optimized`` is its first block (on images)."""

  features: int
  which_conv: ModuleDef
  downsample: bool = True
  optimized: bool = False
  shortcut_after_activation: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    h = x if self.optimized else nn.relu(x)
    shortcut = h if self.shortcut_after_activation else x
    h = self.which_conv(self.features, kernel_size=3, padding=1, name="conv1")(
        h, update_stats=train)
    # avg_pool(conv3×3(h)), on CPU as one stride-2 4×4 convolution: 2.25× fewer FLOPs.
    h = self.which_conv(self.features, kernel_size=3, padding=1, downsample=self.downsample,
                        name="conv2")(nn.relu(h), update_stats=train)
    if self.downsample:
      shortcut = avg_pool_2x2(shortcut)
    if self.downsample or x.shape[-1] != self.features:
      shortcut = self.which_conv(self.features, kernel_size=1, name="shortcut")(
          shortcut, update_stats=train)
    return h + shortcut
