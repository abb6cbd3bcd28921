"""Computes upcoming batches in a background thread.

Decoding and resizing images on the training thread would leave the
accelerator idle while they run; a thread overlaps them with the train step
(PIL and numpy release the GIL for most of that work). The queue is bounded,
so at most ``buffer_size`` batches wait in memory.
"""

from __future__ import annotations

import itertools
import queue
import threading
import weakref
from typing import Any, Callable, Generic, Iterator, TypeVar

from sagan_jax.data.errors import DataError

T = TypeVar("T")

_POLL_S = 0.1  # how often a blocked thread checks for shutdown
_DONE = object()  # sentinel: the producer has finished all steps


class _Failure:
  """Carries an exception from the producer thread to the consumer."""

  def __init__(self, error: BaseException):
    self.error = error


def _put(out: queue.Queue, item: Any, stop: threading.Event) -> bool:
  """Puts ``item`` unless shutdown is requested first; True if it was put."""
  while not stop.is_set():
    try:
      out.put(item, timeout=_POLL_S)
      return True
    except queue.Full:
      pass
  return False


def _produce(fn: Callable[[int], Any], steps: Iterator[int], out: queue.Queue,
             stop: threading.Event) -> None:
  # A plain function, not a method: the thread must not keep the Prefetcher
  # alive, so an abandoned one is garbage-collected and its finalizer stops us.
  try:
    for step in steps:
      if stop.is_set():
        return
      if not _put(out, fn(step), stop):
        return
    _put(out, _DONE, stop)
  except BaseException as e:  # pylint: disable=broad-except
    # Not swallowed: handed to the consumer, which re-raises it.
    _put(out, _Failure(e), stop)


class Prefetcher(Generic[T]):
  """Iterates ``fn(start_step), fn(start_step + 1), ...`` computed ahead.

  A daemon thread calls ``fn`` on successive steps and keeps up to
  ``buffer_size`` results queued. If ``fn`` raises, iteration raises that same
  exception object (its traceback shows where in ``fn`` it happened) and
  stops. Use as a context manager, or call `close`, to stop the thread; an
  abandoned prefetcher is also stopped when it is garbage-collected.

  Args:
    fn: step → item, e.g. ``batcher.batch``. Runs in the background thread.
    start_step: the first step (the restored checkpoint's step when resuming).
    stop_step: one past the last step; ``None`` for no end.
    buffer_size: how many items may wait in the queue (≥ 1).
  """

  def __init__(self, fn: Callable[[int], T], start_step: int = 0,
               stop_step: int | None = None, buffer_size: int = 2):
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
      raise DataError(f"buffer_size must be an int >= 1, got {buffer_size!r}")
    if start_step < 0 or (stop_step is not None and stop_step < start_step):
      raise DataError(f"need 0 <= start_step <= stop_step, got {start_step}, {stop_step}")
    steps = (itertools.count(start_step) if stop_step is None
             else iter(range(start_step, stop_step)))
    self._queue: queue.Queue = queue.Queue(maxsize=buffer_size)
    self._stop = threading.Event()
    self._finished = False
    self._thread = threading.Thread(
        target=_produce, args=(fn, steps, self._queue, self._stop),
        name="sagan_jax-prefetch", daemon=True)
    self._finalizer = weakref.finalize(self, self._stop.set)
    self._thread.start()

  def __iter__(self) -> "Prefetcher[T]":
    return self

  def __next__(self) -> T:
    if self._finished:
      raise StopIteration
    while True:
      try:
        item = self._queue.get(timeout=_POLL_S)
        break
      except queue.Empty:
        if not self._thread.is_alive() and self._queue.empty():
          # Only possible if the thread was stopped from outside.
          self._finished = True
          raise StopIteration from None
    if item is _DONE:
      self.close()
      raise StopIteration
    if isinstance(item, _Failure):
      self.close()
      raise item.error
    return item

  def close(self, timeout: float | None = None) -> None:
    """Stops the thread and drops queued items; waits for it up to ``timeout``.

    The thread stops after the ``fn`` call in progress returns. Idempotent.
    """
    self._finished = True
    self._stop.set()
    while True:  # unblock a producer waiting on a full queue
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    if self._thread is not threading.current_thread():
      self._thread.join(timeout)

  def __enter__(self) -> "Prefetcher[T]":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def prefetch_batches(batcher, start_step: int = 0, stop_step: int | None = None,
                     buffer_size: int = 2,
                     transform: Callable[[dict[str, Any]], Any] | None = None
                     ) -> Prefetcher:
  """Prefetches ``batcher.batch(step)`` from ``start_step`` on.

  Args:
    batcher: a `Batcher`.
    start_step: the first step, e.g. ``int(state.step)`` after a restore.
    stop_step: one past the last step (``None``: no end).
    buffer_size: batches kept ready.
    transform: applied to each batch in the thread too, e.g. a function that
      puts it on devices with the run's sharding, so the transfer also
      overlaps with compute.

  Returns:
    A `Prefetcher` yielding the (transformed) batches.
  """
  if transform is None:
    fn = batcher.batch
  else:
    fn = lambda step: transform(batcher.batch(step))
  return Prefetcher(fn, start_step, stop_step, buffer_size)
