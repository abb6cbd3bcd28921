"""SIGTERM and Ctrl-C stop a run cleanly: the current step finishes, a checkpoint is
written, one line is logged, `TrainingStopped` carries the exit status (143 / 130),
and the rerun continues exactly as if nothing had happened.

In-process on configs/tiny.py (the signal is sent from inside step 3, so where it
lands is deterministic). What a user sees — exit statuses, the one line, a second
Ctrl-C exiting at once — is test_run_failures_cli.py's.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import pytest

from sagan_jax.runs import TrainingStopped
from sagan_jax.runs import training as loop
from sagan_jax.runtime.stop_signals import GracefulStop
from tests.run_checks import assert_all_checkpoints_restore, assert_states_identical
from tests.tiny_configs import tiny_config

pytestmark = pytest.mark.usefixtures("one_device_with_compilation_cache")

SIGNAL_STEP = 3


@pytest.fixture(autouse=True)
def sigint_as_from_a_terminal():
  """SIGINT raises KeyboardInterrupt here, as in a terminal: a test session started in the
  background of a non-interactive shell has it ignored, which the trainer (rightly) keeps."""
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, previous)


def signal_during_step(monkeypatch, number: int, step: int = SIGNAL_STEP) -> None:
  """Makes the dispatch of ``step`` send ``number`` to this process, as if it arrived then."""
  dispatch = loop.Trainer.dispatch

  def dispatch_and_signal(self, state, host_batches):
    out = dispatch(self, state, host_batches)
    if int(host_batches[-1]["step"]) + 1 == step:
      os.kill(os.getpid(), number)
    return out

  monkeypatch.setattr(loop.Trainer, "dispatch", dispatch_and_signal)


@pytest.mark.parametrize("number, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_the_step_and_the_rerun_continues_bit_exactly(
    finished_run, tmp_path, monkeypatch, caplog, number, exit_code):
  _, _, one_go = finished_run
  handlers = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT)}
  with monkeypatch.context() as patch:
    signal_during_step(patch, number)
    with caplog.at_level(logging.WARNING), pytest.raises(TrainingStopped) as stopped:
      loop.train_and_evaluate(tiny_config(), str(tmp_path))
  assert (stopped.value.signal_number, stopped.value.step, stopped.value.exit_code) == (
      number, SIGNAL_STEP, exit_code)
  line = (f"Stopped by {signal.Signals(number).name} after step {SIGNAL_STEP}: checkpoint "
          "saved; rerun the same command to continue.")
  assert str(stopped.value) == line
  assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [line]
  # The step in flight finished and was saved (besides the regular step-2 checkpoint).
  assert assert_all_checkpoints_restore(tmp_path) == [2, SIGNAL_STEP]
  assert {n: signal.getsignal(n) for n in handlers} == handlers  # handlers restored
  # The rerun resumes at step 3 and ends where the uninterrupted run did, bit for bit.
  resumed = loop.train_and_evaluate(tiny_config(), str(tmp_path))
  assert_states_identical(resumed, one_go, "interrupted and resumed vs one go")


def test_a_signal_at_the_last_step_just_finishes(finished_run, tmp_path, monkeypatch):
  _, _, one_go = finished_run
  signal_during_step(monkeypatch, signal.SIGTERM, step=4)
  state = loop.train_and_evaluate(tiny_config(), str(tmp_path))  # no TrainingStopped
  assert_states_identical(state, one_go, "state")


def test_handlers_only_on_the_main_thread_and_an_ignored_sigint_stays_ignored():
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    with GracefulStop():
      assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # nohup / background job
      assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
  finally:
    signal.signal(signal.SIGINT, previous)
  seen = []

  def in_thread():
    with GracefulStop():
      seen.append(signal.getsignal(signal.SIGTERM))

  thread = threading.Thread(target=in_thread)
  thread.start()
  thread.join()
  assert seen == [signal.SIG_DFL]  # untouched: Python allows handlers on the main thread only
