"""Generators and discriminators, and ``build_gan`` to make them from a config."""

from __future__ import annotations

import jax.numpy as jnp

from sagan_jax.models.chapter64 import Discriminator64, Generator64

__all__ = ["Discriminator64", "Generator64", "build_gan"]


def build_gan(model_config, channels: int):
  """``(generator, discriminator)`` for ``config.model`` (name, z_dim, width, …)."""
  dtype = jnp.dtype(model_config.get("compute_dtype", "float32"))
  if model_config.name != "chapter64":
    raise ValueError(f"unknown model {model_config.name!r}; valid: ['chapter64']")
  shared = dict(width=model_config.width, channels=channels,
                attention_chunk_size=model_config.attention_chunk_size,
                conv_implementation=model_config.conv_implementation, dtype=dtype)
  return Generator64(z_dim=model_config.z_dim, **shared), Discriminator64(**shared)
