"""What a user sees when a run is stopped, shared, starved or misused — as subprocesses.

* A second ``train.py`` on a busy workdir exits 1 with one line naming the holder.
* SIGTERM / Ctrl-C: status 143 / 130, one line, a checkpoint of the step; the
  same command resumes. A second Ctrl-C exits at once, without a traceback.
* ``sample.py`` beside a trainer that saves (and deletes) a checkpoint every step
  never fails.
* A background save that fails (here: a file larger than ``RLIMIT_FSIZE``
  allows, the kernel's EFBIG — what a full disk does with ENOSPC) stops the run
  with its cause in one line; no temporary folder is left and every intact
  checkpoint stays.
* A missing or broken config file, a workdir that is a file, impossible counts
  and unwritable outputs: one ``error:`` line each, status 1, no traceback.

Same environment as test_cli.py (one CPU device, the session's compilation cache).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import time

import pytest

from sagan_jax.runs import restore_generator
from tests.run_checks import assert_all_checkpoints_restore
from tests.subprocesses import (TIMEOUT_S, TRAIN, Training, assert_one_line_error, error_lines,
                                 run, temporary_checkpoints)
from tests.tiny_configs import tiny_config

pytestmark = pytest.mark.usefixtures("one_device_with_compilation_cache")

LONG_RUN = ["--config.num_steps=100000", "--config.checkpoint_every=100000",
            "--config.sample_every=100000"]

# train.py whose checkpoint saves announce themselves in $SAVING and then take a minute:
# a second Ctrl-C can be sent while the first one's save is surely in progress.
SLOW_SAVE_TRAIN = """
import os, pathlib, runpy, sys, time
from sagan_jax.train.checkpoint import Checkpointer
def slow_save(self, *args, **kwargs):
  pathlib.Path(os.environ["SAVING"]).touch()
  time.sleep(60)
