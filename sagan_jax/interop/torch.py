"""PyTorch ``state_dict`` → Flax variables, for the layers and models here.

Works on any mapping of names to arrays (``torch.Tensor``, NumPy, JAX): torch
itself is not imported. Each converter returns a dict of variable collections
(``params``, ``spectral``, ``batch_stats``), ready for ``module.apply``.

Layout rules (PyTorch → here):

* ``Conv2d.weight (out, in, kh, kw)`` → ``kernel (kh, kw, in, out)``;
* ``ConvTranspose2d.weight (in, out, kh, kw)`` → ``kernel (kh, kw, in, out)``;
* ``Linear.weight (out, in)`` → ``kernel (in, out)``; embeddings unchanged;
* spectral norm: ``weight_orig`` is the kernel, ``weight_u`` is ``u``, and
  ``weight_v`` (flattened in PyTorch's ``(in, kh, kw)`` order) is permuted to
  the kernel's ``(kh, kw, in)`` order; ``sigma`` is recomputed from them;
* BatchNorm: ``weight``/``bias`` → ``scale``/``bias``, running stats →
  ``batch_stats`` ``mean``/``var`` (``num_batches_tracked`` is not needed).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from sagan_jax.layers.spectral_norm import PowerIterationState, spectral_norm_estimate, weight_matrix
from sagan_jax.models import (Discriminator64, Generator64, ResNetDiscriminator,
                              ResNetGenerator)
from sagan_jax.models.resnet import (BOTTOM as RESNET_BOTTOM, GENERATOR_CHANNELS,
                                     discriminator_stages, generator_stages)
from sagan_jax.interop.torch_file import read_state_dict

log = logging.getLogger(__name__)

Variables = dict[str, dict[str, Any]]


class StateDictReader:
  """Reads a state_dict by prefix and remembers which keys were used.

  ``check_all_used`` then reports keys that no converter read, the way
  ``load_state_dict(strict=True)`` does in PyTorch.
  """

  IGNORED_SUFFIXES = ("num_batches_tracked",)

  def __init__(self, state_dict: Mapping[str, Any]):
    self._state = dict(state_dict)
    self._used: set[str] = set()
    # id of each converted array → (state_dict key, its shape there), so a shape
    # error can name the key the array came from.
    self.origins: dict[int, tuple[str, tuple[int, ...]]] = {}

  def has(self, key: str) -> bool:
    return key in self._state

  def __getitem__(self, key: str) -> np.ndarray:
    """The tensor at ``key`` as NumPy (floats as float32); non-finite values are refused."""
    if key not in self._state:
      raise KeyError(f"state_dict has no key {key!r}" + self._near(key))
    self._used.add(key)
    value = self._state[key]
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
      value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float32 if np.asarray(value).dtype.kind == "f" else None)
    if array.dtype.kind == "f":
      bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
      if bad:
        raise ValueError(f"state_dict[{key!r}] holds {bad} non-finite value(s) (NaN or inf) "
                         f"among {array.size}; refusing to load it")
    return array

  def _near(self, key: str, shown: int = 5) -> str:
    """'; keys under <the longest existing prefix of key>: …' (at most ``shown``)."""
    parts = key.split(".")
    for length in range(len(parts) - 1, 0, -1):
      prefix = ".".join(parts[:length]) + "."
      near = sorted(k for k in self._state if k.startswith(prefix))
      if near:
        more = f", … {len(near) - shown} more" if len(near) > shown else ""
        return f"; keys under {prefix[:-1]!r}: {near[:shown]}{more}"
    return f"; it has {len(self._state)} keys"

  def convert(self, key: str, to_ours=lambda a: a) -> jax.Array:
    """``to_ours(self[key])`` as a JAX array, remembered as coming from ``key``."""
    array = self[key]
    converted = jnp.asarray(to_ours(array))
    self.origins[id(converted)] = (key, tuple(array.shape))
    return converted

  def derived(self, new: jax.Array, old: jax.Array) -> jax.Array:
    """``new`` (e.g. ``old`` permuted), remembered as coming from ``old``'s key."""
    if id(old) in self.origins:
      self.origins[id(new)] = self.origins.pop(id(old))
    return new

  def check_all_used(self, shown: int = 5) -> None:
    unused = sorted(k for k in self._state if k not in self._used
                    and not k.endswith(self.IGNORED_SUFFIXES))
    if unused:
      more = f" (… {len(unused) - shown} more)" if len(unused) > shown else ""
      raise ValueError(f"state_dict keys not used by the conversion: {unused[:shown]}{more}")


