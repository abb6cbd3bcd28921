"""Generators and discriminators, and the one registry that builds them from a config.

``MODELS`` maps ``config.model.name`` to a `ModelSpec`: how to build the pair
from ``config.model`` and the data's image shape, and which combinations it
cannot make (checked before any compute). Adding a model is one entry here.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from sagan_jax.models.chapter64 import Discriminator64, Generator64
from sagan_jax.models.initialization import INIT_NAMES
from sagan_jax.models.resnet import (BN_STYLES, RESOLUTIONS, ResNetDiscriminator,
                                     ResNetGenerator, discriminator_stages, generator_stages)

__all__ = ["Discriminator64", "Generator64", "MODELS", "MODEL_NAMES", "ModelSpec",
           "ResNetDiscriminator", "ResNetGenerator", "build_gan", "build_generator",
           "check_model_config", "is_conditional"]

ImageShape = tuple[int, int, int]


class ModelSpec(NamedTuple):
  """How to build one model family from ``(config.model, image shape)``."""
  generator: Callable[[Any, ImageShape], nn.Module]
  discriminator: Callable[[Any, ImageShape], nn.Module]
  check: Callable[[Any, ImageShape], None]  # raises ValueError for what it cannot make


def _chapter64_options(model_config, image_shape: ImageShape) -> dict[str, Any]:
  return dict(width=model_config.width, channels=image_shape[-1],
              attention_chunk_size=model_config.attention_chunk_size,
              conv_implementation=model_config.conv_implementation,
              dtype=jnp.dtype(model_config.compute_dtype))


def _check_chapter64(model_config, image_shape: ImageShape) -> None:
  if model_config.get("num_classes") is not None:
    raise ValueError("model 'chapter64' is unconditional; set config.model.num_classes=None "
                     "or use model 'resnet'")
  if image_shape[:2] != (64, 64):
    raise ValueError(f"model 'chapter64' makes 64×64 images; config.data.image_size is "
                     f"{image_shape[0]}")
  if model_config.width < 8 or model_config.width % 8:
    raise ValueError(
        f"config.model.width must be a multiple of 8 (its self-attention layers need "
        f"channels divisible by 8), got {model_config.width}")


def _resnet_options(model_config, image_shape: ImageShape) -> dict[str, Any]:
  return dict(resolution=image_shape[0], channels=image_shape[-1],
              num_classes=model_config.num_classes, weight_init=model_config.weight_init,
              spectral_eps=model_config.spectral_eps,
              attention_chunk_size=model_config.attention_chunk_size,
              conv_implementation=model_config.conv_implementation,
              dtype=jnp.dtype(model_config.compute_dtype))


def _d_width(model_config) -> int:
  return model_config.width if model_config.d_width is None else model_config.d_width


def _check_resnet(model_config, image_shape: ImageShape) -> None:
  height, width, _ = image_shape
  if height != width or height not in RESOLUTIONS:
    raise ValueError(f"model 'resnet' makes square {list(RESOLUTIONS)} px images; "
                     f"config.data.image_size is {height}")
  num_classes = model_config.num_classes
  if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(
      num_classes, int) or num_classes < 1):
    raise ValueError(f"config.model.num_classes must be None (unconditional) or an int >= 1, "
                     f"got {num_classes!r}")
  if model_config.weight_init not in INIT_NAMES:
    raise ValueError(f"config.model.weight_init must be one of {list(INIT_NAMES)}, got "
                     f"{model_config.weight_init!r}")
  if model_config.bn_style not in BN_STYLES:
    raise ValueError(f"config.model.bn_style must be one of {list(BN_STYLES)}, got "
                     f"{model_config.bn_style!r}")
  for net, field, stages, unit in (
      ("G", "g_attention", generator_stages(height, ()), model_config.width),
      ("D", "d_attention", discriminator_stages(height, ()), _d_width(model_config))):
    channels: dict[int, int] = {}  # feature size -> channels attention would see there
    for stage in stages:
      channels.setdefault(stage.size, stage.multiple * unit)
    for size in model_config[field]:
      if size not in channels:
        raise ValueError(f"config.model.{field}: {net} has no {size}×{size} features at "
                         f"{height} px (it has {sorted(channels)})")
      if channels[size] % 8:
        raise ValueError(f"config.model.{field}: self-attention at {size}×{size} needs "
                         f"channels divisible by 8, {net} has {channels[size]} there (raise "
                         f"config.model.{'width' if net == 'G' else 'd_width'})")


MODELS: dict[str, ModelSpec] = {
    "chapter64": ModelSpec(
        generator=lambda c, shape: Generator64(z_dim=c.z_dim, **_chapter64_options(c, shape)),
        discriminator=lambda c, shape: Discriminator64(**_chapter64_options(c, shape)),
        check=_check_chapter64),
    "resnet": ModelSpec(
        generator=lambda c, shape: ResNetGenerator(
            z_dim=c.z_dim, width=c.width, attention=tuple(c.g_attention), bn_style=c.bn_style,
            cbn_spectral_norm=c.cbn_spectral_norm, **_resnet_options(c, shape)),
        discriminator=lambda c, shape: ResNetDiscriminator(
            width=_d_width(c), attention=tuple(c.d_attention),
            shortcut_after_activation=c.get("d_shortcut_after_activation", False),
            **_resnet_options(c, shape)),
        check=_check_resnet),
}
MODEL_NAMES = tuple(MODELS)


def _spec(model_config) -> ModelSpec:
  try:
    return MODELS[model_config.name]
  except KeyError:
    raise ValueError(f"unknown model {model_config.name!r}; valid: {list(MODEL_NAMES)}") from None


def is_conditional(model_config) -> bool:
  """Whether ``config.model`` is class-conditional (G and D take labels)."""
  return model_config.get("num_classes") is not None


def check_model_config(model_config, image_shape: ImageShape) -> None:
  """Raises ``ValueError`` if ``config.model`` cannot make images of ``image_shape``."""
  _spec(model_config).check(model_config, tuple(image_shape))


def build_generator(model_config, image_shape: ImageShape) -> nn.Module:
  """The generator of ``config.model`` for images of ``(H, W, C)``."""
  check_model_config(model_config, image_shape)
  return _spec(model_config).generator(model_config, tuple(image_shape))


def build_gan(model_config, image_shape: ImageShape) -> tuple[nn.Module, nn.Module]:
  """``(generator, discriminator)`` of ``config.model`` for images of ``(H, W, C)``."""
  spec = _spec(model_config)
  return (build_generator(model_config, image_shape),
          spec.discriminator(model_config, tuple(image_shape)))
