"""Read a PyTorch ``state_dict`` file (``torch.save``) into NumPy arrays, without torch.

Published weights (pytorch-fid's Inception, the chapter's generators) are
``.pth`` files; JAX users need no 200 MB PyTorch install to read them: the FID
Inception's weights (`sagan_jax.eval.inception_weights`) and the generators
``evaluate.py --torch_generator`` scores are read here. This is the package's only
reader of PyTorch files. `read_state_dict` reads both formats ``torch.save`` has written:

* the zip archive (PyTorch ≥ 1.6, the default): ``<name>/data.pkl`` plus one
  raw little- or big-endian record per storage, ``<name>/data/<key>``;
* the legacy stream (earlier releases, and ``_use_new_zipfile_serialization=False``):
  pickles of a magic number, the protocol version and system info, then the
  object, then the list of storage keys, then each storage as an int64
  element count followed by its raw bytes.

The pickle is read by a restricted unpickler that builds only ordered dicts,
tensors and storages — like ``torch.load(weights_only=True)``, a file cannot
run code. Tensors come back as NumPy arrays with PyTorch's shape and strides
resolved (``np.ascontiguousarray``); nested containers keep their structure.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Callable

import ml_dtypes
import numpy as np

__all__ = ["TorchFileError", "read_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch.<Name>Storage → NumPy dtype of its elements.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "UntypedStorage": np.uint8,
}


class TorchFileError(ValueError):
  """The file is not a ``torch.save`` file this reader understands."""


class _Storage:
  """A storage named in the pickle; its bytes are attached once they are read."""

  def __init__(self, key: str, dtype: Any, numel: int):
    self.key, self.dtype, self.numel = key, np.dtype(dtype), int(numel)
    self.array: np.ndarray | None = None


class _TensorRef:
  """A tensor waiting for its storage (the legacy format stores the data after the pickle)."""

  def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def resolve(self) -> np.ndarray:
    data = self.storage.array
    if not self.size:
      return np.array(data[self.offset])
    needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if min(self.size) > 0 and needed > data.size:
      raise TorchFileError(f"a tensor of shape {self.size} reads past its storage "
                           f"({data.size} elements)")
    itemsize = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride])
    return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  del unused  # requires_grad, backward hooks, metadata: irrelevant for arrays
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
  del unused
  return data


class _StorageType:
  """Stands for ``torch.<Name>Storage`` in a persistent id."""

  def __init__(self, name: str):
    self.name = name


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):

  def __init__(self, file: BinaryIO, load_storage: Callable[[tuple], _Storage] | None = None):
    super().__init__(file)
    self._load_storage = load_storage

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise TorchFileError(f"it pickles {module}.{name}, which a state_dict of tensors does not "
                         "hold (only tensors in (ordered) dicts are read)")

  def persistent_load(self, pid: Any) -> Any:
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage") or self._load_storage is None:
      raise TorchFileError(f"unexpected persistent id {pid!r:.80}")
    return self._load_storage(pid)


def _storage_dtype(storage_type: Any) -> Any:
  if isinstance(storage_type, _StorageType):
    return _STORAGE_DTYPES[storage_type.name]
  raise TorchFileError(f"unsupported storage type {storage_type!r:.80}")


def _resolve(obj: Any) -> Any:
  if isinstance(obj, _TensorRef):
    return obj.resolve()
  if isinstance(obj, dict):
    return type(obj)((k, _resolve(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_resolve(v) for v in obj)
  return obj


def _read_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise TorchFileError("a zip file, but not one written by torch.save (no <name>/data.pkl)")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = archive.read(prefix + "byteorder").decode()
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
      _, storage_type, key, _, numel = pid[:5]
      if key not in storages:
        storage = _Storage(key, _storage_dtype(storage_type), numel)
        raw = archive.read(f"{prefix}data/{key}")
        dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
        storage.array = np.frombuffer(raw, dtype=dtype).astype(storage.dtype)
        storages[key] = storage
      return storages[key]

    return _Unpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()


def _read_legacy(f: BinaryIO) -> Any:
  def plain_load() -> Any:  # the header pickles and the key list hold no storages
    return _Unpickler(f).load()

  try:
    magic = plain_load()
  except (pickle.UnpicklingError, EOFError, TorchFileError, ValueError, IndexError) as error:
    raise TorchFileError(f"neither a zip archive nor a legacy torch.save stream ({error})")
  if magic != _LEGACY_MAGIC:
    raise TorchFileError("neither a zip archive nor a legacy torch.save stream")
  if plain_load() != _LEGACY_PROTOCOL:
    raise TorchFileError("unsupported legacy torch.save protocol version")
  sys_info = plain_load()
  if not sys_info.get("little_endian", True):
    raise TorchFileError("big-endian legacy files are not supported")
  storages: dict[str, _Storage] = {}
  views: list[tuple[_Storage, _Storage, int]] = []

  def load_storage(pid: tuple) -> _Storage:
    _, storage_type, root_key, _, numel, view = pid
    dtype = _storage_dtype(storage_type)
    if root_key not in storages:
      storages[root_key] = _Storage(root_key, dtype, numel)
    if view is None:
      return storages[root_key]
    view_key, offset, view_numel = view  # a slice of the root storage (torch < 1.6)
    if view_key not in storages:
      storages[view_key] = _Storage(view_key, dtype, view_numel)
      views.append((storages[view_key], storages[root_key], int(offset)))
    return storages[view_key]

  obj = _Unpickler(f, load_storage).load()
  for key in plain_load():
    storage = storages.get(key)
    if storage is None:
      raise TorchFileError(f"storage {key} is listed but never used")
    (numel,) = struct.unpack("<q", f.read(8))
    nbytes = numel * storage.dtype.itemsize
    raw = f.read(nbytes)
    if len(raw) != nbytes:
      raise TorchFileError(f"the file ends inside storage {key} (truncated?)")
    storage.array = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<")).astype(
        storage.dtype)
  for view, root, offset in views:
    view.array = root.array[offset:offset + view.numel]
  return obj


def read_state_dict(path: str | os.PathLike) -> Any:
  """The object a ``torch.save`` file holds, tensors as NumPy arrays.

  Args:
    path: the file.

  Returns:
    For a ``state_dict``: an ordered dict of name → ``np.ndarray`` (PyTorch
    layouts, e.g. ``Conv2d.weight`` as ``(out, in, kh, kw)``; bfloat16 as
    ``ml_dtypes.bfloat16``).

  Raises:
    FileNotFoundError: no file at ``path``.
    TorchFileError: not a ``torch.save`` file, truncated, or it pickles
      something other than tensors in dicts, lists and tuples.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no file at {path}")
  try:
    if zipfile.is_zipfile(path):
      obj = _read_zip(path)
    else:
      with open(path, "rb") as f:
        obj = _read_legacy(f)
    return _resolve(obj)
  except TorchFileError:
    raise
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, ValueError,
          TypeError, AttributeError, IndexError, struct.error) as error:
    raise TorchFileError(f"unreadable ({type(error).__name__}: {error})") from error