def _reader(state_dict) -> StateDictReader:
  return state_dict if isinstance(state_dict, StateDictReader) else StateDictReader(state_dict)


def _join(prefix: str, name: str) -> str:
  return f"{prefix}.{name}" if prefix else name


def _weighted(sd: StateDictReader, prefix: str, to_kernel, v_to_kernel_order,
              use_bias: bool | None, out_axis: int = -1) -> Variables:
  """Shared part of every weight layer: kernel, optional bias, optional SN state."""
  spectral = sd.has(_join(prefix, "weight_orig"))
  if not spectral and not sd.has(_join(prefix, "weight")):
    # name the key a spectral-normed layer would have when its u is there (or both)
    wanted = ("weight_orig" if sd.has(_join(prefix, "weight_u"))
              else "weight_orig' (spectral norm) or 'weight")
    raise KeyError(f"state_dict has no key '{_join(prefix, wanted)}'" + sd._near(
        _join(prefix, "weight_orig")))
  weight_key = _join(prefix, "weight_orig" if spectral else "weight")
  weight_shape = sd[weight_key].shape
  params = {"kernel": sd.convert(weight_key, to_kernel)}
  bias_key = _join(prefix, "bias")
  if use_bias is None:
    use_bias = sd.has(bias_key)
  if use_bias:
    params["bias"] = sd.convert(bias_key)
  variables: Variables = {"params": params}
  if spectral:
    u_key, v_key = _join(prefix, "weight_u"), _join(prefix, "weight_v")
    rows = params["kernel"].shape[out_axis]
    if sd[u_key].size != rows or sd[u_key].size * sd[v_key].size != params["kernel"].size:
      raise ValueError(
          f"state_dict keys {u_key!r} {sd[u_key].shape} and {v_key!r} {sd[v_key].shape} do "
          f"not fit {weight_key!r} {weight_shape} (u needs {rows} values, v "
          f"{params['kernel'].size // max(rows, 1)})")
    u = sd.convert(u_key)
    v = sd.convert(v_key, lambda a: v_to_kernel_order(a, weight_shape))
    sigma = spectral_norm_estimate(weight_matrix(params["kernel"], out_axis),
                                   PowerIterationState(u, v))
    variables["spectral"] = {"u": u, "v": v, "sigma": sigma}
  return variables


def _v_conv_order(v, torch_weight_shape, in_axis=1):
  """PyTorch's v is ordered (in, kh, kw); the kernel's flattening is (kh, kw, in)."""
  if len(torch_weight_shape) != 4:
    return v
  cin, kh, kw = torch_weight_shape[in_axis], torch_weight_shape[2], torch_weight_shape[3]
  return np.asarray(v).reshape(cin, kh, kw).transpose(1, 2, 0).reshape(-1)


def linear(state_dict, prefix: str = "", use_bias: bool | None = None) -> Variables:
  """``nn.Linear`` (optionally spectral-normed) → ``Dense`` variables."""
  return _weighted(_reader(state_dict), prefix, lambda w: w.T, lambda v, s: v, use_bias)


def embedding(state_dict, prefix: str = "") -> Variables:
  """``nn.Embedding`` (optionally spectral-normed) → ``Embed`` variables."""
  sd = _reader(state_dict)
  variables = _weighted(sd, prefix, lambda w: w, lambda v, s: v, use_bias=False,
                        out_axis=0)
  variables["params"] = {"embedding": variables["params"].pop("kernel")}
  return variables


