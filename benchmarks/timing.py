"""What the benchmark scripts share: the timing rule and whether PyTorch is there."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Optional


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
  """``(median seconds of a call after the first, seconds of the first call)``: the first
  call compiles and warms the allocator, so it is reported apart, never in the median."""
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), first


def import_torch() -> tuple[Optional[Any], str]:
  """``(torch or None, a note for the header line)``: the PyTorch side is optional."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None, "torch not installed: PyTorch column skipped"
  return torch, f"torch {torch.__version__}, {torch.get_num_threads()} threads"
