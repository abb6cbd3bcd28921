"""Flax variables → a PyTorch ``state_dict``: `from_torch`'s inverse, for the same models.

``to_torch(module, variables)`` gives the ``state_dict`` that the PyTorch code
`sagan_jax.interop.torch.from_torch` reads loads with
``load_state_dict(strict=True)``: the chapter's ``Generator``/``Discriminator``
for ``Generator64``/``Discriminator64``, StudioGAN's SAGAN (``src/models/
resnet.py``) for ``ResNetGenerator``/``ResNetDiscriminator``. So a model trained
here can be evaluated or fine-tuned there, and ``from_torch(module,
to_torch(module, variables))`` gives ``variables`` back (``sigma`` recomputed from
the same ``u``, ``v``). The layout rules are `from_torch`'s, reversed; values
come back as NumPy arrays (``tensors=True``: ``torch.Tensor``, which imports
torch). BatchNorm's ``num_batches_tracked`` (unused with a set momentum, but
required by strict loading) is written as 0.

Only what the PyTorch side computes the same way is exported: a conditional
ResNet generator needs ``bn_style='studiogan'`` (StudioGAN's gain is ``1 +
W[y]``), and a ResNet discriminator ``shortcut_after_activation=True`` (StudioGAN's
in-place ReLU); anything else is refused in one line.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from sagan_jax.interop.torch import (_CHAPTER_ATTENTION, STUDIOGAN_ATTENTION_NAMES,
                                     STUDIOGAN_BLOCK_CONVS)
from sagan_jax.models import Discriminator64, Generator64, ResNetDiscriminator, ResNetGenerator
from sagan_jax.models.resnet import (BOTTOM as RESNET_BOTTOM, GENERATOR_CHANNELS,
                                     discriminator_stages, generator_stages)

StateDict = dict[str, Any]


def _sub(variables: Mapping[str, Any], name: str) -> dict[str, Any]:
  """The variables of child module ``name`` (every collection that has it)."""
  return {collection: tree[name] for collection, tree in variables.items()
          if isinstance(tree, Mapping) and name in tree}


def _np(value) -> np.ndarray:
  return np.asarray(value, dtype=np.float32)


def _weighted(out: StateDict, prefix: str, variables, kernel_to_weight, v_to_torch_order,
              kernel_key: str = "kernel") -> None:
  """Shared part of every weight layer: ``weight`` (``weight_orig``, ``weight_u``,
  ``weight_v`` when spectral-normed) and ``bias`` when the layer has one."""
  params = variables["params"]
  kernel = _np(params[kernel_key])
  weight = kernel_to_weight(kernel)
  spectral = variables.get("spectral")
  if spectral is None:
    out[f"{prefix}.weight"] = weight
  else:
    out[f"{prefix}.weight_orig"] = weight
    out[f"{prefix}.weight_u"] = _np(spectral["u"])
    out[f"{prefix}.weight_v"] = v_to_torch_order(_np(spectral["v"]), kernel.shape)
  if "bias" in params:
    out[f"{prefix}.bias"] = _np(params["bias"])


def _v_torch_order(v: np.ndarray, kernel_shape) -> np.ndarray:
  """The kernel's flattening is (kh, kw, in); PyTorch's v is (in, kh, kw)."""
  if len(kernel_shape) != 4:
    return v
  kh, kw, cin = kernel_shape[0], kernel_shape[1], kernel_shape[2]
  return v.reshape(kh, kw, cin).transpose(2, 0, 1).reshape(-1)


def linear(out: StateDict, prefix: str, variables) -> None:
  """``Dense`` → ``nn.Linear`` (``weight`` (out, in))."""
  _weighted(out, prefix, variables, lambda k: np.ascontiguousarray(k.T), lambda v, s: v)


def embedding(out: StateDict, prefix: str, variables) -> None:
  """``Embed`` → ``nn.Embedding``."""
  _weighted(out, prefix, variables, lambda k: k, lambda v, s: v, kernel_key="embedding")


def conv2d(out: StateDict, prefix: str, variables) -> None:
  """``Conv`` → ``nn.Conv2d`` (``weight`` (out, in, kh, kw))."""
  _weighted(out, prefix, variables, lambda k: np.ascontiguousarray(k.transpose(3, 2, 0, 1)),
            _v_torch_order)


def conv_transpose2d(out: StateDict, prefix: str, variables) -> None:
  """``ConvTranspose`` → ``nn.ConvTranspose2d`` (``weight`` (in, out, kh, kw))."""
  _weighted(out, prefix, variables, lambda k: np.ascontiguousarray(k.transpose(2, 3, 0, 1)),
            _v_torch_order)


def _running_stats(out: StateDict, prefix: str, stats) -> None:
  out[f"{prefix}.running_mean"] = _np(stats["mean"])
  out[f"{prefix}.running_var"] = _np(stats["var"])
  out[f"{prefix}.num_batches_tracked"] = np.asarray(0, np.int64)


def batch_norm(out: StateDict, prefix: str, variables) -> None:
  """``BatchNorm`` → ``nn.BatchNorm2d``."""
  out[f"{prefix}.weight"] = _np(variables["params"]["scale"])
  out[f"{prefix}.bias"] = _np(variables["params"]["bias"])
  _running_stats(out, prefix, variables["batch_stats"])


def _chapter_attention(out: StateDict, prefix: str, variables) -> None:
  for name in ("query_conv", "key_conv", "value_conv"):
    conv2d(out, f"{prefix}.{name}", _sub(variables, name))
  out[f"{prefix}.gamma"] = _np(variables["params"]["gamma"]).reshape(1)


def _chapter_generator(out: StateDict, variables) -> None:
  for i in range(1, 5):
    layer = _sub(variables, f"layer{i}")
    conv_transpose2d(out, f"layer{i}.0", _sub(layer, "conv"))
    batch_norm(out, f"layer{i}.1", _sub(layer, "bn"))
  for ours, theirs in _CHAPTER_ATTENTION.items():
    _chapter_attention(out, theirs, _sub(variables, ours))
  conv_transpose2d(out, "last.0", _sub(variables, "last"))


def _chapter_discriminator(out: StateDict, variables) -> None:
  for i in range(1, 5):
    conv2d(out, f"layer{i}.0", _sub(_sub(variables, f"layer{i}"), "conv"))
  for ours, theirs in _CHAPTER_ATTENTION.items():
    _chapter_attention(out, theirs, _sub(variables, ours))
  conv2d(out, "last", _sub(variables, "last"))


def _studiogan_attention(out: StateDict, prefix: str, variables) -> None:
  for theirs, ours in STUDIOGAN_ATTENTION_NAMES.items():
    conv2d(out, f"{prefix}.{theirs}", _sub(variables, ours))
  out[f"{prefix}.sigma"] = _np(variables["params"]["gamma"]).reshape(1)


def _nhwc_to_channel_major(variables, channels: int, side: int):
  """`from_torch`'s ``linear0`` permutation reversed: our output j is PyTorch's
  output ``order[j]`` (PyTorch views its outputs as (C, side, side))."""
  order = np.arange(channels * side * side).reshape(channels, side, side)
  order = order.transpose(1, 2, 0).reshape(-1)
  inverse = np.argsort(order)  # PyTorch's output i is our output inverse[i]
  params = {"kernel": _np(variables["params"]["kernel"])[:, inverse],
            "bias": _np(variables["params"]["bias"])[inverse]}
  result = {"params": params}
  if "spectral" in variables:
    result["spectral"] = {**variables["spectral"],
                          "u": _np(variables["spectral"]["u"])[inverse]}
  return result


def _studiogan_blocks(out: StateDict, stages, variables):
  """Each residual block's ``(state_dict prefix, variables)`` in StudioGAN's ``blocks.i.0``
  order; the attention stages between them are exported on the way."""
  for index, stage in enumerate(stages):
    prefix = f"blocks.{index}.0"
    block = _sub(variables, stage.name)
    if stage.is_attention:
      _studiogan_attention(out, prefix, block)
    else:
      yield prefix, block


def _studiogan_generator(out: StateDict, module: ResNetGenerator, variables) -> None:
  if module.num_classes is not None and module.bn_style != "studiogan":
    raise ValueError(f"to_torch exports a conditional ResNetGenerator as StudioGAN's, whose "
                     f"conditional BN is bn_style='studiogan' (gain 1 + W[y]); this one is "
                     f"{module.bn_style!r}")
  first = GENERATOR_CHANNELS[module.resolution][0] * module.width
  linear(out, "linear0", _nhwc_to_channel_major(_sub(variables, "linear"), first,
                                                 RESNET_BOTTOM))
  for prefix, block in _studiogan_blocks(
      out, generator_stages(module.resolution, module.attention), variables):
    for theirs, ours in STUDIOGAN_BLOCK_CONVS.items():
      conv2d(out, f"{prefix}.{theirs}", _sub(block, ours))
    for bn in ("bn1", "bn2"):
      norm = _sub(block, bn)
      if module.num_classes is None:
        batch_norm(out, f"{prefix}.{bn}", norm)
      else:  # LabelLinear kernels (K, C) are nn.Linear(K, C) weights transposed
        linear(out, f"{prefix}.{bn}.gain", _sub(norm, "gain"))
        linear(out, f"{prefix}.{bn}.bias", _sub(norm, "bias"))
        _running_stats(out, f"{prefix}.{bn}.bn", norm["batch_stats"]["bn"])
  batch_norm(out, "bn4", _sub(variables, "bn"))
  conv2d(out, "conv2d5", _sub(variables, "conv_out"))


def _studiogan_discriminator(out: StateDict, module: ResNetDiscriminator, variables) -> None:
  if not module.shortcut_after_activation:
    raise ValueError("to_torch exports a ResNetDiscriminator as StudioGAN's, whose in-place "
                     "ReLU feeds relu(x) to its blocks' shortcuts; this one "
                     "(shortcut_after_activation=False) computes another function there")
  for prefix, block in _studiogan_blocks(
      out, discriminator_stages(module.resolution, module.attention), variables):
    for theirs, ours in STUDIOGAN_BLOCK_CONVS.items():
      if ours in block.get("params", {}):  # no 1×1 conv: an identity shortcut
        conv2d(out, f"{prefix}.{theirs}", _sub(block, ours))
  linear(out, "linear1", _sub(variables, "linear"))
  if module.num_classes is not None:
    embedding(out, "embedding", _sub(variables, "embedding"))


def to_torch(module, variables: Mapping[str, Any], tensors: bool = False) -> StateDict:
  """The PyTorch ``state_dict`` of ``module`` with ``variables`` (see the module docstring).

  Args:
    module: a ``Generator64``, ``Discriminator64``, ``ResNetGenerator`` or
      ``ResNetDiscriminator``.
    variables: its variables (``params``, ``spectral``, ``batch_stats``), e.g. a
      checkpoint's or ``from_torch``'s.
    tensors: return ``torch.Tensor`` values (imports torch) instead of NumPy arrays.

  Raises:
    TypeError: another module type.
    ValueError: a model the PyTorch code computes differently (see above).
  """
  out: StateDict = {}
  if isinstance(module, Generator64):
    _chapter_generator(out, variables)
  elif isinstance(module, Discriminator64):
    _chapter_discriminator(out, variables)
  elif isinstance(module, ResNetGenerator):
    _studiogan_generator(out, module, variables)
  elif isinstance(module, ResNetDiscriminator):
    _studiogan_discriminator(out, module, variables)
  else:
    raise TypeError(f"to_torch supports Generator64, Discriminator64, ResNetGenerator and "
                    f"ResNetDiscriminator, got {type(module).__name__}")
  if tensors:
    import torch  # pylint: disable=g-import-not-at-top  # optional: only for tensors=True
    out = {k: torch.from_numpy(np.array(v)) for k, v in out.items()}  # writable copies
  return out
