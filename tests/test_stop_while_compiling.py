"""A stop signal during a compilation: acknowledged at once in one line, and with
nothing trained since the last checkpoint (here: nothing at all) the run ends without
waiting for the compilation (on preemption, a Kubernetes pod has 30 s).

The compilations are replaced by ones that never finish on their own, and the signal
is sent from inside the first: the run can only end if it stops waiting.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import pytest

from sagan_jax.runs import TrainingStopped
from sagan_jax.runs import training as loop
from sagan_jax.runtime import compilation
from tests.run_checks import checkpoint_steps
from tests.subprocesses import TIMEOUT_S, TRAIN, Training
from tests.tiny_configs import tiny_config

pytestmark = pytest.mark.usefixtures("one_device_with_compilation_cache")


def test_a_signal_during_compilation_stops_at_once(tmp_path, monkeypatch, capfd, caplog):
  release = threading.Event()
  started = []

  def endless_compile(jitted, *args, what, compiler_options=None):
    started.append(what)
    if len(started) == 1:
      os.kill(os.getpid(), signal.SIGTERM)
    release.wait(600)  # a compilation that outlasts any grace period
    raise RuntimeError("compilation released by the test")

  monkeypatch.setattr(compilation, "compile_reported", endless_compile)
  try:
    with caplog.at_level(logging.WARNING), pytest.raises(TrainingStopped) as stopped:
      loop.train_and_evaluate(tiny_config(), str(tmp_path))
    assert not release.is_set()  # it did not wait for the compilation
  finally:
    release.set()
  line = ("Stopped by SIGTERM while compiling: no step had run, nothing to save; rerun the "
          "same command to continue.")
  assert (str(stopped.value), stopped.value.exit_code, stopped.value.step) == (line, 143, 0)
  assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [line]
  assert "the initial state" in started
  # The acknowledgement, on stderr the moment the signal came.
  assert capfd.readouterr().err.count("SIGTERM received: stopping after the current step") == 1
  assert checkpoint_steps(tmp_path) == []
  assert (tmp_path / "trainer.lock").read_text() == ""  # released


# train.py whose compilations announce themselves on stderr and then never end on their own.
ENDLESS_COMPILE_TRAIN = """
import runpy, sys, threading
from sagan_jax.runtime import compilation
def endless_compile(jitted, *args, what, compiler_options=None):
  # One write, newline included: print() writes the text and the newline separately, and on
  # an unbuffered stderr (PYTHONUNBUFFERED) the acknowledgement of a signal sent as soon as
  # the text shows could land between the two, on the same line.
  sys.stderr.write(f"Compiling {what} (endless)\\n")
  sys.stderr.flush()
  threading.Event().wait()
compilation.compile_reported = endless_compile
sys.argv[0] = "train.py"
runpy.run_path("train.py", run_name="__main__")
"""


def test_sigterm_while_compiling_ends_the_process_at_once(tmp_path, env):
  training = Training([sys.executable, "-c", ENDLESS_COMPILE_TRAIN, *TRAIN[2:],
                       "--workdir", str(tmp_path / "run")], env, tmp_path / "train.log")
  try:
    training.wait_for(lambda: "Compiling the initial state (endless)\n" in training.output(),
                      "the initial state's compilation")
    training.process.send_signal(signal.SIGTERM)
    assert training.process.wait(timeout=TIMEOUT_S) == 143, training.output()[-3000:]
  finally:
    training.process.kill()
  output = training.output()
  assert "Traceback" not in output, output[-3000:]
  lines = [line for line in output.splitlines() if "SIGTERM" in line]
  assert lines == [
      "SIGTERM received: stopping after the current step with a checkpoint (send it again to "
      "exit at once without saving).",
      "warning: Stopped by SIGTERM while compiling: no step had run, nothing to save; rerun "
      "the same command to continue."], output[-3000:]
  assert not (tmp_path / "run" / "checkpoints").exists() or checkpoint_steps(
      tmp_path / "run") == []
