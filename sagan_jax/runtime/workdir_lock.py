"""One trainer per workdir: an exclusive lock on ``<workdir>/trainer.lock``.

Two trainers writing one workdir mix their checkpoints, and one deletes the
other's unfinished save. The trainer therefore takes this lock before it
writes anything, and holds it until it exits.

Why ``fcntl.flock`` on a file that is never deleted (rather than creating the
file with ``O_EXCL`` and removing it at exit):

* the kernel releases a ``flock`` when its holder dies, however it dies
  (``kill -9``, out of memory, a power cut of the client on NFS), so a crash
  never leaves a lock that blocks the next run. An ``O_EXCL`` file outlives a
  crash and has to be judged stale from a pid, which may have been reused;
* the file is never unlinked, so two processes can never hold locks on two
  different inodes of the same path (the classic race of deleting lock files);
* NFS (v4, or v3 with the lock manager) implements ``flock`` as a byte-range
  lock held by the server, so trainers on different hosts exclude each other.

The file holds the holder's host, pid, start time and command line (JSON),
so a refused trainer names it; a clean exit empties the file. Finding the
lock free but the file still naming a process means that process did not
exit cleanly: on this host the kernel's word is confirmed by the pid being
gone, and the lock is taken over with a warning; a holder on another host
cannot be checked from here (and a file system whose locks do not reach
across hosts would look the same), so the trainer refuses and says how to
clear it. File systems without locking (``ENOLCK``, e.g. NFS mounted with
``nolock``) get a warning and no lock.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from typing import Any, Optional

from sagan_jax.runtime.workdir import WorkdirError

LOCK_FILE = "trainer.lock"
# flock errors that mean "this file system cannot lock", not "someone holds it".
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)

logger = logging.getLogger(__name__)


class WorkdirLockedError(RuntimeError):
  """Another trainer holds (or may hold) the workdir's lock."""


def _describe(holder: dict[str, Any]) -> str:
  if not holder:
    return "a process that has not written its details yet"
  return (f"pid {holder.get('pid')} on host {holder.get('host')}, started "
          f"{holder.get('started')} ({holder.get('command')})")


def _process_start(pid: int) -> Optional[str]:
  """When process ``pid`` started, in clock ticks since boot (Linux), else None."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      # Field 22; the command name (field 2) may hold spaces, so count after its ')'.
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _holder_running(holder: dict[str, Any]) -> bool:
  """Whether the process a lock file names (on this host) still runs — not a
  later process that was given the same pid."""
  try:
    pid = int(holder.get("pid"))
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, TypeError, ValueError):
    return True  # exists under another user, or unreadable: assume it runs
  recorded = holder.get("pid_start")
  return recorded is None or _process_start(pid) in (None, recorded)


class WorkdirLock:
  """Holds ``<workdir>/trainer.lock`` exclusively; a context manager.

  Raises (from `acquire`):
    WorkdirLockedError: another trainer holds the lock, or a trainer on another
      host left it without releasing it.
    WorkdirError: the workdir is not writable (read-only file system, permissions).
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    self._fd: Optional[int] = None

  def acquire(self) -> "WorkdirLock":
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:  # the workdir's first write: a read-only one fails here
      raise WorkdirError(f"cannot write in the workdir {os.path.dirname(self.path)}: "
                         f"{error.strerror}") from error
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        raise WorkdirLockedError(
            f"{os.path.dirname(self.path)} is in use by another trainer: "
            f"{_describe(self._read(fd))}; wait for it to finish or stop it "
            f"(lock: {self.path})") from None
      except OSError as error:
        if error.errno not in _UNSUPPORTED:
          raise
        logger.warning("%s cannot be locked on this file system (%s): make sure no other "
                       "trainer uses this workdir.", self.path, error.strerror)
      self._take_over(self._read(fd))
      self._write(fd, {"host": socket.gethostname(), "pid": os.getpid(),
                       "pid_start": _process_start(os.getpid()),
                       "started": datetime.datetime.now().isoformat(timespec="seconds"),
                       "command": " ".join(sys.argv)})
    except BaseException:
      os.close(fd)
      raise
    self._fd = fd
    return self

  def _take_over(self, previous: dict[str, Any]) -> None:
    """Judges a lock file that still names a holder although the lock was free."""
    if not previous:
      return  # released cleanly
    if previous.get("host") != socket.gethostname():
      raise WorkdirLockedError(
          f"{self.path} names a trainer on another host that did not release it: "
          f"{_describe(previous)}. If that process is gone, empty or delete the file and rerun.")
    if previous.get("pid") != os.getpid() and _holder_running(previous):
      # The lock was free, yet its holder runs: this file system's locks do not work.
      raise WorkdirLockedError(
          f"{os.path.dirname(self.path)} is in use by another trainer: {_describe(previous)} "
          f"(lock: {self.path})")
    logger.warning("Taking over the workdir lock left by %s, which is no longer running.",
                   _describe(previous))

  @staticmethod
  def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode(errors="replace").strip()
    if not text:
      return {}
    try:
      holder = json.loads(text)
    except ValueError:
      return {"command": f"unreadable lock file content {text[:80]!r}"}
    return holder if isinstance(holder, dict) else {}

  @staticmethod
  def _write(fd: int, holder: dict[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(holder) + "\n").encode())
    os.fsync(fd)

  def release(self) -> None:
    """Empties the file (a clean exit) and drops the lock."""
    if self._fd is None:
      return
    try:
      os.ftruncate(self._fd, 0)
    except OSError:
      pass  # the next trainer then sees a dead holder: a warning, nothing worse
    finally:
      os.close(self._fd)  # closing releases the flock
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc_info) -> None:
    self.release()
