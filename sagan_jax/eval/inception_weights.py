"""pytorch-fid's Inception weight file → the Flax parameters of `FIDInceptionV3`.

The weights are TF's 2015-12-05 Inception graph as pytorch-fid publishes them,
``pt_inception-2015-12-05-6726825d.pth`` (about 91 MiB), from
`WEIGHTS_URL`. Nothing here downloads it: the user fetches it once (or
already has it, in torch hub's cache, if pytorch-fid ever ran) and passes its
path. It is read without PyTorch (`sagan_jax.interop.torch_file`).

Conversion (every key checked against the network, like PyTorch's strict
``load_state_dict``):

* ``<block>.conv.weight (out, in, kh, kw)`` and ``<block>.bn.{weight, bias,
  running_mean, running_var}`` → one convolution with a bias: with
  ``s = γ / √(running_var + 0.001)``, ``kernel = weight · s`` (as
  ``(kh, kw, in, out)``) and ``bias = β − running_mean · s``, computed in
  float64 and rounded once to float32 (BatchNorm in eval mode, folded);
  ``bn.num_batches_tracked`` is ignored;
* ``fc.weight (1008, 2048)``, ``fc.bias`` → the ``fc`` Dense layer.
"""

from __future__ import annotations

import functools
import os
import zipfile
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sagan_jax.eval.errors import EvalAssetNotFoundError, EvalError
from sagan_jax.eval.inception_net import FIDInceptionV3
from sagan_jax.interop.torch_file import TorchFileError, read_state_dict

__all__ = ["BN_EPS", "WEIGHTS_FILE", "WEIGHTS_URL", "check_weights_file", "default_weights_path",
           "from_state_dict", "load_weights", "torch_shapes"]

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILE)
WEIGHTS_MIB = 91  # the published file's size, for messages
BN_EPS = 0.001  # torchvision's BasicConv2d: BatchNorm2d(eps=0.001)
_BN_STATS = ("weight", "bias", "running_mean", "running_var")
_IGNORED_SUFFIX = ".num_batches_tracked"


def default_weights_path() -> str:
  """Where pytorch-fid's download lands: torch hub's checkpoint folder
  (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``)."""
  torch_home = os.environ.get("TORCH_HOME") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
  return os.path.join(torch_home, "hub", "checkpoints", WEIGHTS_FILE)


@functools.cache
def _abstract_params() -> Any:
  x = jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32)
  return jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), x)["params"]


def _conv_prefixes(params: Any) -> dict[str, tuple[int, ...]]:
  """Torch module prefix of every folded convolution → its ``(kh, kw, in, out)`` kernel shape."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    names = [p.key for p in path]
    if names[-2:] == ["conv", "kernel"]:
      out[".".join(names[:-2])] = tuple(leaf.shape)
  return out


def torch_shapes() -> dict[str, tuple[int, ...]]:
  """Every key of the FID Inception ``state_dict`` and its shape (``num_batches_tracked``
  left out: optional, ignored)."""
  params = _abstract_params()
  shapes: dict[str, tuple[int, ...]] = {}
  for prefix, (kh, kw, cin, cout) in _conv_prefixes(params).items():
    shapes[f"{prefix}.conv.weight"] = (cout, cin, kh, kw)
    shapes.update({f"{prefix}.bn.{name}": (cout,) for name in _BN_STATS})
  dim, classes = params["fc"]["kernel"].shape
  shapes.update({"fc.weight": (classes, dim), "fc.bias": (classes,)})
  return shapes


def _check_keys(state_dict: Mapping[str, Any], where: str) -> None:
  """One line naming the first unexpected, missing or mis-shaped key."""
  expected = torch_shapes()
  for key, value in state_dict.items():
    if key.endswith(_IGNORED_SUFFIX) and key[:-len(_IGNORED_SUFFIX)] + ".weight" in expected:
      continue
    if key not in expected:
      raise EvalError(f"{where} is not the FID Inception: unexpected key {key!r}")
    if tuple(np.shape(value)) != expected[key]:
      raise EvalError(f"{where} is not the FID Inception: {key!r} has shape "
                      f"{tuple(np.shape(value))}, expected {expected[key]}")
  missing = [key for key in expected if key not in state_dict]
  if missing:
    raise EvalError(f"{where} is not the FID Inception: missing key {missing[0]!r} "
                    f"({len(missing)} missing)")


def from_state_dict(state_dict: Mapping[str, Any], where: str = "the state_dict") -> Any:
  """The Flax ``params`` of `FIDInceptionV3` from a pytorch-fid ``state_dict`` of arrays.

  Raises:
    EvalError: a key is unexpected, missing or mis-shaped (the message names it).
  """
  _check_keys(state_dict, where)
  sd = {k: np.asarray(v, np.float64) for k, v in state_dict.items()
        if not k.endswith(_IGNORED_SUFFIX)}
  params: dict[str, Any] = {}
  for prefix in _conv_prefixes(_abstract_params()):
    gamma, beta, mean, var = (sd[f"{prefix}.bn.{name}"] for name in _BN_STATS)
    scale = gamma / np.sqrt(var + BN_EPS)
    kernel = sd[f"{prefix}.conv.weight"].transpose(2, 3, 1, 0) * scale
    node = params
    for name in prefix.split("."):
      node = node.setdefault(name, {})
    node["conv"] = {"kernel": kernel.astype(np.float32),
                    "bias": (beta - mean * scale).astype(np.float32)}
  params["fc"] = {"kernel": sd["fc.weight"].T.astype(np.float32),
                  "bias": sd["fc.bias"].astype(np.float32)}
  return params


def check_weights_file(path: Optional[str | os.PathLike] = None) -> str:
  """The weight file's path (default `default_weights_path`), checked to exist.

  Raises:
    EvalAssetNotFoundError: no file there (the message says where to download it).
  """
  path = default_weights_path() if path is None else os.fspath(path)
  if not os.path.isfile(path):
    raise EvalAssetNotFoundError(
        f"FID Inception weights {path} not found: download {WEIGHTS_URL} and pass its path "
        "(--inception_weights)")
  return path


def _unreadable(path: str) -> str:
  """Why ``path`` does not read as a weight file, in terms the user can act on: the
  reader's own error (pickle opcodes, zip records) is no help; the file's size and
  whether it is a zip archive cut short are."""
  with open(path, "rb") as f:
    zip_start = f.read(4) == b"PK\x03\x04"
  what = ("a zip archive without its end: truncated" if zip_start and not zipfile.is_zipfile(path)
          else "truncated, damaged or another kind of file")
  return (f"{path} ({os.path.getsize(path):,} bytes) is not a readable PyTorch weight file "
          f"({what}; pytorch-fid's is a {WEIGHTS_MIB} MiB zip archive): download "
          f"{WEIGHTS_URL} again")


def load_weights(path: Optional[str | os.PathLike] = None) -> Any:
  """The Flax ``params`` from pytorch-fid's weight file (default `default_weights_path`).

  Raises:
    EvalAssetNotFoundError: no file at ``path`` (the message says where
      pytorch-fid publishes it).
    EvalError: the file is unreadable or not the FID Inception's ``state_dict``.
  """
  path = check_weights_file(path)
  try:
    state_dict = read_state_dict(path)
  except TorchFileError as error:
    raise EvalError(_unreadable(path)) from error
  if not isinstance(state_dict, Mapping):
    raise EvalError(f"{path} is not the FID Inception: it holds a "
                    f"{type(state_dict).__name__}, not a state_dict")
  return from_state_dict(state_dict, where=path)
