"""Write a ``state_dict`` of NumPy arrays as ``torch.save`` does (zip format), without torch.

For tests that need a weight *file* on machines without PyTorch (the `test` extra has no
torch): e.g. the FID Inception's ``pt_inception-….pth`` with random weights. The layout is
``torch.save``'s own — ``archive/data.pkl`` (protocol 2; tensors as
``torch._utils._rebuild_tensor_v2`` of a persistent ``('storage', torch.<T>Storage, key,
'cpu', numel)``), ``archive/data/<key>`` (raw little-endian bytes), ``archive/byteorder``
and ``archive/version`` — so ``torch.load(weights_only=True)`` reads it too
(tests/test_paper_recipe.py checks that where torch is installed).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from typing import Mapping

import numpy as np

_STORAGES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
             np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
             np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage"}


class _Global:
  """A global named by module and name, pickled without importing it (torch is absent)."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle requires a reduce function to be callable
    raise TypeError(f"{self.module}.{self.name} is only a name here")


class _StorageRef:

  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, array


class _Tensor:

  def __init__(self, storage: _StorageRef):
    self.storage = storage

  def __reduce__(self):
    shape = self.storage.array.shape
    strides = tuple(s // self.storage.array.itemsize for s in self.storage.array.strides)
    return (_Global("torch._utils", "_rebuild_tensor_v2"),
            (self.storage, 0, shape, strides, False, collections.OrderedDict()))


class _Pickler(pickle._Pickler):  # the Python pickler: its dispatch table can be extended
  dispatch = dict(pickle._Pickler.dispatch)

  def _save_global_name(self, obj: _Global) -> None:
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
    self.memoize(obj)

  dispatch[_Global] = _save_global_name

  def persistent_id(self, obj):
    if isinstance(obj, _StorageRef):
      return ("storage", _Global("torch", _STORAGES[obj.array.dtype]), obj.key, "cpu",
              obj.array.size)
    return None


def write_state_dict(path: str | os.PathLike, state_dict: Mapping[str, np.ndarray]) -> str:
  """Writes ``state_dict`` (name → array) to ``path`` in torch.save's zip format."""
  # np.array, not np.ascontiguousarray, which turns a 0-d array (num_batches_tracked) into 1-d.
  arrays = {name: np.array(value, order="C") for name, value in state_dict.items()}
  storages = {name: _StorageRef(str(i), array) for i, (name, array) in enumerate(arrays.items())}
  buffer = io.BytesIO()
  _Pickler(buffer, protocol=2).dump(
      collections.OrderedDict((name, _Tensor(ref)) for name, ref in storages.items()))
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
    archive.writestr("archive/data.pkl", buffer.getvalue())
    archive.writestr("archive/byteorder", "little")
    for ref in storages.values():
      little_endian = ref.array.astype(ref.array.dtype.newbyteorder("<"))
      archive.writestr(f"archive/data/{ref.key}", little_endian.tobytes())
    archive.writestr("archive/version", "3\n")
  return os.fspath(path)
