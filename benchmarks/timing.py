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


def _busy_cpu_seconds() -> Optional[float]:
  """CPU seconds every process on the machine has been busy since boot (Linux's
  ``/proc/stat``: all but idle and iowait), or None where that file is not readable."""
  try:
    with open("/proc/stat", encoding="ascii") as f:
      fields = [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
  return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Conditions:
  """The machine's conditions over a benchmark run: created at its start, printed at its end.

  ``start_line()`` and ``end_line()`` give the 1-minute load average (``os.getloadavg``) and
  the cores; the end line adds the run's wall and process CPU time and, on Linux, how many
  cores *other* processes kept busy on average during the run (all busy CPU time in
  ``/proc/stat`` minus this process's). ``loaded`` is true when the others used more than half
  the cores — the benchmark's own threads do not count, so a quiet machine reads quiet. Where
  ``/proc/stat`` is missing it falls back to the load average before or after exceeding half
  the cores (which counts the benchmark's own threads too).
  """

  def __init__(self):
    self.cores = os.cpu_count() or 1
    self.load_before = os.getloadavg()[0]
    self._busy = _busy_cpu_seconds()
    self._wall, self._cpu = time.perf_counter(), time.process_time()
    self.load_after: Optional[float] = None
    self.others_cores: Optional[float] = None

  def start_line(self) -> str:
    return (f"conditions at start: load {self.load_before:.2f} (1-min average) on "
            f"{self.cores} cores")

  @property
  def loaded(self) -> bool:
    if self.others_cores is not None:
      return self.others_cores > self.cores / 2
    loads = [self.load_before] + ([self.load_after] if self.load_after is not None else [])
    return max(loads) > self.cores / 2

  def end_line(self) -> str:
    self.load_after = os.getloadavg()[0]
    wall, cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu
    busy = _busy_cpu_seconds()
    others = ""
    if busy is not None and self._busy is not None and wall > 0:
      self.others_cores = max(0.0, (busy - self._busy - cpu) / wall)
      others = f"; other processes kept {self.others_cores:.2f} cores busy"
    what = "other processes' use" if self.others_cores is not None else "load"
    verdict = (f"LOADED ({what} > {self.cores / 2:g}, half the cores): wall times and ratios "
               "are not quiet numbers" if self.loaded
               else f"quiet ({what} ≤ half the cores)")
    return (f"conditions at end: load {self.load_before:.2f} before, {self.load_after:.2f} after "
            f"on {self.cores} cores; run {wall:.1f} s wall, {cpu:.1f} s process CPU{others}; "
            f"{verdict}")


def import_torch() -> tuple[Optional[Any], str]:
  """``(torch or None, a note for the header line)``: the PyTorch side is optional."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None, "torch not installed: PyTorch column skipped"
  return torch, f"torch {torch.__version__}, {torch.get_num_threads()} threads"
