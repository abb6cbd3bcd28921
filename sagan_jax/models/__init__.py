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

__all__ = ["Discriminator64", "Generator64", "MODELS", "MODEL_NAMES", "ModelSpec", "build_gan", "build_generator",
           "check_model_config"]

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
  if image_shape[:2] != (64, 64):
    raise ValueError(f"model 'chapter64' makes 64×64 images; config.data.image_size is "
                     f"{image_shape[0]}")
  if model_config.width < 8 or model_config.width % 8:
    raise ValueError(
        f"config.model.width must be a multiple of 8 (its self-attention layers need "
        f"channels divisible by 8), got {model_config.width}")


MODELS: dict[str, ModelSpec] = {
    "chapter64": ModelSpec(
        generator=lambda c, shape: Generator64(z_dim=c.z_dim, **_chapter64_options(c, shape)),
        discriminator=lambda c, shape: Discriminator64(**_chapter64_options(c, shape)),
        check=_check_chapter64),
}
MODEL_NAMES = tuple(MODELS)


def _spec(model_config) -> ModelSpec:
  try:
    return MODELS[model_config.name]
  except KeyError:
    raise ValueError(f"unknown model {model_config.name!r}; valid: {list(MODEL_NAMES)}") from None


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
