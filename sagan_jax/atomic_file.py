"""Writing a file so that a crash never leaves it half-written."""

from __future__ import annotations

import os
import uuid


def atomic_write(path: str | os.PathLike, data: bytes) -> str:
  """Writes ``data`` to ``path`` atomically; creates missing parent folders.

  The bytes go to a hidden temporary file in the destination folder, are
  fsynced, and the file is moved over ``path`` with ``os.replace`` (atomic
  within one filesystem): a process killed mid-write leaves the old file or
  the new one, never a truncated one. A kill can leave a ``.<name>.*.tmp``
  file behind, which no reader's pattern matches.

  Returns:
    ``path`` as a string.
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(
      folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
  # Mode 0o666 lets the umask decide the final permissions, as for an ordinary
  # file (tempfile.mkstemp would leave it at 0o600).
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())  # the data must be on disk before the rename
    os.replace(tmp, path)
  except BaseException:
    try:
      os.remove(tmp)
    except OSError:
      pass
    raise
  return path


def check_writable(path: str | os.PathLike) -> None:
  """Raises ``OSError`` (one clear line) unless a file can be written at ``path``
  (see `check_writable_folder`, which checks its folder)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    raise IsADirectoryError(f"cannot write {path}: it is a folder")
  check_writable_folder(os.path.dirname(os.path.abspath(path)), f"cannot write {path}")


def check_writable_folder(folder: str | os.PathLike, what: str = "") -> None:
  """Raises ``OSError`` (one clear line) unless files can be written in ``folder``.

  Creates and removes a probe file in ``folder`` — or, if it does not exist
  yet, in the nearest folder above it, where it would be created: the only
  test a read-only file system, permissions, quotas and root's privileges all
  answer truthfully. Nothing is left behind. Callers run it before long work
  whose result would otherwise be lost at the final write.
  """
  folder = os.path.abspath(os.fspath(folder))
  what = what or f"cannot write in {folder}"
  existing = folder
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise NotADirectoryError(f"{what}: {existing} is a file, not a folder")
  probe = os.path.join(existing, f".write_probe.{os.getpid()}.{uuid.uuid4().hex[:8]}")
  try:
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    os.remove(probe)
  except OSError as error:
    raise OSError(f"{what}: {error.strerror or error}") from error
