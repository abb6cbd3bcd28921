"""One GAN training step, in the chapter's order.

    D update:  D(x), G(z₁), D(G(z₁)) → hinge loss → Adam step on D
    G update:  G(z₂), D(G(z₂)) with the *updated* D → −mean → Adam step on G

Every network call runs in train mode, so — exactly as in the PyTorch loop —
D's spectral-norm vectors advance three times per step and G's twice, and G's
BatchNorm running statistics are updated twice. The step is a pure function of
``(state, batch)``; ``make_train_step`` closes over the modules, optimizers
and loss so the result can be jitted, sharded and scanned.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from sagan_jax.losses import GANLoss
from sagan_jax.train.state import GANState, NetworkState

Metrics = dict[str, jax.Array]
TRAIN_MUTABLE = ("spectral", "batch_stats")


def _apply_train(module: nn.Module, variables, x):
  """A train-mode call that returns ``(output, updated non-param collections)``."""
  out, updated = module.apply(variables, x, train=True, mutable=list(TRAIN_MUTABLE))
  return out, dict(updated)


def _merge(collections, updated):
  return {**collections, **updated}


def _update(network: NetworkState, grads, tx: optax.GradientTransformation,
            collections) -> NetworkState:
  updates, opt_state = tx.update(grads, network.opt_state, network.params)
  return NetworkState(params=optax.apply_updates(network.params, updates),
                      collections=collections, opt_state=opt_state)


def spectral_norms(collections, prefix: str) -> Metrics:
  """``{'sigma/<prefix>/<layer path>': σ}`` for every spectrally normalized layer."""
  flat = traverse_util.flatten_dict(collections.get("spectral", {}), sep="/")
  return {f"sigma/{prefix}/{path[:-len('/sigma')]}": value
          for path, value in flat.items() if path.endswith("/sigma")}


def attention_gates(params, prefix: str) -> Metrics:
  """``{'gamma/<prefix>/<layer path>': γ}`` for every self-attention layer."""
  flat = traverse_util.flatten_dict(params, sep="/")
  return {f"gamma/{prefix}/{path[:-len('/gamma')]}": value
          for path, value in flat.items() if path.endswith("/gamma")}


def make_gan_update(generator: nn.Module, discriminator: nn.Module,
                    g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                    loss: GANLoss):
  """Builds ``gan_update(state, images, z_d, z_g) -> (state, metrics)``: one step
  with given noise (``z_d`` for the D update, ``z_g`` for the G update)."""

  def gan_update(state: GANState, images: jax.Array, z_d: jax.Array, z_g: jax.Array
                 ) -> tuple[GANState, Metrics]:
    g, d = state.generator, state.discriminator

    # --- Discriminator update (G runs in train mode too, as in the chapter). ---
    def d_loss_fn(d_params):
      real_logits, d_coll = _apply_train(discriminator, d.variables(d_params), images)
      d_coll = _merge(d.collections, d_coll)
      fakes, g_coll = _apply_train(generator, g.variables(), z_d)
      fake_logits, d_coll2 = _apply_train(discriminator, {"params": d_params, **d_coll}, fakes)
      loss_value = loss.discriminator(real_logits, fake_logits)
      return loss_value, (_merge(d_coll, d_coll2), _merge(g.collections, g_coll),
                          real_logits, fake_logits)

    (d_loss, (d_coll, g_coll, real_logits, fake_logits)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(d.params)
    d = _update(d, d_grads, d_tx, d_coll)

    # --- Generator update against the updated discriminator. ---
    def g_loss_fn(g_params):
      fakes, g_coll2 = _apply_train(generator, {"params": g_params, **g_coll}, z_g)
      logits, d_coll2 = _apply_train(discriminator, d.variables(), fakes)
      return loss.generator(logits), (_merge(g_coll, g_coll2), _merge(d.collections, d_coll2))

    (g_loss, (g_coll, d_coll)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g.params)
    g = _update(g, g_grads, g_tx, g_coll)
    d = d.replace(collections=d_coll)

    metrics = {
        "d_loss": d_loss,
        "g_loss": g_loss,
        "d_real": jnp.mean(real_logits),
        "d_fake": jnp.mean(fake_logits),
        **spectral_norms(g.collections, "G"),
        **spectral_norms(d.collections, "D"),
        **attention_gates(g.params, "G"),
        **attention_gates(d.params, "D"),
    }
    return GANState(step=state.step + 1, rng=state.rng, generator=g, discriminator=d), metrics

  return gan_update


def make_train_step(generator: nn.Module, discriminator: nn.Module,
                    g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                    loss: GANLoss, z_dim: int) -> Callable[[GANState, Any], tuple[GANState, Metrics]]:
  """Builds ``train_step(state, batch) -> (state, metrics)``.

  ``batch['image']`` is (B, H, W, C) in [-1, 1]. The noise comes from
  ``fold_in(state.rng, state.step)``, so a step is reproducible from the
  state alone.
  """
  gan_update = make_gan_update(generator, discriminator, g_tx, d_tx, loss)

  def train_step(state: GANState, batch) -> tuple[GANState, Metrics]:
    images = batch["image"]
    z_d_key, z_g_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
    z_d = jax.random.normal(z_d_key, (images.shape[0], z_dim), jnp.float32)
    z_g = jax.random.normal(z_g_key, (images.shape[0], z_dim), jnp.float32)
    return gan_update(state, images, z_d, z_g)

  return train_step


def make_multi_step(train_step: Callable[[GANState, Any], tuple[GANState, Metrics]]):
  """``multi_step(state, batches) -> (state, metrics)``: ``lax.scan`` of
  ``train_step`` over batches stacked on a leading axis of length K.

  One dispatch runs K steps, which removes the per-step Python and dispatch
  overhead that dominates small models on fast accelerators. Metrics are
  those of the last step (losses of every step are returned too, for the
  non-finite check).
  """

  def multi_step(state: GANState, batches) -> tuple[GANState, Metrics]:
    def body(state, batch):
      state, metrics = train_step(state, batch)
      return state, metrics

    state, stacked = jax.lax.scan(body, state, batches)
    metrics = jax.tree.map(lambda m: m[-1], stacked)
    metrics["all_d_loss"] = stacked["d_loss"]
    metrics["all_g_loss"] = stacked["g_loss"]
    return state, metrics

  return multi_step
