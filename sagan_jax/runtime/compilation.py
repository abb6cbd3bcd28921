"""Compiling a jitted function with a line before and after, so a learner sees why the
first step takes a while and how long it took (and that a rerun is fast)."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import sys
import threading
import time
from typing import Any, Callable, NoReturn, Optional

import jax

logger = logging.getLogger(__name__)


# XLA's optimization level 0 for programs that run once (the initial state, a finiteness
# check): it compiles the chapter's init in 5.6 s of CPU instead of 18.6 s, and runs it in
# 0.7 s instead of 0.2 s (measured on the 2-core CPU).
RUN_ONCE = {"xla_backend_optimization_level": 0}
_WAIT_SLICE_S = 0.2  # how often a wait for a compilation calls its while_waiting


def compile_reported(jitted: Any, *args: Any, what: str,
                     compiler_options: Optional[dict[str, Any]] = None) -> Callable[..., Any]:
  """``jitted.lower(*args).compile()``, logging when it starts and how long each stage took.

  Returns the compiled executable (call it with arguments shaped like ``args``).
  """
  cache = jax.config.jax_compilation_cache_dir
  logger.info("Compiling %s (%s)...", what,
              f"cached in {cache}" if cache else "compilation cache off")
  start = time.perf_counter()
  lowered = jitted.lower(*args)
  traced = time.perf_counter()
  compiled = lowered.compile(compiler_options)
  done = time.perf_counter()
  logger.info("Compiled %s in %.1f s (tracing %.1f s, XLA %.1f s).", what, done - start,
              traced - start, done - traced)
  return compiled


_running: set[concurrent.futures.Future] = set()  # compilations on threads, not yet done


def _on_thread(fn: Callable[[], Any]) -> concurrent.futures.Future:
  """``fn()`` on a daemon thread: a stopping run need not wait for a compilation it will
  never use (an executor's threads are joined at exit; a daemon thread is not)."""
  future: concurrent.futures.Future = concurrent.futures.Future()
  _running.add(future)
  future.add_done_callback(_running.discard)

  def run():
    if future.set_running_or_notify_cancel():
      try:
        future.set_result(fn())
      except BaseException as error:  # pylint: disable=broad-except  (re-raised by result())
        future.set_exception(error)

  threading.Thread(target=run, name="compile", daemon=True).start()
  return future


def exit_process(status: int) -> NoReturn:
  """``sys.exit(status)``; but while a compilation nobody waits for any more still runs
  on its thread, ``os._exit(status)`` once the logs and standard streams are flushed:
  finalizing the interpreter under a thread inside XLA aborts the process (status 134,
  "FATAL: exception not rethrown"), and waiting for it is what a stop avoids."""
  if any(not future.done() for future in list(_running)):
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
  sys.exit(status)


def wait_for(future: concurrent.futures.Future,
             while_waiting: Optional[Callable[[], None]] = None) -> Any:
  """The result of ``future`` (a compilation), waited for in slices.

  The main thread waits in Python, not inside XLA, so a signal handler runs at once
  (a stop request is acknowledged during a minutes-long compilation), and
  ``while_waiting`` is called between slices: it may raise to abandon the wait.
  """
  while True:
    try:
      return future.result(timeout=_WAIT_SLICE_S)
    except concurrent.futures.TimeoutError:
      if while_waiting is not None:
        while_waiting()


def compile_waiting(jitted: Any, *args: Any, what: str,
                    compiler_options: Optional[dict[str, Any]] = None,
                    while_waiting: Optional[Callable[[], None]] = None) -> Callable[..., Any]:
  """`compile_reported` on a thread, waited for with `wait_for`."""
  return wait_for(_on_thread(functools.partial(
      compile_reported, jitted, *args, what=what, compiler_options=compiler_options)),
      while_waiting)


class CompiledByShape:
  """``jitted(state, batch)`` compiled once per batch shape, each with `compile_reported`.

  The state keeps its shapes from step to step; the batch may change (an epoch's
  last, smaller batch; K stacked batches), so only its shapes key the programs.
  `compile_in_background` starts a compilation early, on a thread: XLA compiles
  without holding the GIL, so on a multi-core CPU it overlaps other work (the
  initial state's compilation, the first dispatches), and the first call waits for
  it (with `wait_for`: signals are handled, ``while_waiting`` is called meanwhile).
  """

  def __init__(self, jitted: Any, what: str | Callable[[Any], str],
               while_waiting: Optional[Callable[[], None]] = None):
    """Wraps ``jitted``; ``what`` names the program in the log, or makes that name from
    the batch (its arrays or ``jax.ShapeDtypeStruct``s)."""
    self._jitted = jitted
    self._what = what if callable(what) else (lambda batch: what)
    self._while_waiting = while_waiting
    self._compiled: dict[Any, Any] = {}  # batch shapes -> executable or its future

  @staticmethod
  def _key(batch: Any):
    return tuple((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(batch))

  def has(self, batch: Any) -> bool:
    """Whether a program for ``batch``'s shapes is compiled or compiling."""
    return self._key(batch) in self._compiled

  def compile_in_background(self, state: Any, batch: Any) -> None:
    """Starts compiling for ``batch``'s shapes (arrays or ``jax.ShapeDtypeStruct``s with
    their shardings, like ``state``)."""
    key = self._key(batch)
    if key not in self._compiled:
      self._compiled[key] = _on_thread(functools.partial(
          compile_reported, self._jitted, state, batch, what=self._what(batch)))

  def __call__(self, state: Any, batch: Any) -> Any:
    key = self._key(batch)
    if key not in self._compiled:
      self.compile_in_background(state, batch)
    compiled = self._compiled[key]
    if isinstance(compiled, concurrent.futures.Future):
      compiled = wait_for(compiled, self._while_waiting)
      self._compiled[key] = compiled
    return compiled(state, batch)
