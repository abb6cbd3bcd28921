"""Spectral normalization with explicit power-iteration state.

The math matches ``torch.nn.utils.spectral_norm`` exactly:

* the weight is viewed as a matrix ``W`` with the *output* dimension first and
  everything else flattened (``weight_matrix``);
* ``u`` (length = rows) and ``v`` (length = columns) are the power-iteration
  vectors, initialised from N(0, 1) and L2-normalised;
* a train-mode call runs ``num_iterations`` rounds of
  ``v = normalize(Wᵀu); u = normalize(W v)`` with no gradient, stores ``u, v``,
  and divides the weight by ``σ = u · (W v)``, the gradient flowing through
  ``W`` only;
* an eval-mode call runs no iteration and uses the stored ``u, v``;
* ``normalize(x) = x / max(‖x‖, eps)`` with ``eps = 1e-12``.

The functions here are plain JAX (usable without Flax, under ``jit``,
``grad``, ``vmap`` and ``lax.scan``). ``spectral_normalized`` attaches the
state to a Flax module as the ``spectral`` collection, which is how the
layers in :mod:`sagan_jax.layers` use it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_EPS = 1e-12
SPECTRAL = "spectral"  # the variable collection holding u, v and sigma


class PowerIterationState(NamedTuple):
  """Left and right singular-vector estimates of a weight matrix."""

  u: jax.Array  # (rows,) — the output dimension
  v: jax.Array  # (columns,) — everything else, flattened


def l2_normalize(x: jax.Array, eps: float = DEFAULT_EPS) -> jax.Array:
  """``x / max(‖x‖₂, eps)``, as ``torch.nn.functional.normalize``."""
  return x / jnp.maximum(jnp.linalg.norm(x), eps)


def weight_matrix(weight: jax.Array, out_axis: int = -1) -> jax.Array:
  """Views ``weight`` as a matrix with the output dimension ``out_axis`` first.

  For a Flax kernel ``(..., in, out)`` the columns follow the kernel's own
  memory order, so ``v`` is laid out like ``kernel.reshape(-1, out)``'s rows.
  """
  moved = jnp.moveaxis(weight, out_axis, 0)
  return moved.reshape(moved.shape[0], -1)


def init_power_iteration(
    key: jax.Array, weight_shape: tuple[int, ...], out_axis: int = -1,
    eps: float = DEFAULT_EPS, dtype=jnp.float32) -> PowerIterationState:
  """Random unit vectors ``u, v`` for a weight of ``weight_shape``."""
  rows = weight_shape[out_axis]
  columns = math.prod(weight_shape) // rows
  key_u, key_v = jax.random.split(key)
  return PowerIterationState(
      u=l2_normalize(jax.random.normal(key_u, (rows,), dtype), eps),
      v=l2_normalize(jax.random.normal(key_v, (columns,), dtype), eps))


def power_iteration(
    matrix: jax.Array, state: PowerIterationState, num_iterations: int = 1,
    eps: float = DEFAULT_EPS) -> PowerIterationState:
  """Runs ``num_iterations`` rounds of power iteration on ``matrix``.

  No gradient flows through the result: like PyTorch, the vectors are treated
  as constants when differentiating the normalized weight.
  """
  matrix = jax.lax.stop_gradient(matrix)
  u, v = state
  for _ in range(num_iterations):
    v = l2_normalize(matrix.T @ u, eps)
    u = l2_normalize(matrix @ v, eps)
  return PowerIterationState(jax.lax.stop_gradient(u), jax.lax.stop_gradient(v))


def spectral_norm_estimate(matrix: jax.Array, state: PowerIterationState) -> jax.Array:
  """``σ = u · (W v)``: the largest singular value, differentiable in ``W``."""
  return jnp.dot(state.u, matrix @ state.v)


def spectral_normalize(
    weight: jax.Array, state: PowerIterationState, *, out_axis: int = -1,
    num_iterations: int = 1, update: bool = True, eps: float = DEFAULT_EPS,
) -> tuple[jax.Array, PowerIterationState, jax.Array]:
  """Divides ``weight`` by its estimated spectral norm.

  Args:
    weight: the unnormalized weight (PyTorch's ``weight_orig``), any rank.
    state: the current ``u, v`` (see ``init_power_iteration``).
    out_axis: the weight's output dimension (``-1`` for Flax kernels).
    num_iterations: power-iteration rounds when ``update`` is true.
    update: train mode (iterate, return the new state) or eval mode (no
      iteration; the state comes back unchanged).
    eps: the normalization floor.

  Returns:
    ``(weight / σ, new_state, σ)``.
  """
  matrix = weight_matrix(weight, out_axis)
  if update:
    state = power_iteration(matrix, state, num_iterations, eps)
  sigma = spectral_norm_estimate(matrix, state)
  return weight / sigma, state, sigma


def spectral_normalized(
    module: nn.Module, weight: jax.Array, *, update_stats,
    out_axis: int = -1, num_iterations: int = 1, eps: float = DEFAULT_EPS,
    collection: str = SPECTRAL, prefix: str = "",
) -> jax.Array:
  """Spectrally normalizes ``weight`` inside a Flax module.

  Declares ``<prefix>u``, ``<prefix>v`` and ``<prefix>sigma`` in ``module``'s
  ``collection`` (``sigma`` is stored for logging only). During ``init`` no
  iteration runs, so a fresh layer holds random unit vectors, like a freshly
  wrapped PyTorch module. Updating needs ``mutable=[collection]``.

  ``update_stats`` is a Python bool, or a traced boolean (e.g. a flag carried
  through ``nn.scan`` or given to ``nn.remat`` without ``static_argnums``):
  then the iteration always runs and its result is kept where the flag is
  true (``jnp.where``), so the collection must be mutable even when it is
  false.
  """
  initializing = module.is_initializing()

  def init_state():
    return init_power_iteration(
        module.make_rng("params"), weight.shape, out_axis, eps, weight.dtype)

  # One init call for both vectors keeps them from one key, as a pair.
  state_init = None
  if initializing or not module.has_variable(collection, prefix + "u"):
    state_init = init_state()
  u = module.variable(collection, prefix + "u", lambda: state_init.u)
  v = module.variable(collection, prefix + "v", lambda: state_init.v)
  state = PowerIterationState(u.value, v.value)
  if state.u.shape[0] != weight.shape[out_axis] or (
      state.v.shape[0] * state.u.shape[0] != weight.size):
    raise ValueError(
        f"{module.__class__.__name__} '{module.name}': spectral state u{state.u.shape}, "
        f"v{state.v.shape} does not fit a weight of shape {weight.shape}.")
  static_flag = isinstance(update_stats, (bool, np.bool_))
  iterate = (bool(update_stats) if static_flag else True) and not initializing
  normalized, new_state, sigma = spectral_normalize(
      weight, state, out_axis=out_axis, num_iterations=num_iterations,
      update=iterate, eps=eps)
  if iterate and not static_flag:
    # A traced flag: the new state where it is true, the stored one (and the σ
    # it gives) where it is false.
    matrix = weight_matrix(weight, out_axis)
    new_state = PowerIterationState(*(jnp.where(update_stats, new, old)
                                      for new, old in zip(new_state, state)))
    sigma = spectral_norm_estimate(matrix, new_state)
    normalized = weight / sigma
  sigma_var = module.variable(collection, prefix + "sigma",
                              lambda: jax.lax.stop_gradient(sigma))
  if iterate:
    u.value, v.value = new_state
    sigma_var.value = jax.lax.stop_gradient(sigma)
  return normalized

