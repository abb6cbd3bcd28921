"""The generator's exponential moving average (EMA), as a pure function of the state.

After every G update (``step`` = the number of updates done)::

    decay_t = decay if step > start_step else 0           (0: a plain copy)
    ema.params      = decay_t · ema.params      + (1 − decay_t) · G.params
    ema.batch_stats = decay_t · ema.batch_stats + (1 − decay_t) · G.batch_stats
    ema.spectral    = G.spectral                                (copied)

as StudioGAN's ``Ema`` (copy before ``g_ema_start``, then ``lerp``) and
BigGAN-PyTorch's, which average BatchNorm's running statistics with the
weights. Spectral-norm vectors are *copied*, not averaged: an average of unit
vectors is not a unit vector, and the eval-mode σ = uᵀ W_ema v with the live
generator's u, v (one power-iteration step from W's singular vectors, which
W_ema's track) is the estimate the EMA generator uses. The EMA generator is
only ever applied in eval mode (running statistics, no power iteration).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Collections = dict[str, Any]


class EmaSettings(NamedTuple):
  decay: float  # per-update decay once averaging starts, e.g. 0.999
  start_step: int  # until (and including) this step, the EMA is a copy


def ema_update(ema: Collections, generator_variables: Collections, step: jax.Array,
               settings: EmaSettings) -> Collections:
  """The EMA variables after the G update that made ``step`` (see module docstring)."""
  decay = jnp.where(step > settings.start_step, jnp.float32(settings.decay), jnp.float32(0))
  lerp = lambda average, value: (decay * average + (1 - decay) * value).astype(value.dtype)  # noqa: E731
  out = dict(generator_variables)
  for name in ("params", "batch_stats"):
    if name in generator_variables:
      out[name] = jax.tree.map(lerp, ema[name], generator_variables[name])
  return out
