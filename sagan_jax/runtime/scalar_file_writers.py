"""`CsvWriter` and `JsonlWriter`: a run's scalars as one table file in the workdir.

For a spreadsheet, pandas or a plotting script, with nothing to install:

* ``<workdir>/metrics.csv`` — long format, one row per scalar:
  ``step,name,value,wall_time`` (TensorBoard's CSV export has the same columns
  for one tag): ``pandas.read_csv(path).pivot_table(index="step",
  columns="name", values="value")`` gives one column per metric;
* ``<workdir>/metrics.jsonl`` — one JSON object per `write_scalars` call:
  ``{"step": 10, "wall_time": …, "d_loss": …, …}`` (non-finite values as
  ``null``: strict JSON); ``pandas.read_json(path, lines=True)``.

Rows are appended and fsynced as they are written, so a killed run keeps what
it logged. A run that resumes from a checkpoint (``resume_step``) first drops the
rows an interrupted run logged *after* that step (they are logged again), as
TensorBoard purges them. Images are not written (they are PNGs in
``samples/``); hyperparameters go to ``<workdir>/hparams.json``.
"""

from __future__ import annotations

import abc
import csv
import io
import json
import math
import os
import threading
import time
from typing import Any, Mapping, Optional

from sagan_jax.atomic_file import atomic_write
from sagan_jax.runtime.metric_writer import MetricWriter, checked_images, scalar_values

__all__ = ["CsvWriter", "HPARAMS_FILE", "JsonlWriter"]

HPARAMS_FILE = "hparams.json"


class _ScalarFileWriter(MetricWriter):
  """One append-only file of scalar records under ``workdir``."""

  file_name: str  # set by each format

  def __init__(self, workdir: str | os.PathLike, *, resume_step: Optional[int] = None):
    self.workdir = os.fspath(workdir)
    self.path = os.path.join(self.workdir, self.file_name)
    self._lock = threading.Lock()
    os.makedirs(self.workdir, exist_ok=True)
    if resume_step is not None and os.path.exists(self.path):
      self._drop_after(int(resume_step))
    new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
    self._file = open(self.path, "a", encoding="utf-8", newline="")
    if new:
      self._append(self.header())

  def header(self) -> str:
    """The file's first line(s), or ''."""
    return ""

  @abc.abstractmethod
  def records(self, step: int, values: Mapping[str, float], wall_time: float) -> str:
    """The text one `write_scalars` call appends."""

  @abc.abstractmethod
  def step_of(self, line: str) -> Optional[int]:
    """The step of a written line; None for a header."""

  def _drop_after(self, step: int) -> None:
    with open(self.path, encoding="utf-8", newline="") as f:
      lines = f.read().splitlines(keepends=True)
    kept = [line for line in lines if (self.step_of(line) or 0) <= step]
    if len(kept) != len(lines):
      atomic_write(self.path, "".join(kept).encode())

  def _append(self, text: str) -> None:
    if not text:
      return
    with self._lock:
      if self._file is None:
        raise RuntimeError(f"{type(self).__name__} for {self.path!r} is closed.")
      self._file.write(text)
      self._file.flush()
      os.fsync(self._file.fileno())  # on disk now: a killed run keeps what it logged

  def write_scalars(self, step: int, mapping: Mapping[str, Any]) -> None:
    self._append(self.records(int(step), scalar_values(mapping), time.time()))

  def write_images(self, step: int, mapping: Mapping[str, Any]) -> None:
    """Checks the images (as every writer does) and writes nothing: a table holds
    numbers; the run's images are PNG files in ``samples/``."""
    del step
    checked_images(mapping)
    if self._file is None:
      raise RuntimeError(f"{type(self).__name__} for {self.path!r} is closed.")

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """``<workdir>/hparams.json`` (written atomically; a rerun replaces it)."""
    plain = {str(k): v if isinstance(v, (bool, int, float, str)) or v is None else str(v)
             for k, v in hparams.items()}
    atomic_write(os.path.join(self.workdir, HPARAMS_FILE),
                 (json.dumps(plain, indent=2, sort_keys=True) + "\n").encode())

  def flush(self) -> None:
    """Nothing to do: every write is already on disk."""

  def close(self) -> None:
    with self._lock:
      if self._file is not None:
        self._file.close()
        self._file = None


class CsvWriter(_ScalarFileWriter):
  """``<workdir>/metrics.csv``: ``step,name,value,wall_time``, one row per scalar."""

  file_name = "metrics.csv"
  columns = ("step", "name", "value", "wall_time")

  def header(self) -> str:
    return ",".join(self.columns) + "\r\n"  # the csv module's line ending

  def records(self, step: int, values: Mapping[str, float], wall_time: float) -> str:
    out = io.StringIO()
    rows = csv.writer(out)
    for name, value in values.items():
      rows.writerow((step, name, repr(value), f"{wall_time:.3f}"))
    return out.getvalue()

  def step_of(self, line: str) -> Optional[int]:
    first = line.split(",", 1)[0]
    return int(first) if first.isdigit() else None


class JsonlWriter(_ScalarFileWriter):
  """``<workdir>/metrics.jsonl``: one ``{"step", "wall_time", <name>: value}`` a call."""

  file_name = "metrics.jsonl"
  reserved = ("step", "wall_time")

  def records(self, step: int, values: Mapping[str, float], wall_time: float) -> str:
    clash = [name for name in values if name in self.reserved]
    if clash:
      raise ValueError(f"scalar {clash[0]!r} would overwrite the record's own field")
    record = {"step": step, "wall_time": round(wall_time, 3)}
    record.update({k: v if math.isfinite(v) else None for k, v in values.items()})
    return json.dumps(record, allow_nan=False) + "\n"

  def step_of(self, line: str) -> Optional[int]:
    return int(json.loads(line)["step"]) if line.strip() else None
