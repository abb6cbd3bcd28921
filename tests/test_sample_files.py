"""The one sample-writing path: files named by kind, and readers quiet beside a trainer.

* The trainer and ``sample.py`` name files by one scheme (`sampling.sample_file_name`):
  ``<kind>_<step>[_seed<seed>].png``, so the default grid, an interpolation and their
  attention figures never overwrite each other or the trainer's grid — which the
  default grid of the run's seed and sample count redraws.
* Issue 21, probe 6: ``sample.py`` while a trainer deletes the step it is reading
  (``keep_checkpoints``) printed orbax's "Exception ignored" tracebacks (~60 lines per
  abandoned array read). Simulated in a real ``sample.py`` process: the third array
  read moves the newest step into the trash, as the trainer's rotation does, and fails
  while the other reads are in flight; ``sample.py`` must print its one line only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sagan_jax.runs import load_config, write_sample_files
from sagan_jax.runs.sampling import sample_file_name
from sagan_jax.train.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 900  # per process; only reached if something hangs

# sample.py, with orbax's array read replaced: the third read moves the newest step into
# checkpoints/.trash (what a trainer's keep_checkpoints does to the step a reader reads)
# and fails; the others wait 0.5 s first, so they are in flight when it fails.
VANISHING_STEP = """
import asyncio, os, runpy, sys
from orbax.checkpoint._src.serialization import serialization
read, calls = serialization._read_shard, []
async def read_shard(t, **kwargs):
  calls.append(1)
  if len(calls) == 3:
    folder = os.environ["CHECKPOINTS"]
    step = max(int(name) for name in os.listdir(folder) if name.isdigit())
    os.makedirs(os.path.join(folder, ".trash"), exist_ok=True)
    os.rename(os.path.join(folder, str(step)), os.path.join(folder, ".trash", str(step)))
    raise FileNotFoundError("the step's files vanished")
  await asyncio.sleep(0.5)
  return await read(t, **kwargs)
serialization._read_shard = read_shard
sys.argv[0] = "sample.py"
runpy.run_path("sample.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def env():
  """One CPU device, as a user's ``python sample.py`` on a CPU machine has."""
  return {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
          "SAGAN_JAX_COMPILATION_CACHE": "off"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, env):
  """configs/tiny.py for 2 steps, a checkpoint at each (both kept), the grid at step 2."""
  workdir = tmp_path_factory.mktemp("run")
  train = subprocess.run(
      [sys.executable, "train.py", "--config", "configs/tiny.py", "--workdir", str(workdir),
       "--config.data.per_digit=8", "--config.num_steps=2", "--config.checkpoint_every=1",
       "--config.keep_checkpoints=2", "--config.sample_every=2"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
  assert train.returncode == 0, train.stderr[-3000:]
  return workdir


def test_file_names_by_kind():
  assert sample_file_name("samples", 300) == "samples_000300.png"  # the trainer's
  assert sample_file_name("labels", 300, seed=0) == "labels_000300_seed0.png"
  assert sample_file_name("classes-attention", 7, seed=2) == "classes-attention_000007_seed2.png"


def test_kinds_never_overwrite_each_other_or_the_trainers_grid(run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(run, workdir)
  samples = workdir / "samples"
  trainers = {name: (samples / name).read_bytes() for name in os.listdir(samples)}
  assert sorted(trainers) == ["attention_000002.png", "samples_000002.png"]
  config = load_config(str(workdir))
  grid = write_sample_files(str(workdir), num_samples=config.num_samples, seed=config.seed,
                            attention=True)
  line = write_sample_files(str(workdir), interpolate=5, seed=config.seed, attention=True)
  assert [os.path.basename(f) for f in grid + line] == [
      "samples_000002_seed0.png", "attention_000002_seed0.png",
      "interpolation_000002_seed0.png", "interpolation-attention_000002_seed0.png"]
  assert all(os.path.isabs(f.path) and os.path.dirname(f.path) == str(samples)
             for f in grid + line)
  assert grid[0].line() == f"samples grid: 16 samples of seed 0, step 2: {grid[0].path}"
  assert {name: (samples / name).read_bytes() for name in trainers} == trainers
  # The default grid of the run's seed and count redraws the trainer's: same latents and
  # weights through another XLA program, whose float32 results may differ in the last bits,
  # moving a pixel across a rounding boundary of the 255 levels — one level at most.
  with Image.open(samples / "samples_000002.png") as a, Image.open(grid[0]) as b:
    difference = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
  assert difference.max() <= 1 and np.mean(difference > 0) < 0.01


def test_sample_py_prints_only_its_result_when_its_step_vanishes(run, tmp_path, env):
  workdir = tmp_path / "run"
  shutil.copytree(run, workdir)
  checkpoints = workdir / "checkpoints"
  out = tmp_path / "grid.png"
  result = subprocess.run(
      [sys.executable, "-c", VANISHING_STEP, "--workdir", str(workdir), "--num_samples", "4",
       "--out", str(out)], cwd=ROOT, env={**env, "CHECKPOINTS": str(checkpoints)},
      capture_output=True, text=True, timeout=TIMEOUT_S)
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.listdir(checkpoints / ".trash") == ["2"]  # step 2 vanished mid-read …
  assert result.stdout == f"samples grid: 4 samples of seed 0, step 1: {out}\n"  # … step 1 read
  assert result.stderr == ""


def test_a_listing_that_races_a_rotation_lists_again(run, monkeypatch):
  """orbax lists names, then checks each: racing a trainer's rotation, one listing can
  miss both the step renamed into place and the one moved to the trash."""
  checkpointer = Checkpointer(str(run), read_only=True)
  try:
    listings = [[], [1, 2]]  # the first listing raced a rotation
    monkeypatch.setattr(checkpointer._manager, "all_steps", lambda: listings[0])
    monkeypatch.setattr(checkpointer._manager, "reload", lambda: listings.pop(0))
    assert checkpointer.all_steps() == [1, 2]
  finally:
    checkpointer.close()
