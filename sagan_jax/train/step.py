"""One GAN training step, in the chapter's order.

    D update:  D(x), G(z₁), D(G(z₁)) → hinge loss → Adam step on D   (× d_steps)
    G update:  G(z₂), D(G(z₂)) with the *updated* D → −mean → Adam step on G
    EMA:       the generator's moving average, when the run keeps one

A class-conditional model gets the real images' labels in D(x, y) and
uniformly drawn classes for the fakes, G(z, y_fake) and D(G(z, y_fake), y_fake).

Every network call runs in train mode, so — exactly as in the PyTorch loop —
D's spectral-norm vectors advance three times per step and G's twice, and G's
BatchNorm running statistics are updated twice. The step is a pure function of
``(state, batch)``; ``make_train_step`` closes over the modules, optimizers
and loss so the result can be jitted, sharded and scanned.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from sagan_jax.losses import GANLoss
from sagan_jax.train.ema import EmaSettings, ema_update
from sagan_jax.train.state import GANState, NetworkState

Metrics = dict[str, jax.Array]
TRAIN_MUTABLE = ("spectral", "batch_stats")


def _apply_train(module: nn.Module, variables, *inputs):
  """A train-mode call that returns ``(output, updated non-param collections)``."""
  out, updated = module.apply(variables, *inputs, train=True, mutable=list(TRAIN_MUTABLE))
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


def _inputs(x: jax.Array, labels: Optional[jax.Array]) -> tuple[jax.Array, ...]:
  """A network's positional inputs: ``(x,)``, or ``(x, labels)`` for a conditional one."""
  return (x,) if labels is None else (x, labels)


