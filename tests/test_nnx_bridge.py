"""The layers as flax.nnx modules (sagan_jax.layers.nnx_bridge): state as nnx Variables,
updated in place by train-mode calls; nnx.jit + nnx.Optimizer training equal, bit for
bit, to the same steps written with the Linen layer and optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sagan_jax.layers import OfficialSelfAttention, SelfAttention, SNConv, SNConvTranspose
from sagan_jax.layers.nnx_bridge import Spectral, linen_variables, nnx_module

X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 16)), jnp.float32)

LAYERS = {
    "SNConv": lambda: SNConv(16, 3, 1, 1),
    "SNConvTranspose": lambda: SNConvTranspose(16, 4, 2, 1),
    "SelfAttention": lambda: SelfAttention(chunk_size=16),  # the blocked path
    "OfficialSelfAttention": lambda: OfficialSelfAttention(),
}


def _loss(out):
  return jnp.mean(out ** 2)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_nnx_training_equals_linen(name):
  linen = LAYERS[name]()
  model = nnx_module(linen, X, update_stats=False, rngs=nnx.Rngs(0))
  # The same initial variables on the Linen side.
  variables = linen_variables(model)
  assert "spectral" in variables or name == "SelfAttention"
  tx = optax.adam(1e-2)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def nnx_step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: _loss(m(X, update_stats=True)))(model)
    optimizer.update(model, grads)
    return loss

  @jax.jit
  def linen_step(variables, opt_state):
    def loss_fn(params):
      out, state = linen.apply({**variables, "params": params}, X, update_stats=True,
                               mutable=["spectral"])
      return _loss(out), state
    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    updates, opt_state = tx.update(grads, opt_state, variables["params"])
    return loss, {**variables, **state, "params": optax.apply_updates(variables["params"],
                                                                      updates)}, opt_state

  opt_state = tx.init(variables["params"])
  for _ in range(3):
    want_loss, variables, opt_state = linen_step(variables, opt_state)
    got_loss = nnx_step(model, optimizer)
    np.testing.assert_array_equal(got_loss, want_loss)
  got = linen_variables(model)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
  # Eval mode reads the stored vectors and changes nothing.
  before = jax.tree.map(np.asarray, nnx.state(model, Spectral))
  np.testing.assert_array_equal(model(X, update_stats=False),
                                linen.apply(variables, X, update_stats=False))
  for a, b in zip(jax.tree.leaves(nnx.state(model, Spectral)), jax.tree.leaves(before)):
    np.testing.assert_array_equal(a, b)


def test_spectral_state_is_its_own_variable_type():
  model = nnx_module(SNConv(4, 3, 1, 1), X, update_stats=False, rngs=nnx.Rngs(0))
  spectral = nnx.state(model, Spectral)
  params = nnx.state(model, nnx.Param)
  assert {str(p[-1]) for p, _ in nnx.to_flat_state(spectral)} == {"u", "v", "sigma"}
  assert {str(p[-1]) for p, _ in nnx.to_flat_state(params)} == {"kernel", "bias"}
