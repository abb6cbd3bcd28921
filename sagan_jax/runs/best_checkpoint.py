"""The best checkpoint by an evaluation metric, kept apart from the rolling ones.

With ``config.eval_every`` set, every evaluation during training compares its
FID (``BEST_METRIC``) with the best so far; a better one saves the whole state
to ``<workdir>/best_checkpoint/<step>`` (one step kept there: the previous best
is replaced) and records ``{"step", "fid"}`` in ``best_checkpoint/best.json``.
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

from sagan_jax.atomic_file import atomic_write
from sagan_jax.train.checkpoint import Checkpointer

logger = logging.getLogger(__name__)

SUBDIR = "best_checkpoint"
RECORD = "best.json"
BEST_METRIC = "fid"  # lower is better


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
  """Saves the state whenever an evaluation beats the best ``BEST_METRIC`` so far."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.best = read_best(workdir)  # survives a resume
    self._checkpointer: Optional[Checkpointer] = None

  def update(self, step: int, result: Mapping[str, Any], state: Any, config: Any) -> bool:
    """Saves ``state`` as the best if ``result`` beats the record; returns whether it did."""
    value = result.get(BEST_METRIC)
    if value is None or not math.isfinite(value):
      return False
    if self.best is not None and value >= self.best[BEST_METRIC]:
      return False
    if self._checkpointer is None:
      self._checkpointer = Checkpointer(self.workdir, keep=1, subdir=SUBDIR)
    self._checkpointer.save(step, state, config)
    self._checkpointer.wait()  # the record must not name a step still being written
    self.best = {"step": int(step), BEST_METRIC: float(value)}
    atomic_write(record_path(self.workdir), json.dumps(self.best).encode())
    logger.info("step %d: new best %s %.4g, saved to %s", step, BEST_METRIC, value,
                os.path.join(self._checkpointer.directory, str(step)))
    return True

  def close(self) -> None:
    if self._checkpointer is not None:
      self._checkpointer.close()
