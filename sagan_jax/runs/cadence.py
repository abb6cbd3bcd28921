"""What the training loop does after a step, and where a dispatch of steps ends.

big_vision's ``u.itstime(step, every, total)`` for each duty (log, sample,
evaluate, checkpoint): the loop asks `Cadence.duties` once per dispatch and acts
on the answer, and `Cadence.ends_dispatch` cuts the K-step dispatches where a
duty falls (so each happens at exactly the configured step) and before a batch
of another size (an epoch's partial batch: a scan needs equal shapes).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import ml_collections


def itstime(step: int, every: Optional[int], total: int) -> bool:
  """Whether a duty repeated every ``every`` steps is due after (1-based) ``step`` of
  ``total``: at its multiples and at the last step; never when ``every`` is 0/None."""
  return bool(every) and (step % every == 0 or step == total)


@dataclasses.dataclass(frozen=True)
class Duties:
  """What is due after one step (the last of a dispatch)."""
  log: bool = False
  sample: bool = False
  evaluate: bool = False
  checkpoint: bool = False
  last: bool = False  # the run's last step

  @property
  def any(self) -> bool:
    return self.log or self.sample or self.evaluate or self.checkpoint or self.last


@dataclasses.dataclass(frozen=True)
class Cadence:
  """A run's step cadence: its duties and its dispatch boundaries.

  Attributes:
    total: the run's last step.
    steps_per_dispatch: K, the steps one full dispatch scans.
    log_every, sample_every, checkpoint_every, eval_every: the duties' periods
      (0: never; evaluation is off without an evaluator).
    batches_per_epoch: the batcher's batches per epoch.
    partial_batch: whether an epoch's last batch is smaller than the others.
    d_steps: batches a training step reads (one per D update).
  """
  total: int
  steps_per_dispatch: int = 1
  log_every: int = 0
  sample_every: int = 0
  checkpoint_every: int = 0
  eval_every: int = 0
  batches_per_epoch: int = 1
  partial_batch: bool = False
  d_steps: int = 1

  @classmethod
  def of(cls, config: ml_collections.ConfigDict, total: int, batcher) -> "Cadence":
    """The cadence of ``config``'s run over ``batcher``'s epochs, ``total`` steps long
    (the same on every process, which run the same dispatches)."""
    return cls(total=total, steps_per_dispatch=config.steps_per_dispatch,
               log_every=config.log_every, sample_every=config.sample_every,
               checkpoint_every=config.checkpoint_every,
               eval_every=config.eval.every,
               batches_per_epoch=batcher.batches_per_epoch,
               partial_batch=batcher.last_batch_size != batcher.batch_size,
               d_steps=config.optimizer.d_steps)

  def duties(self, step: int) -> Duties:
    """What is due after (1-based) ``step``."""
    return Duties(log=itstime(step, self.log_every, self.total),
                  sample=itstime(step, self.sample_every, self.total),
                  evaluate=itstime(step, self.eval_every, self.total),
                  checkpoint=itstime(step, self.checkpoint_every, self.total),
                  last=step == self.total)

  def is_partial(self, index: int) -> bool:
    """Whether the (0-based) step ``index`` reads an epoch's partial batch. Only an epoch's
    last batch can be smaller, so its position alone says (no permutation needed)."""
    if not self.partial_batch:
      return False
    return (index * self.d_steps) % self.batches_per_epoch == self.batches_per_epoch - 1

  def ends_dispatch(self, step: int, group_size: int) -> bool:
    """Whether the dispatch holding ``group_size`` steps ends after (1-based) ``step``:
    when it holds K steps, where a duty is due, and before a batch of another size."""
    if group_size >= self.steps_per_dispatch or self.duties(step).any:
      return True
    return self.is_partial(step) != self.is_partial(step - 1)

  def dispatches(self, start: int, limit: Optional[int] = None) -> Iterator[tuple[int, int]]:
    """``(last step, number of steps)`` of each dispatch after step ``start``, up to
    ``limit`` steps ahead (all of them without)."""
    end = self.total if limit is None else min(self.total, start + limit)
    size = 0
    for step in range(start + 1, end + 1):
      size += 1
      if self.ends_dispatch(step, size):
        yield step, size
        size = 0