def conv2d(state_dict, prefix: str = "", use_bias: bool | None = None) -> Variables:
  """``nn.Conv2d`` (optionally spectral-normed) → ``Conv``/``PointwiseConv`` variables."""
  return _weighted(_reader(state_dict), prefix, lambda w: w.transpose(2, 3, 1, 0),
                   lambda v, s: _v_conv_order(v, s, in_axis=1), use_bias)


def conv_transpose2d(state_dict, prefix: str = "", use_bias: bool | None = None) -> Variables:
  """``nn.ConvTranspose2d`` (optionally spectral-normed) → ``ConvTranspose`` variables."""
  return _weighted(_reader(state_dict), prefix, lambda w: w.transpose(2, 3, 0, 1),
                   lambda v, s: _v_conv_order(v, s, in_axis=0), use_bias)


def batch_norm(state_dict, prefix: str = "") -> Variables:
  """``nn.BatchNorm2d`` → ``BatchNorm`` variables."""
  sd = _reader(state_dict)
  return {
      "params": {"scale": sd.convert(_join(prefix, "weight")),
                 "bias": sd.convert(_join(prefix, "bias"))},
      "batch_stats": {"mean": sd.convert(_join(prefix, "running_mean")),
                      "var": sd.convert(_join(prefix, "running_var"))},
  }


def nest(layers: Mapping[str, Variables], extra_params: Mapping[str, Any] | None = None
         ) -> Variables:
  """Combines per-layer variables into one tree keyed by Flax module names."""
  out: Variables = {}
  for name, variables in layers.items():
    for collection, value in variables.items():
      out.setdefault(collection, {})[name] = value
  if extra_params:
    out.setdefault("params", {}).update(extra_params)
  return out


# Official-code names (BigGAN-PyTorch's Attention) → this library's seed names.
OFFICIAL_ATTENTION_NAMES = {"theta": "key_conv", "phi": "query_conv", "g": "value_conv",
                            "o": "output_conv"}


def self_attention(state_dict, prefix: str = "", official: bool = False) -> Variables:
  """The seed's ``Self_Attention`` (or, with ``official``, BigGAN-PyTorch's
  ``Attention``: theta, phi, g, o) → ``SelfAttention`` variables."""
  sd = _reader(state_dict)
  names = OFFICIAL_ATTENTION_NAMES if official else {
      n: n for n in ("query_conv", "key_conv", "value_conv")}
  layers = {ours: conv2d(sd, _join(prefix, theirs)) for theirs, ours in names.items()}
  gamma = sd.convert(_join(prefix, "gamma"), lambda a: a.reshape(()) if a.size == 1 else a)
  return nest(layers, {"gamma": gamma})


# The chapter's PyTorch attribute names (with its 'self_attntion' spelling).
_CHAPTER_ATTENTION = {"self_attention1": "self_attntion1", "self_attention2": "self_attntion2"}


def _chapter_generator(sd: StateDictReader) -> Variables:
  layers = {}
  for i in range(1, 5):
    layers[f"layer{i}"] = nest({"conv": conv_transpose2d(sd, f"layer{i}.0"),
                                "bn": batch_norm(sd, f"layer{i}.1")})
  for ours, theirs in _CHAPTER_ATTENTION.items():
    layers[ours] = self_attention(sd, theirs)
  layers["last"] = conv_transpose2d(sd, "last.0")
  return nest(layers)


def _chapter_discriminator(sd: StateDictReader) -> Variables:
  layers = {f"layer{i}": nest({"conv": conv2d(sd, f"layer{i}.0")}) for i in range(1, 5)}
  for ours, theirs in _CHAPTER_ATTENTION.items():
    layers[ours] = self_attention(sd, theirs)
  layers["last"] = conv2d(sd, "last")
  return nest(layers)


