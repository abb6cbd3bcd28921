"""``train.py`` and ``sample.py`` as a user runs them, in subprocesses.

* ``kill -9`` at any moment — in the middle of a checkpoint write, at an
  arbitrary point of training, while an old checkpoint is being deleted — never
  leaves a checkpoint that fails to restore; rerunning the command resumes
  from the last complete one. (That a resume is bit-exact is
  test_train_loop's: an in-process run cannot be the reference here, as
  XLA:CPU's results differ in the last bits between a process with one device
  and one with four.)
* User errors (unknown or mistyped config field, impossible value, diverged
  run) end the process with status 1 and one ``error: ...`` line, no traceback.
* ``--config.num_steps`` extends a finished run; ``sample.py --attention --out
  X.png`` then writes the grid and the attention figure.

The subprocesses run on one CPU device and share a persistent compilation
cache, so only the first to run a program compiles it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time

import pytest
from PIL import Image

from sagan_jax.runs import training as loop
from tests.run_checks import assert_all_checkpoints_restore
from tests.subprocesses import TRAIN, Training, run, temporary_checkpoints
from tests.tiny_configs import tiny_config

pytestmark = pytest.mark.usefixtures("one_device_with_compilation_cache")

# Runs train.py with shutil.rmtree (what deletes checkpoint folders) replaced: on
# the first step folder under checkpoints/ it removes half of the files, notes the
# folder in $KILLED_WHILE_DELETING and SIGKILLs its own process.
KILL_WHILE_DELETING = """
import os, runpy, shutil, signal, sys
_rmtree = shutil.rmtree
def rmtree(path, *args, **kwargs):
  parts = os.path.normpath(os.fspath(path)).split(os.sep)
  if "checkpoints" in parts and parts[-1].isdigit():
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names)
    for f in files[:len(files) // 2]:
      os.remove(f)
    with open(os.environ["KILLED_WHILE_DELETING"], "w") as note:
      note.write(os.fspath(path))
    os.kill(os.getpid(), signal.SIGKILL)
  return _rmtree(path, *args, **kwargs)
shutil.rmtree = rmtree
sys.argv[0] = "train.py"
runpy.run_path("train.py", run_name="__main__")
"""

# Runs train.py with test_train_loop's poisoned step (G params NaN from step 3 on).
POISONED_TRAIN = """
import runpy, sys
from sagan_jax.runs import training as loop
from tests.run_checks import poisoned_make_train_step
loop.make_train_step = poisoned_make_train_step(loop.make_train_step)
sys.argv[0] = "train.py"
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.mark.parametrize("overrides, message", [
    (["--config.nope=1"], "error: --config.nope: the config has no field 'nope'"),
    (["--config.batching.batchsize=8"], 'error: --config.batching.batchsize: the config has no '
                                        'field \'batchsize\'. Did you mean "batch_size" instead '
                                        'of "batchsize"?'),
    (["--config.batching.batch_size=abc"], "flag --config.batching.batch_size=abc: invalid literal for int()"),
    (["--config.model.width=12"], "error: config.model.width must be a multiple of 8"),
])
def test_config_errors_are_one_line(tmp_path, env, overrides, message):
  result = run(TRAIN + ["--workdir", str(tmp_path / "run"), *overrides], env)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert [line for line in result.stderr.splitlines() if message in line], result.stderr[-3000:]
  assert not (tmp_path / "run").exists()


def test_extend_a_finished_run_then_sample(tmp_path, env):
  workdir = tmp_path / "run"
  args = TRAIN + ["--workdir", str(workdir), "--config.num_steps=2"]
  result = run(args, env)
  assert result.returncode == 0, result.stderr[-3000:]
  # Raising num_steps on the command line extends the finished run.
  result = run(args[:-1] + ["--config.num_steps=4"], env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from {workdir / 'checkpoints'} at step 2." in result.stderr
  assert assert_all_checkpoints_restore(workdir, tiny_config()) == [2, 4]
  # Then sample from it.
  out = tmp_path / "out" / "grid.png"
  result = run([sys.executable, "sample.py", "--workdir", str(workdir), "--attention",
                "--num_samples=16", "--out", str(out)], env)
  assert result.returncode == 0, result.stderr[-3000:]
  attention = tmp_path / "out" / "grid_attention.png"
  # One line per file: what it is, then its absolute path.
  assert result.stdout.splitlines() == [
      f"samples grid: 16 samples of seed 0, step 4: {out}",
      "attention figure: where generator attention layer 2 of 2 looks in the first 4 images of "
      f"the samples grid, step 4: {attention}"]
  with Image.open(out) as grid, Image.open(attention) as figure:
    assert grid.format == figure.format == "PNG"
    assert grid.size == (4 * 66 + 2, 4 * 66 + 2)  # 16 samples of 64×64, 4×4, 2 px apart
    assert min(figure.size) >= 64


def test_kill_9_anywhere_leaves_restorable_checkpoints_and_resumes(tmp_path, env):
  workdir = tmp_path / "run"
  args = TRAIN + ["--workdir", str(workdir), "--config.num_steps=6", "--config.keep_checkpoints=2",
                  "--config.sample_every=100"]
  config = tiny_config(num_steps=6, keep_checkpoints=2, sample_every=100)
  # 1. 20 ms into a checkpoint write (its temporary folder has appeared; a write
  #    takes ~0.3–1 s here).
  training = Training(args, env, tmp_path / "kill_mid_write.log")
  training.wait_for(lambda: temporary_checkpoints(workdir), "a checkpoint write")
  time.sleep(0.02)
  training.kill9()
  assert temporary_checkpoints(workdir), "the kill should have interrupted a checkpoint write"
  assert_all_checkpoints_restore(workdir, config)
  # 2. At a fixed delay: 1 s after the restarted run's first progress line.
  training = Training(args, env, tmp_path / "kill_at_delay.log")
  training.wait_for(lambda: re.search(r"step \d+/6 \|", training.output()), "a training step")
  time.sleep(1.0)
  if training.process.poll() is None:
    training.kill9()
  latest = max(assert_all_checkpoints_restore(workdir, config), default=None)
  # Rerun to completion.
  result = run(args, env)
  assert result.returncode == 0, result.stderr[-3000:]
  if latest is not None:
    assert f"Resumed from {workdir / 'checkpoints'} at step {latest}." in result.stderr
  assert temporary_checkpoints(workdir) == set()
  trash = workdir / "checkpoints" / ".trash"
  assert not (trash.exists() and os.listdir(trash))
  assert assert_all_checkpoints_restore(workdir, config) == [4, 6]


def test_kill_9_while_deleting_an_old_checkpoint(tmp_path, env):
  """keep_checkpoints=1: after step 4 is saved, step 2 is deleted; die halfway."""
  workdir = tmp_path / "run"
  runner = tmp_path / "kill_while_deleting.py"
  runner.write_text(KILL_WHILE_DELETING)
  note = tmp_path / "killed_while_deleting"
  result = run([sys.executable, str(runner), *TRAIN[2:], "--workdir", str(workdir),
                "--config.num_steps=4", "--config.keep_checkpoints=1"],
               env, KILLED_WHILE_DELETING=str(note))
  assert result.returncode == -signal.SIGKILL and note.exists(), result.stderr[-3000:]
  config = tiny_config(keep_checkpoints=1)
  # The half-deleted step 2 must not look like a checkpoint.
  assert assert_all_checkpoints_restore(workdir, config) == [4]
  # The rerun has nothing to do, and removes what the deletion left behind.
  state = loop.train_and_evaluate(config, str(workdir))
  assert int(state.step) == 4
  assert os.listdir(workdir / "checkpoints" / ".trash") == []


def test_diverged_run_is_a_one_line_error(tmp_path, env):
  runner = tmp_path / "poisoned_train.py"
  runner.write_text(POISONED_TRAIN)
  workdir = tmp_path / "run"
  result = run([sys.executable, str(runner), "--config", "configs/tiny.py",
                "--config.data.per_digit=8", "--config.num_steps=4", "--workdir", str(workdir)],
               env)
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1] == (
      "error: non-finite loss at step 4: d_loss=nan, g_loss=nan; training stopped and the "
      "last checkpoint (step 2) is intact. Lower the learning rates or check the data.")
  assert assert_all_checkpoints_restore(workdir, tiny_config()) == [2]
