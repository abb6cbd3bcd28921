"""Two processes on one machine: the real multi-host path.

Two processes, each with 2 simulated CPU devices, join one JAX runtime through
``jax.distributed.initialize`` on a localhost coordinator with gloo CPU
collectives — what ``train.py`` does on several hosts (tests/multi_process_worker.py).

* 3 steps of the 2 × 2-device run equal 3 steps of this 1-process, 4-device
  process: ≤ 1e-5 (scaled) for the losses, the spectral-norm/BatchNorm state
  and both Adam states; the weights too, except where Adam's step is
  ill-conditioned — gradients that are 0 in exact arithmetic, like those of a
  bias feeding BatchNorm, are float32 noise whose sign another reduction order
  flips: those weights are bounded by Adam's ±lr per step instead, and must be
  rare (tests/parity.py's `assert_params_close_under_adam`).
* Each process reads only its half of every global batch; only process 0
  writes TensorBoard events and sample grids.
* A checkpoint written by the 2 processes restores in this single process, and
  one written here restores in the 2 processes and trains on.
* Evaluation during training: each process generates and extracts its half of
  the samples, process 0 scores the merged measurement — the FID of one process
  evaluating the same weights — and all save the best checkpoint together.
* A process that dies (SIGKILL, or a Python error) makes the other exit with a
  clear error, not hang: at its next collective ("another process of this run
  failed or died", one line), or — if it waits elsewhere — JAX's "another task
  died" once the heartbeat timeout passes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import jax
import pytest

from sagan_jax import data as data_lib
from sagan_jax import sharding
from sagan_jax.runs import Trainer, evaluation, restore_generator, train_and_evaluate
from sagan_jax.runs.best_checkpoint import read_best
from sagan_jax.runtime.distributed import HEARTBEAT_TIMEOUT_ENV
from sagan_jax.train.checkpoint import Checkpointer, abstract_like
from tests import ROOT
from tests.multi_process_worker import EVAL_SAMPLES, MULTI_PROCESS_STEPS, config
from tests.test_eval_shares import fid_merge_tolerance
from tests.parity import (assert_close, assert_params_close_under_adam, assert_tree_close,
                          tiny_gradient_mask)
from tests.compilation import cache_dir
from tests.run_checks import scalars

PROCESSES = 2
DEVICES_PER_PROCESS = 2
TIMEOUT_S = 600  # per phase; only reached if something hangs
HEARTBEAT_TIMEOUT_S = 10  # how long the survivors wait for a dead process's heartbeat


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(
      flags + [f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}"])
  env.update(JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
             JAX_NUM_PROCESSES=str(PROCESSES), PYTHONUNBUFFERED="1",
             JAX_COMPILATION_CACHE_DIR=str(cache_dir(tmp_path_factory)),
             PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]))
  precision = jax.config.jax_default_matmul_precision
  if precision is not None:
    env["JAX_DEFAULT_MATMUL_PRECISION"] = str(precision)
  return env


@contextlib.contextmanager
def processes(args, env, logs_dir, **extra_env):
  """Starts the 2 processes of one run; yields them; kills what is left on the way out."""
  port = free_port()
  started = []
  try:
    for i in range(PROCESSES):
      log = open(logs_dir / f"process_{i}.log", "w")
      started.append(subprocess.Popen(
          [sys.executable, "-m", "tests.multi_process_worker", *args], cwd=ROOT,
          env={**env, **extra_env, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
               "JAX_PROCESS_ID": str(i)}, stdout=log, stderr=subprocess.STDOUT))
    yield started
  finally:
    for process in started:
      if process.poll() is None:
        process.kill()
        process.wait()


def output(logs_dir, i: int) -> str:
  return (logs_dir / f"process_{i}.log").read_text(errors="replace")


def reference(steps: int = MULTI_PROCESS_STEPS):
  """One process, 4 devices: the state after ``steps`` steps, the metrics of the last,
  and which weights ever had a ~0 gradient."""
  if jax.device_count() < PROCESSES * DEVICES_PER_PROCESS:
    pytest.skip("needs 4 devices (tests/conftest.py)")
  trainer = Trainer(config(), mesh=sharding.make_mesh(jax.devices()[:4]))
  state, tiny = trainer.init_state(), None
  for step in range(steps):
    state, metrics = trainer.train_step(state, trainer.batch(step))
    # With β₁ = 0, Adam's first moment is this step's gradient.
    grads = {"g": state.generator.opt_state[0].mu, "d": state.discriminator.opt_state[0].mu}
    tiny = tiny_gradient_mask(jax.device_get(grads), tiny)
  return trainer, jax.device_get(state), jax.device_get(metrics), tiny


def restore(trainer: Trainer, workdir, step: int):
  checkpointer = Checkpointer(str(workdir), read_only=True)
  try:
    abstract = abstract_like(jax.eval_shape(trainer.init_state),
                             sharding.replicated(trainer.mesh))
    return jax.device_get(checkpointer.restore(step, abstract))
  finally:
    checkpointer.close()


def assert_state_matches(state, expected, tiny, what: str) -> None:
  for label, net, ref, lr in (("G", state.generator, expected.generator, 1e-4),
                              ("D", state.discriminator, expected.discriminator, 4e-4)):
    assert_tree_close(net.collections, ref.collections, what=f"{what} {label} spectral/BN")
    assert_tree_close(net.opt_state, ref.opt_state, what=f"{what} {label} Adam state")
    assert_params_close_under_adam(net.params, ref.params, tiny[label.lower()], lr,
                                   MULTI_PROCESS_STEPS, what=f"{what} {label} params")
  assert int(state.step) == MULTI_PROCESS_STEPS


def test_two_processes_train_like_one(tmp_path, env):
  fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
  # A checkpoint written by this one process (4 devices) at step 2, for them to resume.
  two_steps = config()
  two_steps.num_steps = 2
  train_and_evaluate(two_steps, str(resumed))
  with processes(["train", str(tmp_path), str(fresh), str(resumed)], env, tmp_path) as running:
    for i, process in enumerate(running):
      assert process.wait(TIMEOUT_S) == 0, output(tmp_path, i)[-5000:]
  reports = [json.loads((tmp_path / f"process_{i}.json").read_text()) for i in range(PROCESSES)]
  trainer, expected, metrics, tiny = reference()

  # 1. The same numbers as one process with 4 devices; restored here, in one process.
  assert [(r["process_index"], r["local_devices"], r["devices"]) for r in reports] == [
      (0, 2, 4), (1, 2, 4)]
  assert_state_matches(restore(trainer, fresh, 3), expected, tiny, "2-process run")
  logged = scalars(fresh)
  for name in ("d_loss", "g_loss", "d_real", "d_fake"):
    assert_close(logged[(3, name)], metrics[name], what=f"2-process {name} at step 3")
  # 2. A checkpoint of one process resumed by two: step 3 as above.
  assert [r["runs"][1]["step"] for r in reports] == [3, 3]
  assert_state_matches(restore(trainer, resumed, 3), expected, tiny, "1→2-process resume")

  # 3. Each process read exactly its half of each global batch, nothing else.
  source = data_lib.make_source(config().data)
  for report in reports:
    batcher = data_lib.Batcher(source, config().batching.batch_size, config().seed,
                               process_index=report["process_index"], process_count=PROCESSES)
    for run, first_step in zip(report["runs"], (0, 2)):
      expected_reads = [batcher.local_indices(step).tolist()
                        for step in range(first_step, MULTI_PROCESS_STEPS)]
      assert run["reads"] == expected_reads, (report["process_index"], run["workdir"])
      assert all(len(r) == 4 for r in run["reads"])  # 8 images a step, 4 each

  # 4. Only process 0 wrote events and sample grids (beside this process's step-2 run).
  assert reports[1]["pngs"] == []
  assert sorted(os.path.relpath(p, tmp_path) for p in reports[0]["pngs"]) == [
      os.path.join(w, "samples", f"{kind}_000003.png")
      for w in ("fresh", "resumed") for kind in ("attention", "samples")]
  for workdir, writers in ((fresh, {reports[0]["pid"]}),
                           (resumed, {reports[0]["pid"], os.getpid()})):
    events = [n for n in os.listdir(workdir) if n.startswith("events.out.tfevents")]
    assert sorted(_pid_of(n) for n in events) == sorted(writers), events


def test_two_processes_evaluate_like_one(tmp_path, env):
  workdir = tmp_path / "run"
  with processes(["evaluate", str(tmp_path), str(workdir)], env, tmp_path) as running:
    for i, process in enumerate(running):
      assert process.wait(TIMEOUT_S) == 0, output(tmp_path, i)[-5000:]
  reports = [json.loads((tmp_path / f"process_{i}.json").read_text()) for i in range(PROCESSES)]
  half = EVAL_SAMPLES // PROCESSES
  # 1. Each process generated and measured its half; process 0 scored all of them.
  assert [r["measured"] for r in reports] == [[half], [half]]
  assert [r["thirds"] for r in reports] == [[(1 / 3).hex(), (2 / 3).hex()]] * PROCESSES
  (report_file,) = (workdir / "eval").glob("eval_000003_*.json")
  report = json.loads(report_file.read_text())
  assert report["num_samples"] == EVAL_SAMPLES
  assert report["samples_per_process"] == [half, half]
  assert scalars(workdir)[(3, "eval/fid")] == pytest.approx(report["fid"], rel=1e-6)  # float32
  # 2. Both processes saved the best checkpoint together; it restores in this process.
  assert read_best(workdir) == {"step": 3, "fid": report["fid"]}
  run = restore_generator(str(workdir), best=True)
  # 3. One process scoring the same weights on the same samples, on as many devices as each
  # of the two had: the same per-device batch, so each sample's image and features are the
  # same bits (on all 4 devices XLA's per-device program rounds otherwise: FID 2e-9 apart).
  evaluator = evaluation.make_evaluator(run.config, batch_size=EVAL_SAMPLES,
                                        seed=run.config.seed)
  measured = evaluation.measure_generator(run.generator, run.variables, run.config, evaluator,
                                          num_samples=EVAL_SAMPLES, batch_size=EVAL_SAMPLES,
                                          seed=run.config.seed,
                                          devices=jax.devices()[:DEVICES_PER_PROCESS])
  one = evaluator.score(measured)
  assert one["num_samples"] == EVAL_SAMPLES
  tolerance = fid_merge_tolerance(measured.features.moments,
                                  evaluator.real_reference().all.moments)
  assert abs(report["fid"] - one["fid"]) <= tolerance, (report["fid"], one["fid"], tolerance)


def _pid_of(events_file: str) -> int:
  """The writer's pid in ``events.out.tfevents.<time>.<host>.<pid>.<id>``."""
  return int(events_file.split(".")[-2])


