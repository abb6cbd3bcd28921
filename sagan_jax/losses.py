"""GAN losses as small pure functions, chosen by name from the config.

Each loss is a pair: the discriminator's loss from real and fake logits, and
the generator's loss from fake logits. All are means over the batch, so under
data-parallel sharding they are the global batch's.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class GANLoss(NamedTuple):
  discriminator: Callable[[jax.Array, jax.Array], jax.Array]
  generator: Callable[[jax.Array], jax.Array]


def hinge_discriminator(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """``E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]`` (the chapter's D loss)."""
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_generator(fake_logits: jax.Array) -> jax.Array:
  """``-E[D(G(z))]`` (the chapter's G loss)."""
  return -jnp.mean(fake_logits)


def non_saturating_discriminator(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Binary cross-entropy on logits: ``E[softplus(-D(x))] + E[softplus(D(G(z)))]``."""
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_generator(fake_logits: jax.Array) -> jax.Array:
  """``E[softplus(-D(G(z)))]``, i.e. ``-log σ(D(G(z)))``."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


LOSSES = {
    "hinge": GANLoss(hinge_discriminator, hinge_generator),
    "non_saturating": GANLoss(non_saturating_discriminator, non_saturating_generator),
}


def get_loss(name: str) -> GANLoss:
  """The loss pair called ``name`` (a ``ValueError`` lists the valid names)."""
  try:
    return LOSSES[name]
  except KeyError:
    raise ValueError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}") from None
