"""Input checks that fail early with the layer's name and the shapes involved."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax


def layer_name(module: nn.Module) -> str:
  """``ClassName 'scope/path'`` for error messages."""
  path = "/".join(str(p) for p in module.scope.path) if module.scope else module.name
  return f"{type(module).__name__} '{path or module.name or '<top>'}'"


def require_rank(module: nn.Module, x: jax.Array, rank: int, layout: str) -> None:
  if x.ndim != rank:
    raise ValueError(
        f"{layer_name(module)} expects a {rank}-D input {layout}, got shape {x.shape}.")


def shaped_param(module: nn.Module, name: str, init: Callable[..., Any],
                 shape: tuple[int, ...], dtype: Any = None) -> jax.Array:
  """``module.param`` that explains a shape mismatch with the stored value.

  Flax would otherwise fail deep inside with the initializer's shapes; here
  the message says what the input implied and what the variables hold.
  """
  if module.has_variable("params", name):
    stored = module.get_variable("params", name).shape
    if tuple(stored) != tuple(shape):
      raise ValueError(
          f"{layer_name(module)}: the input implies parameter '{name}' of shape "
          f"{tuple(shape)}, but the given variables hold shape {tuple(stored)} "
          f"(was the layer initialised for another number of channels?).")
  if dtype is None:
    return module.param(name, init, shape)
  return module.param(name, init, shape, dtype)