def _check_shapes(variables: Variables, expected: Any, sd: StateDictReader, model: str) -> None:
  """Raises ``ValueError`` naming the state_dict key and both shapes of the first
  converted variable whose shape differs from ``model``'s (and the count of others)."""
  got = {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(
      variables)}
  want = {jax.tree_util.keystr(p): leaf.shape
          for p, leaf in jax.tree_util.tree_leaves_with_path(expected)}
  problems = []
  for path in sorted(set(got) | set(want)):
    if path not in want:
      problems.append(f"{model} has no variable {path}")
    elif path not in got:
      problems.append(f"{model}'s variable {path} {want[path]} has no state_dict key")
    elif got[path].shape != want[path]:
      origin = sd.origins.get(id(got[path]))
      if origin is None:  # derived, e.g. sigma
        problems.append(f"the converted {path} {got[path].shape} does not fit {model}, which "
                        f"needs {want[path]}")
      else:
        layout = "" if origin[1] == got[path].shape else f" → {got[path].shape}"
        problems.append(f"state_dict key {origin[0]!r} of shape {origin[1]} (as {path}{layout}) "
                        f"does not fit {model}, which needs {want[path]}")
  if problems:
    more = f" (and {len(problems) - 1} more mismatch(es))" if len(problems) > 1 else ""
    raise ValueError(problems[0] + more)


def _describe(module) -> str:
  """``Name(field=value, …)`` of the fields that size a model, for error messages."""
  fields = [f"{name}={getattr(module, name)}" for name in ("resolution", "width", "channels",
                                                           "num_classes")
            if getattr(module, name, None) is not None]
  return f"{type(module).__name__}({', '.join(fields)})"


def as_state_dict(source: Any) -> Mapping[str, Any]:
  """A flat ``state_dict`` from what a PyTorch user has at hand, saying what it did:

  * a path (``str`` / ``os.PathLike``) of a ``torch.save`` file: read without torch
    (`sagan_jax.interop.torch_file.read_state_dict`);
  * a checkpoint dict holding the weights under ``'state_dict'`` (StudioGAN's
    ``model=G-best-weights-step=N.pth``: ``{'state_dict', 'step', 'best_fid', …}``):
    unwrapped;
  * keys that all start with ``module.`` (saved from ``nn.DataParallel`` /
    ``DistributedDataParallel``): the prefix is stripped.

  Raises:
    TypeError: ``source`` is not a mapping of names to tensors after this.
  """
  if isinstance(source, (str, os.PathLike)):
    source = read_state_dict(source)
  if isinstance(source, Mapping) and isinstance(source.get("state_dict"), Mapping):
    others = sorted(str(k) for k in source if k != "state_dict")
    log.info("from_torch: using the checkpoint's 'state_dict' (beside %s)", others)
    source = source["state_dict"]
  if not isinstance(source, Mapping):
    raise TypeError(f"from_torch needs a state_dict (a mapping of names to tensors), a "
                    f"checkpoint dict with one under 'state_dict', or a .pth path; got "
                    f"{type(source).__name__}")
  nested = sorted(str(k) for k, v in source.items() if isinstance(v, Mapping))
  if nested:
    raise TypeError(f"from_torch needs a flat state_dict; {nested[:3]} hold dicts (pass the "
                    f"weights' dict, e.g. checkpoint['state_dict'])")
  if source and all(str(k).startswith("module.") for k in source):
    log.info("from_torch: stripping the DataParallel prefix 'module.' from every key")
    source = {k[len("module."):]: v for k, v in source.items()}
  return source


