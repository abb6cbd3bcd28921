"""One trainer per workdir (`sagan_jax.runtime.workdir_lock`), and workdirs that cannot be used.

* The lock file names its holder (host, pid, start time, command); a second
  holder — in this process or another — is refused in one line naming it; a
  clean release empties the file.
* A lock left by a process that died on this host (the file still names it)
  is taken over with a warning, also when its pid now belongs to another
  process; one left on another host is refused with what to do.
* ``train_and_evaluate`` takes the lock before it writes anything, and
  refuses a workdir that is a file, holds a file where a folder goes, or
  cannot be written — before any compute.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from sagan_jax.runs import training as loop
from sagan_jax.runtime.workdir import WorkdirError
from sagan_jax.runtime.workdir_lock import LOCK_FILE, WorkdirLock, WorkdirLockedError
from tests.tiny_configs import tiny_config

pytestmark = pytest.mark.usefixtures("one_device_with_compilation_cache")

# Holds the lock of argv[1] in another process until its stdin closes.
HOLDER = """
import sys
from sagan_jax.runtime.workdir_lock import WorkdirLock
lock = WorkdirLock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


@contextlib.contextmanager
def lock_held_by_another_process(workdir):
  process = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
  try:
    assert process.stdout.readline().strip() == "locked"
    yield process.pid
  finally:
    process.stdin.close()
    process.wait(60)


def holder(workdir) -> dict:
  return json.loads((workdir / LOCK_FILE).read_text())


def test_lock_names_its_holder_and_is_emptied_on_release(tmp_path):
  with WorkdirLock(str(tmp_path)):
    info = holder(tmp_path)
    assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
    assert info["started"] and info["command"] == " ".join(sys.argv)
  assert (tmp_path / LOCK_FILE).read_text() == ""


def test_second_holder_in_this_process_is_refused(tmp_path):
  with WorkdirLock(str(tmp_path)):
    with pytest.raises(WorkdirLockedError,
                       match=rf"^{tmp_path} is in use by another trainer: pid {os.getpid()} on "
                             rf"host {socket.gethostname()}, started .*; wait for it to finish "
                             rf"or stop it \(lock: {tmp_path / LOCK_FILE}\)$"):
      WorkdirLock(str(tmp_path)).acquire()
  WorkdirLock(str(tmp_path)).acquire().release()  # free again


def test_holder_in_another_process_is_refused_until_it_exits(tmp_path):
  with lock_held_by_another_process(tmp_path) as pid:
    with pytest.raises(WorkdirLockedError, match=f"in use by another trainer: pid {pid} on"):
      WorkdirLock(str(tmp_path)).acquire()
  WorkdirLock(str(tmp_path)).acquire().release()


def _dead_pid() -> int:
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


@pytest.mark.parametrize("case", ["dead pid", "pid reused"])
def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, caplog, case):
  # What kill -9 leaves: the file still names its holder, the kernel released the lock.
  dead = {"host": socket.gethostname(), "pid": _dead_pid(), "pid_start": "1",
          "started": "2026-11-30T08:00:00", "command": "train.py --config configs/tiny.py"}
  if case == "pid reused":  # a live process has that pid now, but it started at another time
    dead["pid"] = os.getppid()
  (tmp_path / LOCK_FILE).write_text(json.dumps(dead))
  with caplog.at_level(logging.WARNING), WorkdirLock(str(tmp_path)):
    assert holder(tmp_path)["pid"] == os.getpid()
  assert [r.getMessage() for r in caplog.records] == [
      f"Taking over the workdir lock left by pid {dead['pid']} on host {dead['host']}, started "
      f"2026-11-30T08:00:00 (train.py --config configs/tiny.py), which is no longer running."]


def test_lock_left_on_another_host_is_refused(tmp_path):
  other = {"host": "elsewhere", "pid": 123, "started": "2026-11-30T08:00:00",
           "command": "train.py"}
  (tmp_path / LOCK_FILE).write_text(json.dumps(other))
  with pytest.raises(WorkdirLockedError, match=r"names a trainer on another host that did not "
                                               r"release it: pid 123 on host elsewhere.*If that "
                                               r"process is gone, empty or delete the file"):
    WorkdirLock(str(tmp_path)).acquire()


def test_trainer_refuses_a_locked_workdir_before_writing_anything(tmp_path, no_compute):
  with lock_held_by_another_process(tmp_path) as pid:
    with pytest.raises(WorkdirLockedError, match=f"in use by another trainer: pid {pid}"):
      loop.train_and_evaluate(tiny_config(), str(tmp_path))
  # The folders are created before the lock (it lives in the workdir); nothing is written.
  assert {p.name for p in tmp_path.iterdir()} == {LOCK_FILE, "checkpoints", "samples"}
  assert not os.listdir(tmp_path / "checkpoints") and not os.listdir(tmp_path / "samples")


def test_workdir_that_is_a_file(tmp_path, no_compute):
  path = tmp_path / "run"
  path.write_text("not a folder")
  with pytest.raises(WorkdirError, match=f"^{path} is a file, but the run needs a folder there$"):
    loop.train_and_evaluate(tiny_config(), str(path))


def test_samples_that_is_a_file(tmp_path, no_compute):
  (tmp_path / "samples").write_text("not a folder")
  with pytest.raises(WorkdirError, match=f"^{tmp_path / 'samples'} is a file, but the run needs "
                                         "a folder there; move the file away$"):
    loop.train_and_evaluate(tiny_config(), str(tmp_path))


@contextlib.contextmanager
def unwritable_folder(path):
  """``path`` made unwritable — even for root: the immutable attribute where the file
  system has it, else permissions; skips if neither stops this process from writing."""
  made = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
  if not made:
    os.chmod(path, 0o555)
  try:
    try:
      (path / ".probe").touch()
    except OSError:
      yield
    else:
      os.remove(path / ".probe")
      pytest.skip("cannot make a folder unwritable here")
  finally:
    if made:
      subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
      os.chmod(path, 0o755)


def test_unwritable_workdir_is_refused_before_compute(tmp_path, no_compute):
  workdir = tmp_path / "run"
  for folder in ("checkpoints", "samples"):
    (workdir / folder).mkdir(parents=True)
  with unwritable_folder(workdir):
    with pytest.raises(WorkdirError, match=f"^cannot write in the workdir {workdir}: "):
      loop.train_and_evaluate(tiny_config(), str(workdir))
