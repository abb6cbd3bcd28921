"""What the benchmark scripts share: the timing rule, the machine's conditions, and whether
PyTorch is there.

Every benchmark times its sides *interleaved* (one call of each side per round, so a burst of
load from other processes hits all of them alike), reports medians of wall time and of this
process's CPU time, and prints the machine's conditions: the 1-minute load average before and
after the run, against the number of cores. A run during which the load exceeded half the cores
is flagged LOADED: its wall times (and, through the OpenMP/Eigen threads' spin-waits, its
ratios) are not quiet numbers.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable, NamedTuple, Optional


class Timing(NamedTuple):
  """Medians over the timed calls (seconds), and the first call apart (it compiles and warms
  the allocator, so it is never in the median)."""
  wall: float
  cpu: float
  first: float


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(sides: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Timing]:
  """Each side called once to warm up, then ``repeats`` rounds of one call of each side in
  turn; ``{name: Timing}`` of the medians."""
  first = {name: _timed(fn)[0] for name, fn in sides.items()}
  samples: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
  for _ in range(repeats):
    for name, fn in sides.items():
      samples[name].append(_timed(fn))
  return {name: Timing(statistics.median(s[0] for s in values),
                       statistics.median(s[1] for s in values), first[name])
          for name, values in samples.items()}


def median_time(fn: Callable[[], Any], repeats: int) -> Timing:
  """One side alone: ``Timing`` of ``repeats`` calls after a first, untimed-in-the-median one."""
  return interleaved({"fn": fn}, repeats)["fn"]


class Conditions:
  """The machine's conditions over a benchmark run: created at its start, printed at its end.

  ``start_line()`` and ``end_line()`` give the 1-minute load average (``os.getloadavg``), the
  cores, and at the end the whole run's wall and process CPU time; ``loaded`` is true when the
  load before or after exceeded half the cores, and the end line then says so in capitals.
  """

  def __init__(self):
    self.cores = os.cpu_count() or 1
    self.load_before = os.getloadavg()[0]
    self._wall, self._cpu = time.perf_counter(), time.process_time()
    self.load_after: Optional[float] = None

  def start_line(self) -> str:
    return (f"conditions at start: load {self.load_before:.2f} (1-min average) on "
            f"{self.cores} cores")

  @property
  def loaded(self) -> bool:
    loads = [self.load_before] + ([self.load_after] if self.load_after is not None else [])
    return max(loads) > self.cores / 2

  def end_line(self) -> str:
    self.load_after = os.getloadavg()[0]
    wall, cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu
    verdict = (f"LOADED (load > {self.cores / 2:g}, half the cores): wall times and ratios are "
               "not quiet numbers" if self.loaded else "quiet (load ≤ half the cores)")
    return (f"conditions at end: load {self.load_before:.2f} before, {self.load_after:.2f} after "
            f"on {self.cores} cores; run {wall:.1f} s wall, {cpu:.1f} s process CPU; {verdict}")


def import_torch() -> tuple[Optional[Any], str]:
  """``(torch or None, a note for the header line)``: the PyTorch side is optional."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None, "torch not installed: PyTorch column skipped"
  return torch, f"torch {torch.__version__}, {torch.get_num_threads()} threads"
