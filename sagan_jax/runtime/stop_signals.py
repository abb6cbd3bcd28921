"""Stopping a run cleanly on SIGTERM or Ctrl-C.

Preemptible cloud machines, SLURM (``scancel``, the end of a time limit) and
Kubernetes stop a job with SIGTERM and kill it a grace period later; a user
presses Ctrl-C (SIGINT). `GracefulStop` turns the first of these into a
request the training loop polls after each dispatch, acknowledged at once in one
line on stderr: the loop finishes the step, writes a checkpoint, logs one line and
raises `TrainingStopped` (or, while it waits for a compilation with nothing trained
since the last checkpoint, raises it without waiting), which
``train.py`` turns into exit status 128 + the signal (143 for SIGTERM, 130 for
SIGINT), as a shell reports a process killed by it. A second signal exits at
once — no traceback, no save — for a user who will not wait; the rerun then
resumes from the last complete checkpoint.

With several processes, a signal may reach some of them only (Ctrl-C in one
terminal) or at different steps: `GracefulStop.agreed` gathers every
process's flag after each dispatch so all of them stop after the same step
(the checkpoint is written by all together). It first waits for that step:
the XLA CPU runtime may run programs that do not depend on each other at the
same time, and two processes running the step's collectives and the gather's
in different orders would wait for each other for ever. (Each process thus
finishes a step before dispatching the next — only in multi-process runs.)
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(Exception):
  """A run stopped on a signal after saving its state; rerunning resumes it."""

  def __init__(self, signal_number: int, step: int, message: str):
    super().__init__(message)
    self.signal_number = signal_number
    self.step = step

  @property
  def exit_code(self) -> int:
    return 128 + self.signal_number


def signal_name(signal_number: int) -> str:
  return signal.Signals(signal_number).name


class GracefulStop:
  """Catches SIGTERM and SIGINT for the duration of a ``with`` block.

  Handlers can only be installed from the main thread; elsewhere (a trainer
  run in a thread) this does nothing and the signals keep their behaviour.
  A SIGINT that was ignored when the block started (``nohup``, a background
  job of a non-interactive shell) stays ignored.
  """

  def __init__(self):
    self.received: Optional[int] = None
    self._previous: dict[int, object] = {}

  def __enter__(self) -> "GracefulStop":
    if threading.current_thread() is threading.main_thread():
      for number in STOP_SIGNALS:
        if number == signal.SIGINT and signal.getsignal(number) == signal.SIG_IGN:
          continue
        self._previous[number] = signal.signal(number, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for number, handler in self._previous.items():
      signal.signal(number, handler)
    self._previous.clear()

  def _handle(self, signal_number: int, frame) -> None:
    del frame
    if self.received is not None:
      os.write(2, f"{signal_name(signal_number)} again: exiting now without saving; the rerun "
                  "resumes from the last complete checkpoint.\n".encode())
      os._exit(128 + signal_number)  # no traceback, no clean-up that could hang
    self.received = signal_number
    # Acknowledged at once, also while the loop waits for a compilation (it waits in
    # Python, see runtime/compilation.wait_for); os.write, as logging's buffered stream
    # may be mid-write in the interrupted frame.
    os.write(2, f"{signal_name(signal_number)} received: stopping after the current step "
                "with a checkpoint (send it again to exit at once without saving).\n".encode())

  def agreed(self, after: Any = None) -> Optional[int]:
    """The signal that stops the run, once any process received one. All
    processes call this together, after the same step; ``after`` is that
    step's output (see the module docstring)."""
    if jax.process_count() == 1:
      return self.received
    jax.block_until_ready(after)
    flags = np.asarray(multihost_utils.process_allgather(np.int32(self.received or 0)))
    received = flags[flags != 0]
    return int(received[0]) if received.size else None