def from_torch(module, state_dict: Any) -> Variables:
  """Flax variables for ``module`` from a PyTorch ``state_dict`` of the same model.

  ``state_dict`` may also be a ``.pth`` path, a checkpoint dict with the weights under
  ``'state_dict'`` (StudioGAN's files) or DataParallel's ``module.``-prefixed keys
  (see `as_state_dict`).

  Supports the chapter's ``Generator64`` and ``Discriminator64`` (keys as the
  chapter's ``Generator``/``Discriminator``: ``layer1.0.weight_orig``,
  ``layer1.1.running_mean``, ``self_attntion1.query_conv.weight``, ``last``…),
  and ``ResNetGenerator`` / ``ResNetDiscriminator`` from StudioGAN's SAGAN
  (``src/models/resnet.py`` with cBN and a projection discriminator: keys
  ``linear0``, ``blocks.<i>.0.conv2d1``, ``blocks.<i>.0.bn1.gain``, ``bn4``,
  ``conv2d5``, ``linear1``, ``embedding``…; see `studiogan_generator`).
  Every key must be used (``num_batches_tracked`` aside), like PyTorch's strict
  loading; shapes are checked against ``module``'s own variables, and a
  missing, unused or mis-shaped key is reported in one line naming it.

  A StudioGAN discriminator (its key names) needs ``module.shortcut_after_activation``:
  StudioGAN's in-place ReLU feeds its blocks' shortcuts ``relu(x)``, so the same weights
  in a ``ResNetDiscriminator`` without it compute another function; that is refused in
  one line saying so.
  """
  sd = state_dict if isinstance(state_dict, StateDictReader) else StateDictReader(
      as_state_dict(state_dict))
  labels = ()
  if getattr(module, "num_classes", None) is not None:
    labels = (jnp.zeros((1,), jnp.int32),)
  if isinstance(module, Generator64):
    variables = _chapter_generator(sd)
    example = (jnp.zeros((1, module.z_dim), jnp.float32),)
  elif isinstance(module, Discriminator64):
    variables = _chapter_discriminator(sd)
    example = (jnp.zeros((1, 64, 64, module.channels), jnp.float32),)
  elif isinstance(module, ResNetGenerator):
    variables = studiogan_generator(sd, module)
    example = (jnp.zeros((1, module.z_dim), jnp.float32), *labels)
  elif isinstance(module, ResNetDiscriminator):
    if not module.shortcut_after_activation:
      raise ValueError(
          "this is StudioGAN's discriminator (keys blocks.<i>.0.conv2d1…), whose in-place ReLU "
          "feeds relu(x) to every DiscBlock's shortcut; build ResNetDiscriminator("
          "shortcut_after_activation=True) (config.model.d_shortcut_after_activation=True) "
          "to compute what StudioGAN computes")
    variables = studiogan_discriminator(sd, module)
    example = (jnp.zeros((1, module.resolution, module.resolution, module.channels),
                         jnp.float32), *labels)
  else:
    raise TypeError(f"from_torch supports Generator64, Discriminator64, ResNetGenerator and "
                    f"ResNetDiscriminator, got {type(module).__name__}; convert layers with the "
                    "per-layer functions.")
  sd.check_all_used()
  _check_shapes(variables, dict(jax.eval_shape(module.init, jax.random.key(0), *example)), sd,
                _describe(module))
  return variables


# ---------------------------------------------------------------- StudioGAN's SAGAN

# StudioGAN's SelfAttention (ops.py) → this library's names (see OfficialSelfAttention).
STUDIOGAN_ATTENTION_NAMES = {"conv1x1_theta": "key_conv", "conv1x1_phi": "query_conv",
                             "conv1x1_g": "value_conv", "conv1x1_attn": "output_conv"}
# StudioGAN's block convolutions → ours (conv2d0 is the 1×1 shortcut).
STUDIOGAN_BLOCK_CONVS = {"conv2d0": "shortcut", "conv2d1": "conv1", "conv2d2": "conv2"}


def _studiogan_attention(sd: StateDictReader, prefix: str) -> Variables:
  layers = {ours: conv2d(sd, _join(prefix, theirs), use_bias=False)
            for theirs, ours in STUDIOGAN_ATTENTION_NAMES.items()}
  return nest(layers, {"gamma": sd.convert(_join(prefix, "sigma"), lambda a: a.reshape(()))})


