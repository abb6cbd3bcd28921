"""The whole GAN training state as one pytree.

Everything a run needs to continue bit-for-bit lives here — both networks'
parameters, their spectral-norm and BatchNorm state, both optimizer states,
the generator's moving average (EMA) when the run keeps one, the step and the
root PRNG key — so a checkpoint of this pytree is a complete checkpoint. (The
data position is the step: batches are a pure function of it.)
"""

from __future__ import annotations

from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

Collections = dict[str, Any]


@flax.struct.dataclass
class NetworkState:
  """One network: trainable params, other collections, optimizer state."""

  params: Any
  collections: Collections  # 'spectral' (u, v, sigma) and 'batch_stats'
  opt_state: optax.OptState

  def variables(self, params: Any = None) -> Collections:
    """The ``variables`` dict for ``module.apply``."""
    return {"params": self.params if params is None else params, **self.collections}


@flax.struct.dataclass
class GANState:
  step: jax.Array  # int32 scalar: optimizer steps taken (d_steps D updates and one G update each)
  rng: jax.Array  # the run's root key; per-step keys are fold_in(rng, step)
  generator: NetworkState
  discriminator: NetworkState
  # The generator's EMA variables ('params', 'batch_stats', 'spectral'), or None
  # (no EMA); see sagan_jax.train.ema.
  ema: Optional[Collections] = None

  def generator_variables(self, use_ema: bool = True) -> Collections:
    """Eval-mode variables of the generator: the EMA's when kept (and ``use_ema``)."""
    if use_ema and self.ema is not None:
      return self.ema
    return self.generator.variables()


def init_network(module: nn.Module, key: jax.Array, example: tuple[jax.Array, ...],
                 tx: optax.GradientTransformation) -> NetworkState:
  """``module`` initialised on ``example`` (its positional inputs), with ``tx``'s state."""
  variables = dict(module.init(key, *example))
  params = variables.pop("params")
  return NetworkState(params=params, collections=variables, opt_state=tx.init(params))


def init_gan_state(generator: nn.Module, discriminator: nn.Module, *, seed: int,
                   z_dim: int, image_shape: tuple[int, int, int],
                   g_tx: optax.GradientTransformation,
                   d_tx: optax.GradientTransformation,
                   conditional: bool = False, ema: bool = False) -> GANState:
  """A fresh state: networks initialised from ``seed`` (batch of one example).

  ``conditional``: the networks take labels (initialised with label 0);
  ``ema``: keep a moving average of the generator, starting as a copy of it.
  """
  root = jax.random.PRNGKey(seed)
  init_key, g_key, d_key, run_key = jax.random.split(root, 4)
  del init_key  # reserved; keeps the split stable if more init keys are needed
  labels = (jnp.zeros((1,), jnp.int32),) if conditional else ()
  g = init_network(generator, g_key, (jnp.zeros((1, z_dim), jnp.float32), *labels), g_tx)
  d = init_network(discriminator, d_key, (jnp.zeros((1, *image_shape), jnp.float32), *labels),
                   d_tx)
  return GANState(step=jnp.zeros((), jnp.int32), rng=run_key, generator=g, discriminator=d,
                  ema=g.variables() if ema else None)
