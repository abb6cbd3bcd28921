"""Compiling a jitted function with a line before and after, so a learner sees why the
first step takes a while and how long it took (and that a rerun is fast)."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any, Callable, Optional

import jax

logger = logging.getLogger(__name__)


# XLA's optimization level 0 for programs that run once (the initial state, a finiteness
# check): it compiles the chapter's init in 5.6 s of CPU instead of 18.6 s, and runs it in
# 0.7 s instead of 0.2 s (measured on the 2-core CPU).
RUN_ONCE = {"xla_backend_optimization_level": 0}


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


class CompiledByShape:
  """``jitted(state, batch)`` compiled once per batch shape, each with `compile_reported`.

  The state keeps its shapes from step to step; the batch may change (an epoch's
  last, smaller batch; K stacked batches), so only its shapes key the programs.
  `compile_in_background` starts a compilation early, on a thread: XLA compiles
  without holding the GIL, so on a multi-core CPU it overlaps other work (the
  initial state's compilation), and the first call waits for it.
  """

  def __init__(self, jitted: Any, what: str):
    self._jitted = jitted
    self._what = what
    self._compiled: dict[Any, Any] = {}  # batch shapes -> executable or its future

  @staticmethod
  def _key(batch: Any):
    return tuple((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(batch))

  def compile_in_background(self, state: Any, batch: Any) -> None:
    """Starts compiling for ``batch``'s shapes (arrays or ``jax.ShapeDtypeStruct``s with
    their shardings, like ``state``)."""
    key = self._key(batch)
    if key not in self._compiled:
      executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compile")
      self._compiled[key] = executor.submit(compile_reported, self._jitted, state, batch,
                                            what=self._what)
      executor.shutdown(wait=False)

  def __call__(self, state: Any, batch: Any) -> Any:
    key = self._key(batch)
    compiled = self._compiled.get(key)
    if compiled is None:
      compiled = compile_reported(self._jitted, state, batch, what=self._what)
    elif isinstance(compiled, concurrent.futures.Future):
      compiled = compiled.result()
    self._compiled[key] = compiled
    return compiled(state, batch)