def make_gan_update(generator: nn.Module, discriminator: nn.Module,
                    g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                    loss: GANLoss, *, d_steps: int = 1, ema: Optional[EmaSettings] = None):
  """Builds ``gan_update(state, images, z_d, z_g, labels=None, fake_labels_d=None,
  fake_labels_g=None) -> (state, metrics)``: one step with given noise.

  ``z_d`` (and ``fake_labels_d``) feed the D update, ``z_g`` (and
  ``fake_labels_g``) the G update; ``labels`` are the real images' classes.
  Labels are given iff the networks are class-conditional: D then scores
  ``(x, y)`` pairs and G draws class ``y``. With ``d_steps`` > 1, ``images``,
  ``labels``, ``z_d`` and ``fake_labels_d`` carry a leading axis of that
  length: D takes one update per slice (a ``lax.scan``), then G one update.
  With ``ema``, the generator's moving average is updated after G's update.
  """

  def d_update(g: NetworkState, d: NetworkState, images, labels, z, fake_labels):
    """One D update (G runs in train mode too, as in the chapter); returns
    ``(d, G's updated collections, (loss, real logits, fake logits))``."""

    def d_loss_fn(d_params):
      real_logits, d_coll = _apply_train(discriminator, d.variables(d_params),
                                         *_inputs(images, labels))
      d_coll = _merge(d.collections, d_coll)
      fakes, g_coll = _apply_train(generator, g.variables(), *_inputs(z, fake_labels))
      fake_logits, d_coll2 = _apply_train(discriminator, {"params": d_params, **d_coll},
                                          *_inputs(fakes, fake_labels))
      loss_value = loss.discriminator(real_logits, fake_logits)
      return loss_value, (_merge(d_coll, d_coll2), _merge(g.collections, g_coll),
                          real_logits, fake_logits)

    (d_loss, (d_coll, g_coll, real_logits, fake_logits)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(d.params)
    return _update(d, d_grads, d_tx, d_coll), g_coll, (d_loss, real_logits, fake_logits)

  def gan_update(state: GANState, images: jax.Array, z_d: jax.Array, z_g: jax.Array,
                 labels: Optional[jax.Array] = None, fake_labels_d: Optional[jax.Array] = None,
                 fake_labels_g: Optional[jax.Array] = None) -> tuple[GANState, Metrics]:
    g, d = state.generator, state.discriminator

    # --- Discriminator update(s). ---
    if d_steps == 1:
      d, g_coll, (d_loss, real_logits, fake_logits) = d_update(
          g, d, images, labels, z_d, fake_labels_d)
    else:
      def body(carry, xs):
        g_coll, d = carry
        d, g_coll, outputs = d_update(g.replace(collections=g_coll), d, *xs)
        return (g_coll, d), outputs

      (g_coll, d), outputs = jax.lax.scan(body, (g.collections, d),
                                          (images, labels, z_d, fake_labels_d))
      d_loss, real_logits, fake_logits = jax.tree.map(lambda x: x[-1], outputs)

    # --- Generator update against the updated discriminator. ---
    def g_loss_fn(g_params):
      fakes, g_coll2 = _apply_train(generator, {"params": g_params, **g_coll},
                                    *_inputs(z_g, fake_labels_g))
      logits, d_coll2 = _apply_train(discriminator, d.variables(),
                                     *_inputs(fakes, fake_labels_g))
      return loss.generator(logits), (_merge(g_coll, g_coll2), _merge(d.collections, d_coll2))

    (g_loss, (g_coll, d_coll)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g.params)
    g = _update(g, g_grads, g_tx, g_coll)
    d = d.replace(collections=d_coll)
    step = state.step + 1
    ema_variables = state.ema
    if ema is not None:
      ema_variables = ema_update(state.ema, g.variables(), step, ema)

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
    return GANState(step=step, rng=state.rng, generator=g, discriminator=d,
                    ema=ema_variables), metrics

  return gan_update


# Folded into a step's key for the fake labels: keeps the noise draws those of an
# unconditional run.
LABEL_STREAM = 0x1AB


def make_train_step(generator: nn.Module, discriminator: nn.Module,
                    g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                    loss: GANLoss, z_dim: int, *, num_classes: Optional[int] = None,
                    d_steps: int = 1, ema: Optional[EmaSettings] = None
                    ) -> Callable[[GANState, Any], tuple[GANState, Metrics]]:
  """Builds ``train_step(state, batch) -> (state, metrics)``.

  ``batch['image']`` is (B, H, W, C) in [-1, 1] — (d_steps, B, H, W, C) with
  ``d_steps`` > 1, one real batch per D update — and, for a class-conditional
  model (``num_classes``), ``batch['label']`` the (B,) or (d_steps, B) int
  classes. The noise and the fake images' classes (uniform over
  ``num_classes``) come from ``fold_in(state.rng, state.step)``, so a step is
  reproducible from the state alone.
  """
  gan_update = make_gan_update(generator, discriminator, g_tx, d_tx, loss, d_steps=d_steps,
                               ema=ema)

  def train_step(state: GANState, batch) -> tuple[GANState, Metrics]:
    images = batch["image"]
    d_shape, batch_size = images.shape[:-3], images.shape[-4]  # (B,) or (d_steps, B)
    step_key = jax.random.fold_in(state.rng, state.step)
    z_d_key, z_g_key = jax.random.split(step_key)
    z_d = jax.random.normal(z_d_key, (*d_shape, z_dim), jnp.float32)
    z_g = jax.random.normal(z_g_key, (batch_size, z_dim), jnp.float32)
    if num_classes is None:
      return gan_update(state, images, z_d, z_g)
    y_d_key, y_g_key = jax.random.split(jax.random.fold_in(step_key, LABEL_STREAM))
    fake_labels_d = jax.random.randint(y_d_key, d_shape, 0, num_classes, jnp.int32)
    fake_labels_g = jax.random.randint(y_g_key, (batch_size,), 0, num_classes, jnp.int32)
    return gan_update(state, images, z_d, z_g, batch["label"], fake_labels_d, fake_labels_g)

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
