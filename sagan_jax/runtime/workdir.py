"""A run's folder: ``config.json``, and where checkpoints, samples and evaluations go.

    <workdir>/config.json        the full config of the latest start (what sampling and
                                 evaluation rebuild)
    <workdir>/config_history.jsonl  one line per start: time, step, config, data record
    <workdir>/checkpoints/<step> orbax checkpoints of the whole state
    <workdir>/samples/           sample grids and attention figures
    <workdir>/eval/              eval_<step>_<features>_<reference>_n<samples>.json
    <workdir>/events.out.*       TensorBoard
    <workdir>/trainer.lock       held by the running trainer (see workdir_lock.py)

A workdir is a path of the local filesystem (``os``): a URL (``gs://…``, ``s3://…``) is
refused (`require_local`) rather than turned into a local folder named ``gs:``. A bucket
is used mounted (gcsfuse, s3fs); a multi-host run needs a path every host shares, and one
trainer per workdir holds only where the filesystem's ``flock`` reaches across hosts
(NFS does; see workdir_lock.py for a filesystem without locks).
"""

from __future__ import annotations

import datetime
import json
import os
import re
from typing import Any, Optional

import ml_collections

from sagan_jax.atomic_file import atomic_write

CONFIG_FILE = "config.json"
CONFIG_HISTORY_FILE = "config_history.jsonl"
CHECKPOINTS_DIR = "checkpoints"
SAMPLES_DIR = "samples"
EVAL_DIR = "eval"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # scheme://, as in gs://bucket/run


class WorkdirError(OSError):
  """The workdir, or a folder the run writes in it, cannot be used (a file, not writable)."""

  def __str__(self) -> str:
    return str(self.args[0]) if self.args else super().__str__()


def require_local(workdir: str) -> str:
  """Returns ``workdir``, or raises `WorkdirError` (one line naming what to use) if it is
  a URL: every file here is written through the local filesystem."""
  if _URL.match(os.fspath(workdir)):
    raise WorkdirError(
        f"workdir {workdir} is a URL, but workdirs are written through the local filesystem: "
        "give a path (for a bucket, one where it is mounted, e.g. with gcsfuse; for several "
        "hosts, a path on a filesystem they all share)")
  return workdir


def prepare(workdir: str) -> None:
  """Creates ``workdir`` and the folders a run writes there, before any compute:
  a path that is a file, or a folder that cannot be created, is one clear error
  now rather than a traceback after the first steps. (Whether files can be
  written there is learnt when the workdir lock is taken, its first write.)"""
  require_local(workdir)
  for path in (workdir, *(os.path.join(workdir, name)
                          for name in (CHECKPOINTS_DIR, SAMPLES_DIR))):
    if os.path.exists(path) and not os.path.isdir(path):
      raise WorkdirError(f"{path} is a file, but the run needs a folder there"
                         + ("" if path == workdir else "; move the file away"))
    try:
      os.makedirs(path, exist_ok=True)
    except OSError as error:
      raise WorkdirError(f"cannot create the folder {path}: {error.strerror}") from error


def write_config(config: ml_collections.ConfigDict, workdir: str, *,
                 start_step: Optional[int] = None,
                 data_record: Optional[dict[str, Any]] = None) -> str:
  """``<workdir>/config.json`` (written atomically: the latest start's config), and one
  line appended to ``config_history.jsonl`` — when, from which step, with which config
  and on which data (`sagan_jax.data.data_record`) — so a resume with other settings
  loses no earlier start's. A workdir from before the history keeps its old
  ``config.json`` as the history's first line."""
  path = os.path.join(workdir, CONFIG_FILE)
  history = os.path.join(workdir, CONFIG_HISTORY_FILE)
  if os.path.exists(path) and not os.path.exists(history):
    with open(path) as f:
      _append_line(history, {"started": None, "start_step": None,
                             "config": json.load(f), "data": None})
  _append_line(history, {
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "start_step": start_step, "config": json.loads(config.to_json()), "data": data_record})
  return atomic_write(path, config.to_json(indent=2).encode())


def _append_line(path: str, record: dict[str, Any]) -> None:
  """Appends ``record`` as one JSON line, in one write (a kill leaves whole lines), synced."""
  line = (json.dumps(record, sort_keys=True) + "\n").encode()
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    os.write(fd, line)
    os.fsync(fd)
  finally:
    os.close(fd)


def config_history(workdir: str) -> list[dict[str, Any]]:
  """Every start's record from ``config_history.jsonl``, oldest first (a torn last line,
  from a kill mid-write, is left out)."""
  path = os.path.join(workdir, CONFIG_HISTORY_FILE)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in ``workdir`` was trained with."""
  path = os.path.join(require_local(workdir), CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir!r} a sagan-jax workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def samples_dir(workdir: str) -> str:
  return os.path.join(workdir, SAMPLES_DIR)


def eval_dir(workdir: str) -> str:
  return os.path.join(workdir, EVAL_DIR)
