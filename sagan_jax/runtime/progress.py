"""The console's progress line: step, chosen metrics, rate and ETA.

Library code never prints: `ConsoleProgress` returns the line and the caller
decides where it goes (``logging``, ``print``, absl).
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any, Callable, Mapping, Optional

import numpy as np

__all__ = ["ConsoleProgress", "DataWait", "RateTracker", "format_duration", "format_progress"]


class RateTracker:
  """Steps per second over a sliding window of recent updates.

  The first `update` only sets the starting point: call it after the first
  step completes, so the step that included compilation is not counted.
  """

  def __init__(self, window: int = 20,
               clock: Callable[[], float] = time.monotonic):
    """Creates the tracker.

    Args:
      window: the rate uses the last ``window`` intervals between updates.
      clock: seconds, monotonic; injectable for tests.

    Raises:
      ValueError: if ``window`` < 1.
    """
    if window < 1:
      raise ValueError(f"window must be at least 1, got {window}.")
    self._clock = clock
    self._marks: collections.deque[tuple[int, float]] = collections.deque(
        maxlen=window + 1)

  def update(self, step: int) -> None:
    """Records that ``step`` has just finished.

    Args:
      step: the global step; a step lower than the last one (a restart
        from a checkpoint) starts a fresh window.
    """
    step = int(step)
    if self._marks and step < self._marks[-1][0]:
      self._marks.clear()
    self._marks.append((step, self._clock()))

  @property
  def rate(self) -> Optional[float]:
    """Steps per second over the window, or None before two updates."""
    if len(self._marks) < 2:
      return None
    (s0, t0), (s1, t1) = self._marks[0], self._marks[-1]
    if s1 <= s0 or t1 <= t0:
      return None
    return (s1 - s0) / (t1 - t0)


def format_duration(seconds: float) -> str:
  """``'42s'``, ``'9m42s'``, ``'2h05m09s'`` or ``'3d04h'``; rounds to seconds."""
  if not math.isfinite(seconds):
    return "?"
  s = max(0, int(round(seconds)))
  days, s = divmod(s, 86400)
  hours, s = divmod(s, 3600)
  minutes, s = divmod(s, 60)
  if days:
    return f"{days}d{hours:02d}h"
  if hours:
    return f"{hours}h{minutes:02d}m{s:02d}s"
  if minutes:
    return f"{minutes}m{s:02d}s"
  return f"{s}s"


def _format_value(value: Any) -> str:
  if isinstance(value, (bool, np.bool_)):
    return str(bool(value))
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  v = float(np.asarray(value).reshape(()))
  if not math.isfinite(v):
    return str(v)
  # Fixed point reads best for losses; tiny or huge values (learning rates,
  # gradient norms) would round to 0.000 or sprawl, so use exponent form.
  if v == 0 or 1e-3 <= abs(v) < 1e5:
    return f"{v:.3f}"
  return f"{v:.3e}"


def format_progress(step: int, total_steps: int,
                    metrics: Optional[Mapping[str, Any]] = None,
                    rate: float | RateTracker | None = None) -> str:
  """One progress line, e.g. ``step 120/2100 | d_loss 1.234 | 3.4 steps/s | ETA 9m42s``.

  Args:
    step: steps completed.
    total_steps: steps in the run.
    metrics: name -> scalar (Python, numpy or jax), shown in the given order.
    rate: steps per second, a `RateTracker`, or None while unknown (rate
      and ETA are left out). Rates under 1 step/s show as seconds per step.

  Returns:
    The line, without a newline.
  """
  if isinstance(rate, RateTracker):
    rate = rate.rate
  parts = [f"step {int(step)}/{int(total_steps)}"]
  for name, value in (metrics or {}).items():
    parts.append(f"{name} {_format_value(value)}")
  if rate is not None and rate > 0 and math.isfinite(rate):
    parts.append(f"{rate:.1f} steps/s" if rate >= 1 else f"{1.0 / rate:.1f} s/step")
    parts.append("ETA " + format_duration(max(0, int(total_steps) - int(step)) / rate))
  return " | ".join(parts)


class ConsoleProgress:
  """Tracks the step rate and formats the console progress line.

  Example::

    progress = ConsoleProgress(total_steps=config.num_steps)
    for step in range(start, total):
      state, metrics = train_step(state, batch)
      line = progress.update(step + 1, metrics)  # every step: cheap
      if (step + 1) % 100 == 0:
        logging.info(line)

  The first `update` (normally right after the compiling step) only starts
  the clock. Passing jax arrays as metrics waits for them; call `update`
  with metrics only on the steps whose line is shown, and ``update(step)``
  otherwise, to keep the device pipeline full.
  """

  def __init__(self, total_steps: int, window: int = 20,
               clock: Callable[[], float] = time.monotonic):
    """Creates the helper.

    Args:
      total_steps: steps in the run, for the ETA.
      window: see `RateTracker`.
      clock: see `RateTracker`.
    """
    self.total_steps = int(total_steps)
    self.tracker = RateTracker(window=window, clock=clock)

  def update(self, step: int, metrics: Optional[Mapping[str, Any]] = None) -> str:
    """Records that ``step`` finished and returns the progress line."""
    self.tracker.update(step)
    return format_progress(step, self.total_steps, metrics, self.tracker.rate)

  __call__ = update


class DataWait:
  """Time a loop spends waiting for its next batch (the input pipeline falling behind).

  Example::

    waits = DataWait()
    batch = waits.next(batches)            # timed
    scalars["data_wait"] = waits.interval() # fraction of the time since the last call
    if waits.starved():                     # True once, when the pipeline is the bottleneck
      logging.warning(...)

  Args:
    starved_fraction: `starved` answers True when at least this fraction of the
      time since `start` went to waiting…
    min_seconds: …over at least this many seconds (a short run's noise is no verdict).
    clock: seconds, monotonic; injectable for tests.
  """

  def __init__(self, starved_fraction: float = 0.5, min_seconds: float = 10.0,
               clock: Callable[[], float] = time.perf_counter):
    self._clock = clock
    self._starved_fraction = starved_fraction
    self._min_seconds = min_seconds
    self._waited = self._interval_waited = 0.0
    self._start = self._interval_start = clock()
    self._warned = False

  def start(self) -> None:
    """(Re)starts both clocks: call it once the first step (its compilation) is done."""
    self._waited = self._interval_waited = 0.0
    self._start = self._interval_start = self._clock()

  def next(self, iterator: Any) -> Any:
    """``next(iterator)``, its wait counted."""
    begin = self._clock()
    item = next(iterator)
    waited = self._clock() - begin
    self._waited += waited
    self._interval_waited += waited
    return item

  def interval(self) -> float:
    """The fraction of the time since the last call (or `start`) spent waiting."""
    now = self._clock()
    elapsed = now - self._interval_start
    fraction = self._interval_waited / elapsed if elapsed > 0 else 0.0
    self._interval_start, self._interval_waited = now, 0.0
    return min(1.0, fraction)

  @property
  def fraction(self) -> float:
    """The fraction of the time since `start` spent waiting."""
    elapsed = self._clock() - self._start
    return min(1.0, self._waited / elapsed) if elapsed > 0 else 0.0

  def starved(self) -> bool:
    """True the first time the waits reach ``starved_fraction`` of at least
    ``min_seconds``; False before and ever after (warn once, not every step)."""
    if self._warned or self._clock() - self._start < self._min_seconds:
      return False
    self._warned = self.fraction >= self._starved_fraction
    return self._warned