Checkpointer.save = slow_save
sys.argv[0] = "train.py"
runpy.run_path("train.py", run_name="__main__")
"""


# Runs train.py (argv[2:]) with the size of any file it writes limited to argv[1] bytes:
# a write beyond fails with EFBIG, as one on a full disk fails with ENOSPC.
FILE_SIZE_LIMITED = """
import resource, runpy, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = sys.argv[2:]
runpy.run_path("train.py", run_name="__main__")
"""


def wait_for_step(training: Training, step: int) -> None:
  training.wait_for(lambda: re.search(rf"step {step}/\d+ \|", training.output()),
                    f"step {step}")


def stopped_step(output: str, name: str) -> int:
  (match,) = re.findall(rf"Stopped by {name} after step (\d+): checkpoint saved; rerun the "
                        r"same command to continue\.", output)
  return int(match)


def test_one_trainer_per_workdir_and_signals_stop_it_with_a_checkpoint(tmp_path, env):
  workdir = tmp_path / "run"
  args = TRAIN + ["--workdir", str(workdir), *LONG_RUN]
  first = Training(args, env, tmp_path / "first.log")
  wait_for_step(first, 2)
  # A second trainer (another seed) is refused in one line naming the first; nothing mixed.
  second = run(args + ["--config.seed=1"], env)
  assert_one_line_error(
      second, f"error: {workdir} is in use by another trainer: pid {first.process.pid} on host "
              f"{os.uname().nodename}, started " + second.stderr.split(", started ")[1]
      .split("\n")[0])
  assert re.search(r"started \S+ \(train\.py --config configs/tiny\.py .*\); wait for it to "
                   r"finish or stop it \(lock: .*trainer\.lock\)$", error_lines(second.stderr)[0])
  # SIGTERM: the step in flight is saved, one line, status 143.
  first.process.send_signal(signal.SIGTERM)
  assert first.process.wait(TIMEOUT_S) == 143, first.output()[-3000:]
  assert "Traceback" not in first.output()
  step = stopped_step(first.output(), "SIGTERM")
  assert assert_all_checkpoints_restore(workdir, tiny_config()) == [step]
  assert (workdir / "trainer.lock").read_text() == ""  # released
  # The same command resumes there; Ctrl-C (SIGINT) stops it the same way, status 130.
  again = Training(args, env, tmp_path / "again.log")
  wait_for_step(again, step + 2)
  again.process.send_signal(signal.SIGINT)
  assert again.process.wait(TIMEOUT_S) == 130, again.output()[-3000:]
  assert f"Resumed from {workdir / 'checkpoints'} at step {step}." in again.output()
  assert "Traceback" not in again.output() and "KeyboardInterrupt" not in again.output()
  later = stopped_step(again.output(), "SIGINT")
  assert later >= step + 2
  assert assert_all_checkpoints_restore(workdir, tiny_config()) == [step, later]


def test_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path, env):
  runner = tmp_path / "slow_save_train.py"
  runner.write_text(SLOW_SAVE_TRAIN)
  workdir, saving = tmp_path / "run", tmp_path / "saving"
  training = Training([sys.executable, str(runner), *TRAIN[2:], "--workdir", str(workdir),
                       *LONG_RUN], {**env, "SAVING": str(saving)}, tmp_path / "train.log")
  wait_for_step(training, 2)
  training.process.send_signal(signal.SIGINT)
  training.wait_for(saving.exists, "the stop's checkpoint save")
  start = time.monotonic()
  training.process.send_signal(signal.SIGINT)
  assert training.process.wait(TIMEOUT_S) == 130
  assert time.monotonic() - start < 30  # not after the save's minute
  output = training.output()
  assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
  assert output.rstrip().splitlines()[-1] == (
      "SIGINT again: exiting now without saving; the rerun resumes from the last complete "
      "checkpoint.")


def test_sampling_beside_a_trainer_that_saves_and_deletes_every_step(tmp_path, env, caplog):
  """keep_checkpoints=1 and a checkpoint per step: the step a reader picks is deleted
  within a step or two — as long as a restore takes."""
  workdir = tmp_path / "run"
  training = Training(TRAIN + ["--workdir", str(workdir), "--config.num_steps=100000",
                               "--config.checkpoint_every=1", "--config.keep_checkpoints=1",
                               "--config.sample_every=100000", "--config.log_every=20"],
                      env, tmp_path / "train.log")
  training.wait_for(lambda: (workdir / "checkpoints" / "3").exists()
                    or (workdir / "checkpoints" / "4").exists(), "a few checkpoints")
  steps = []
  with caplog.at_level(logging.INFO):
    for _ in range(12):
      steps.append(restore_generator(str(workdir)).step)  # must never fail
  training.process.send_signal(signal.SIGTERM)
  assert training.process.wait(TIMEOUT_S) == 143, training.output()[-3000:]
  assert steps == sorted(steps) and steps[-1] > steps[0], steps
  retried = caplog.text.count("was deleted while being read; reading the newest one.")
  print(f"{len(steps)} reads beside the trainer, {retried} of them retried after a deletion")


def test_a_failed_background_save_stops_the_run_in_one_line(tmp_path, env):
  workdir = tmp_path / "run"
  args = TRAIN + ["--workdir", str(workdir)]
  assert run(args + ["--config.num_steps=2"], env).returncode == 0  # checkpoint 2
  # A checkpoint of configs/tiny.py holds ~1.3 MB of arrays in a few data files and an
  # ~80 KB state/_METADATA: no save fits files of 64 KB. What else the run writes (the
  # events file, config.json, the lock) stays far below; sample grids are turned off.
  limit = 64 << 10
  limited = [sys.executable, "-c", FILE_SIZE_LIMITED, str(limit)]
  result = run(limited + args[1:] + ["--config.num_steps=6", "--config.sample_every=100"], env)
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  (line,) = error_lines(result.stderr)
  assert re.fullmatch(
      rf"error: saving a checkpoint in {re.escape(str(workdir / 'checkpoints'))} failed: File "
      r"too large \(OS error 27\); training stopped\. Intact checkpoints: 2\. Free space or "
      r"fix permissions, then rerun the same command\.", line), line
  assert temporary_checkpoints(workdir) == set()
  assert assert_all_checkpoints_restore(workdir, tiny_config()) == [2]
  # Without the limit, the same command resumes from step 2 and finishes.
  result = run(args + ["--config.num_steps=6"], env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from {workdir / 'checkpoints'} at step 2." in result.stderr
  assert assert_all_checkpoints_restore(workdir, tiny_config()) == [2, 4, 6]


@pytest.mark.parametrize("config_text, message", [
    (None, "error: --config {path}: no such file"),
    ("def get_config(:\n  pass\n", "error: --config {path}, line 1: invalid syntax: "
                                   "def get_config(:"),
    ("def get_config():\n  return 3\n", "error: --config: get_config() must return an "
                                        "ml_collections.ConfigDict, got int"),
])
def test_config_file_errors_are_one_line(tmp_path, env, config_text, message):
  path = tmp_path / "config.py"
  if config_text is not None:
    path.write_text(config_text)
  result = run([sys.executable, "train.py", "--config", str(path), "--workdir",
                str(tmp_path / "run")], env)
  assert_one_line_error(result, message.format(path=path))
  assert not (tmp_path / "run").exists()


def test_workdir_and_output_errors_are_one_line(tmp_path, env):
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  result = run(TRAIN + ["--workdir", str(a_file)], env)
  assert_one_line_error(result, f"error: {a_file} is a file, but the run needs a folder there")
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "samples").write_text("x")
  result = run(TRAIN + ["--workdir", str(tmp_path / "run")], env)
  assert_one_line_error(result, f"error: {tmp_path / 'run' / 'samples'} is a file, but the run "
                                "needs a folder there; move the file away")
  # sample.py: counts first (no checkpoint is read), then where the output goes.
  for count in ("0", "-1"):
    result = run([sys.executable, "sample.py", "--workdir", str(tmp_path / "run"),
                  f"--num_samples={count}"], env)
    assert_one_line_error(result, f"error: num_samples must be a positive integer, got {count}")
  result = run([sys.executable, "sample.py", "--workdir", str(tmp_path / "run"), "--out",
                str(a_file / "grid.png")], env)
  assert_one_line_error(
      result, f"error: cannot write {a_file / 'grid.png'}: {a_file} is a file, not a folder")
  # evaluate.py: precision/recall's k = 3 needs 4 samples — said before anything is read,
  # with every other problem of the inputs (here: the workdir holds no run).
  result = run([sys.executable, "evaluate.py", "--workdir", str(tmp_path / "run"),
                "--num_samples", "2", "--batch_size", "2"], env)
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert error_lines(result.stderr) == [
      "error: num_samples must be an integer >= 4, got 2 (precision/recall measure each "
      "sample's distance to its k-th nearest other one, k=3)",
      f"error: {tmp_path / 'run' / 'config.json'} not found: is {tmp_path / 'run'} a training "
      "workdir?"], result.stderr[-3000:]
