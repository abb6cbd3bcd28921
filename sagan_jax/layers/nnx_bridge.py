"""The layers (and models) for ``flax.nnx`` users: one call turns a Linen module into an nnx one.

``nnx_module(SNConv(64, 4, 2, 1), x, rngs=nnx.Rngs(0))`` returns an
``nnx.Module`` holding the layer's variables as nnx Variables — parameters as
``nnx.Param``, the spectral-norm vectors as `Spectral`, BatchNorm statistics
as ``nnx.BatchStat`` — and calling it updates those in place, as nnx code
expects::

    layer = nnx_module(SNConv(8, 3, 1, 1), x, rngs=nnx.Rngs(0))
    y = layer(x, update_stats=True)     # train: one power iteration, u and v stored
    y = layer(x, update_stats=False)    # eval: the stored u, v

It works under ``nnx.jit``, ``nnx.grad`` and with ``nnx.Optimizer(model, tx,
wrt=nnx.Param)`` (only parameters are trained; the vectors change by the
power iteration alone). The arithmetic is the Linen layer's, so results are
bit-identical to ``layer.apply(..., mutable=['spectral', 'batch_stats'])``
(tests/test_nnx_bridge.py).

Why not ``nnx.bridge.ToNNX`` alone: a call then fails with "collection
'spectral' is immutable" unless every call passes ``mutable=[...]``; this
wrapper passes it.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
from flax import nnx

from sagan_jax.layers.spectral_norm import SPECTRAL

# Collections a train-mode call updates (Linen's BatchNorm's and ours).
STATE_COLLECTIONS: Sequence[str] = (SPECTRAL, "batch_stats")


class Spectral(nnx.Variable):
  """Power-iteration state of a spectrally normalized weight (``u``, ``v``, ``sigma``):
  updated by train-mode calls, never by an optimizer."""


# Linen's "spectral" collection becomes Spectral variables (and back).
nnx.register_variable_name(SPECTRAL, Spectral, overwrite=True)


class LinenModule(nnx.Module):
  """An nnx module around a Linen one; see `nnx_module`."""

  def __init__(self, module: nn.Module, *example_args: Any, rngs: nnx.Rngs,
               **example_kwargs: Any):
    self.linen = nnx.bridge.ToNNX(module, rngs=rngs)
    nnx.bridge.lazy_init(self.linen, *example_args, **example_kwargs)

  def __call__(self, *args: Any, **kwargs: Any) -> Any:
    # The state collections are mutable on every call: an eval-mode call leaves
    # them as they are, a train-mode call updates them in place.
    return self.linen(*args, mutable=list(STATE_COLLECTIONS), **kwargs)


def linen_variables(module: nnx.Module) -> dict[str, Any]:
  """The Linen ``variables`` dict (``{'params': …, 'spectral': …, 'batch_stats': …}``)
  of a `LinenModule`'s current state: for ``apply``, checkpoints or ``from_torch``'s
  layout. Collections are named by ``nnx.variable_name_from_type``."""
  variables: dict[str, Any] = {}
  for path, variable in nnx.to_flat_state(nnx.state(module, nnx.Not(nnx.RngState))):
    collection = variables.setdefault(nnx.variable_name_from_type(type(variable)), {})
    *parents, leaf = path[1:]  # below the LinenModule's `linen` attribute
    for parent in parents:
      collection = collection.setdefault(str(parent), {})
    collection[str(leaf)] = variable.get_value()
  return variables


def nnx_module(module: nn.Module, *example_args: Any, rngs: nnx.Rngs,
               **example_kwargs: Any) -> LinenModule:
  """``module`` (any Linen module of this package, or any other) as an ``nnx.Module``.

  Args:
    module: the Linen module, e.g. ``SNConv(64, 4, 2, 1)`` or ``SelfAttention()``.
    *example_args, **example_kwargs: an example call, to create the variables
      (as ``module.init`` would; e.g. ``x, update_stats=False``).
    rngs: the nnx random streams (``params`` initializes the weights and the
      power-iteration vectors).
  """
  return LinenModule(module, *example_args, rngs=rngs, **example_kwargs)