@pytest.mark.parametrize("dies, how", [(1, "kill"), (1, "raise"), (0, "kill")])
def test_a_dying_process_makes_the_other_exit_not_hang(tmp_path, env, dies, how):
  args = ["die", str(dies), how, "--", "--config", "configs/tiny.py",
          "--config.data.per_digit=8", "--config.num_steps=100000",
          "--config.checkpoint_every=100000", "--config.sample_every=100000",
          "--workdir", str(tmp_path / "run")]
  with processes(args, env, tmp_path, **{HEARTBEAT_TIMEOUT_ENV: str(HEARTBEAT_TIMEOUT_S)}
                 ) as running:
    dead, survivor = running[dies], running[1 - dies]
    deadline = time.monotonic() + TIMEOUT_S
    while dead.poll() is None and time.monotonic() < deadline:
      time.sleep(0.1)
    assert dead.poll() is not None, output(tmp_path, dies)[-5000:]
    died_at = time.monotonic()
    # JAX's coordination service ends the survivor once the heartbeats stop (at once if
    # the dead one hosted the service); a generous bound on top of that timeout.
    survivor.wait(HEARTBEAT_TIMEOUT_S + 120)
    waited = time.monotonic() - died_at
  text = output(tmp_path, 1 - dies)
  assert survivor.returncode != 0, text[-5000:]
  ours = [line for line in text.splitlines() if line.startswith(f"error: process {1 - dies}: ")
          and line.endswith("another process of this run failed or died; see its log.")]
  assert ours or "This most likely indicates that another task died" in text, text[-5000:]
  assert "Traceback" not in text, text[-5000:]
  print(f"process {dies} died ({how}); process {1 - dies} exited {waited:.1f} s later "
        f"(status {survivor.returncode})")
