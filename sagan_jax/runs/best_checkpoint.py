"""The best checkpoint by an evaluation metric, kept apart from the rolling ones.

With ``config.eval.every`` set, every evaluation during training compares its
``config.eval.best_metric`` (FID by default; lower or higher is better as
``BEST_METRICS`` says) with the best so far; a better one saves the whole state
to ``<workdir>/best_checkpoint/<step>`` (one step kept there: the previous best
is replaced) and records ``{"step", <metric>}`` in ``best_checkpoint/best.json``.
A resumed run that selects by another metric than the record's moves the old
best aside to ``best_checkpoint.by_<metric>.step_<step>`` (kept, never deleted) and starts
a new record.
With several processes, process 0 (which alone scores, see
`sagan_jax.runs.shared_evaluation`) keeps the record and decides; every process
then saves the state together (orbax's save is a collective).
``keep_checkpoints`` never deletes it, so the run's best weights survive however
long it trains (the README's chapter run was best at steps 900–1,200 and those
checkpoints were gone by step 2,100). ``restore_generator(workdir, best=True)``
and ``sample.py --best`` read it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Mapping, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

from sagan_jax.atomic_file import atomic_write
from sagan_jax.train.checkpoint import Checkpointer
from sagan_jax.train.config import BEST_METRICS

logger = logging.getLogger(__name__)

SUBDIR = "best_checkpoint"
RECORD = "best.json"
BEST_METRIC = "fid"  # the default: config.eval.best_metric


def record_path(workdir: str) -> str:
  return os.path.join(workdir, SUBDIR, RECORD)


def read_best(workdir: str) -> Optional[dict[str, Any]]:
  """``{"step": …, "fid": …}`` of the best checkpoint, or None before the first one."""
  try:
    with open(record_path(workdir)) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


class BestCheckpoint:
  """Saves the state whenever an evaluation beats the best ``metric`` so far."""

  def __init__(self, workdir: str, metric: str = BEST_METRIC):
    if metric not in BEST_METRICS:
      raise ValueError(f"best metric must be one of {list(BEST_METRICS)}, got {metric!r}")
    self.workdir = workdir
    self.metric = metric
    self.lower_is_better = BEST_METRICS[metric] == "lower"
    self.is_chief = jax.process_index() == 0  # the one that decides (the others: None)
    self.best = read_best(workdir) if self.is_chief else None  # survives a resume
    if self.best is not None and metric not in self.best:
      self._move_aside()
    self._checkpointer: Optional[Checkpointer] = None

  def _move_aside(self) -> None:
    """The record is by another metric: its checkpoint is kept under another name."""
    old_metric = next((k for k in self.best if k != "step"), "unknown")
    where = os.path.join(self.workdir, f"{SUBDIR}.by_{old_metric}.step_{self.best['step']}")
    os.replace(os.path.join(self.workdir, SUBDIR), where)
    logger.warning("best_checkpoint/ held the best step by %s; this run selects by %s: moved "
                   "it to %s", old_metric, self.metric, where)
    self.best = None

  def _beats_record(self, value: float) -> bool:
    if self.best is None:
      return True
    record = self.best[self.metric]
    return value < record if self.lower_is_better else value > record

  def update(self, step: int, result: Optional[Mapping[str, Any]], state: Any,
             config: Any) -> bool:
    """Saves ``state`` as the best if ``result`` beats the record; returns whether it did.

    With several processes a collective: every process calls it, process 0 with the
    result (the others pass None), and all save when process 0 says so."""
    value = None if result is None else result.get(self.metric)
    better = value is not None and math.isfinite(value) and self._beats_record(value)
    if jax.process_count() > 1:
      better = bool(multihost_utils.broadcast_one_to_all(np.int32(better)))
    if not better:
      return False
    if self._checkpointer is None:
      self._checkpointer = Checkpointer(self.workdir, keep=1, subdir=SUBDIR)
    self._checkpointer.save(step, state, config)
    self._checkpointer.wait()  # the record must not name a step still being written
    if not self.is_chief:
      return True
    self.best = {"step": int(step), self.metric: float(value)}
    atomic_write(record_path(self.workdir), json.dumps(self.best).encode())
    logger.info("step %d: new best %s %.4g, saved to %s", step, self.metric, value,
                os.path.join(self._checkpointer.directory, str(step)))
    return True

  def close(self) -> None:
    if self._checkpointer is not None:
      self._checkpointer.close()
