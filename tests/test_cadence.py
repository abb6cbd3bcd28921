"""The loop's cadence (runs/cadence.py): what is due after a step, where a dispatch of
steps ends, and the data-wait meter (runtime/progress.py). Pure Python: no compute."""

from __future__ import annotations

import pytest

from sagan_jax.runs.cadence import Cadence, Duties, itstime
from sagan_jax.runtime.progress import DataWait


def test_itstime_at_multiples_and_the_last_step_never_when_off():
  assert [s for s in range(1, 11) if itstime(s, 4, 10)] == [4, 8, 10]
  assert not any(itstime(s, 0, 10) or itstime(s, None, 10) for s in range(1, 11))


def chapter(**periods) -> Cadence:
  """The chapter's layout: 7 steps per epoch, the last batch partial, K = 6, 20 steps."""
  return Cadence(total=20, steps_per_dispatch=6, batches_per_epoch=7, partial_batch=True,
                 **{"log_every": 100, "sample_every": 100, "checkpoint_every": 100,
                    **periods})


def test_duties_of_a_step():
  cadence = chapter(log_every=7, sample_every=10, checkpoint_every=9, eval_every=0)
  assert cadence.duties(9) == Duties(checkpoint=True)
  assert cadence.duties(14) == Duties(log=True)
  assert cadence.duties(20) == Duties(log=True, sample=True, checkpoint=True, last=True)
  assert not cadence.duties(11).any


def test_dispatches_end_at_duties_at_k_and_around_the_partial_batch():
  cadence = chapter(log_every=7, checkpoint_every=9, sample_every=10)
  assert [cadence.is_partial(i) for i in range(15)] == [i % 7 == 6 for i in range(15)]
  # (last step, steps): K, the partial batch alone, then cut at 9 (checkpoint), 10
  # (samples), before the partial batch (13), at it (14), at K again and at the end.
  assert list(cadence.dispatches(0)) == [(6, 6), (7, 1), (9, 2), (10, 1), (13, 3), (14, 1),
                                         (18, 4), (20, 2)]
  assert list(cadence.dispatches(9, limit=4)) == [(10, 1), (13, 3)]


@pytest.mark.parametrize("d_steps", [1, 2])
def test_without_a_partial_batch_only_k_and_duties_cut(d_steps):
  cadence = Cadence(total=13, steps_per_dispatch=4, log_every=6, sample_every=100,
                    checkpoint_every=100, batches_per_epoch=3, d_steps=d_steps)
  assert list(cadence.dispatches(0)) == [(4, 4), (6, 2), (10, 4), (12, 2), (13, 1)]


class FakeClock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_data_wait_fraction_per_interval_and_one_warning():
  clock = FakeClock()
  waits = DataWait(starved_fraction=0.5, min_seconds=10, clock=clock)

  def slow_batches():
    while True:
      clock.now += 0.6  # waiting for the batch
      yield None

  batches = slow_batches()
  waits.start()
  verdicts = []
  for _ in range(30):
    waits.next(batches)
    clock.now += 0.4  # the step
    verdicts.append(waits.starved())
  assert waits.interval() == pytest.approx(0.6)
  assert waits.fraction == pytest.approx(0.6)
  # Once, when 10 s have passed (after the 10th step), not at every later step.
  assert verdicts == [False] * 9 + [True] + [False] * 20


def test_data_wait_never_starved_when_batches_are_ready():
  clock = FakeClock()
  waits = DataWait(min_seconds=1, clock=clock)
  batches = iter(range(100))
  for _ in range(100):
    waits.next(batches)
    clock.now += 0.1
    assert not waits.starved()
  assert waits.interval() == 0.0
