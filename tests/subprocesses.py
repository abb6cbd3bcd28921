"""``train.py`` and ``sample.py`` run as a user runs them: in subprocesses, on one CPU
device, sharing the test session's compilation cache (test_cli.py,
test_run_failures_cli.py; conftest.py's ``env`` fixture), and what they print."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import pytest

from tests import ROOT
from tests.compilation import cache_dir

TRAIN = [sys.executable, "train.py", "--config", "configs/tiny.py", "--config.data.per_digit=8"]
TIMEOUT_S = 600  # per process; only reached if something hangs


def subprocess_env(tmp_path_factory) -> dict[str, str]:
  """The subprocesses' environment: one CPU device (what a user's CPU-only
  machine has), this session's compilation cache, this process's matmul precision."""
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=1"])
  env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir(tmp_path_factory))
  precision = jax.config.jax_default_matmul_precision
  if precision is not None:
    env["JAX_DEFAULT_MATMUL_PRECISION"] = str(precision)
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
  env["PYTHONUNBUFFERED"] = "1"
  return env


def run(args, env, **extra_env) -> subprocess.CompletedProcess:
  return subprocess.run(args, cwd=ROOT, env={**env, **extra_env}, capture_output=True,
                        text=True, timeout=TIMEOUT_S, check=False)


def error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(result, message: str) -> None:
  """The command failed (status 1) with one ``error: message`` line and no traceback."""
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert error_lines(result.stderr) == [message], result.stderr[-3000:]


def temporary_checkpoints(workdir) -> set[str]:
  try:
    return {n for n in os.listdir(workdir / "checkpoints") if ".orbax-checkpoint-tmp" in n}
  except FileNotFoundError:
    return set()


def _interruptible() -> None:
  """In the child before it starts: SIGINT back to its default, as from a terminal. A test
  session started in the background of a non-interactive shell has SIGINT ignored, which
  children inherit and the trainer (rightly) keeps, so Ctrl-C tests would fail there."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)


class Training:
  """``train.py`` running in the background, its stderr in a file."""

  def __init__(self, args, env, log: pathlib.Path):
    self.log = log
    with open(log, "w") as f:
      self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                      preexec_fn=_interruptible)

  def output(self) -> str:
    return self.log.read_text(errors="replace")

  def wait_for(self, condition, what: str):
    """Polls ``condition()`` every 5 ms until it is truthy; returns its value."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
      value = condition()
      if value:
        return value
      if self.process.poll() is not None:
        pytest.fail(f"train.py exited ({self.process.returncode}) before {what}:\n"
                    + self.output()[-3000:])
      time.sleep(0.005)
    self.process.kill()
    pytest.fail(f"timed out waiting for {what}:\n" + self.output()[-3000:])

  def kill9(self) -> None:
    self.process.send_signal(signal.SIGKILL)
    assert self.process.wait(TIMEOUT_S) == -signal.SIGKILL, self.output()[-3000:]