def _conditional_batch_norm(sd: StateDictReader, prefix: str) -> Variables:
  """StudioGAN's ``ConditionalBatchNorm2d`` (gain/bias: Linear on one-hot labels, BN
  without affine) → ``ConditionalBatchNorm`` (``LabelLinear`` kernels ``(K, C)``)."""
  return nest({
      "gain": linear(sd, _join(prefix, "gain"), use_bias=False),
      "bias": linear(sd, _join(prefix, "bias"), use_bias=False),
      "bn": {"batch_stats": {"mean": sd.convert(_join(prefix, "bn.running_mean")),
                             "var": sd.convert(_join(prefix, "bn.running_var"))}},
  })


def _channel_major_to_nhwc(sd: StateDictReader, variables: Variables, channels: int,
                            side: int) -> Variables:
  """A linear layer whose outputs PyTorch views as ``(C, side, side)`` (``linear0``) →
  ours, reshaped as ``(side, side, C)``: outputs (kernel columns, bias, u) permuted."""
  order = np.arange(channels * side * side).reshape(channels, side, side)
  order = order.transpose(1, 2, 0).reshape(-1)  # our output j is their output order[j]
  params = dict(variables["params"])
  params["kernel"] = sd.derived(params["kernel"][:, order], params["kernel"])
  params["bias"] = sd.derived(params["bias"][order], params["bias"])
  out = {**variables, "params": params}
  if "spectral" in variables:
    u = variables["spectral"]["u"]
    out["spectral"] = {**variables["spectral"], "u": sd.derived(u[order], u)}
  return out


def studiogan_generator(state_dict, module: ResNetGenerator) -> Variables:
  """Variables of ``module`` from StudioGAN's SAGAN ``Generator`` state_dict (its
  ``resnet`` backbone, ``cBN``, ``apply_g_sn``). ``module``'s resolution, width,
  classes and attention placement must be the checkpoint's (StudioGAN's
  ``attn_g_loc: [k]`` is attention after block ``k``)."""
  sd = _reader(state_dict)
  first = GENERATOR_CHANNELS[module.resolution][0] * module.width
  layers = {"linear": _channel_major_to_nhwc(sd, linear(sd, "linear0"), first,
                                               RESNET_BOTTOM)}
  for index, stage in enumerate(generator_stages(module.resolution, module.attention)):
    prefix = f"blocks.{index}.0"
    if stage.is_attention:
      layers[stage.name] = _studiogan_attention(sd, prefix)
      continue
    block = {ours: conv2d(sd, f"{prefix}.{theirs}")
             for theirs, ours in STUDIOGAN_BLOCK_CONVS.items()}
    for bn in ("bn1", "bn2"):
      block[bn] = (batch_norm(sd, f"{prefix}.{bn}") if module.num_classes is None
                   else _conditional_batch_norm(sd, f"{prefix}.{bn}"))
    layers[stage.name] = nest(block)
  layers["bn"] = batch_norm(sd, "bn4")
  layers["conv_out"] = conv2d(sd, "conv2d5")
  return nest(layers)


def studiogan_discriminator(state_dict, module: ResNetDiscriminator) -> Variables:
  """Variables of ``module`` from StudioGAN's SAGAN ``Discriminator`` state_dict (``resnet``,
  ``d_cond_mtd: PD`` or unconditional, ``apply_d_sn``); ``attn_d_loc: [k]`` is attention
  after block ``k``."""
  sd = _reader(state_dict)
  layers: dict[str, Variables] = {}
  channels = module.channels
  for index, stage in enumerate(discriminator_stages(module.resolution, module.attention)):
    prefix = f"blocks.{index}.0"
    if stage.is_attention:
      layers[stage.name] = _studiogan_attention(sd, prefix)
      continue
    features = stage.multiple * module.width
    convs = dict(STUDIOGAN_BLOCK_CONVS)
    if not (stage.downsample or channels != features):
      del convs["conv2d0"]  # an identity shortcut
    layers[stage.name] = nest({ours: conv2d(sd, f"{prefix}.{theirs}")
                               for theirs, ours in convs.items()})
    channels = features
  layers["linear"] = linear(sd, "linear1")
  if module.num_classes is not None:
    layers["embedding"] = embedding(sd, "embedding")
  return nest(layers)
