"""One process of the two-process runs of tests/test_multi_process.py.

    python -m tests.multi_process_worker train REPORT_DIR WORKDIR...
    python -m tests.multi_process_worker evaluate REPORT_DIR WORKDIR
    python -m tests.multi_process_worker die PROCESS_ID HOW -- TRAIN_ARGS...

The coordinator, process count and id come from the environment, as for
``train.py`` (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``, ``JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo``).

``train``: trains configs/tiny.py to step 3 in each WORKDIR in turn (fresh, or
resuming what is there) through `sagan_jax.runs.train_and_evaluate`, recording
which examples this process read and which PNGs it wrote; writes
``REPORT_DIR/process_<i>.json``.

``evaluate``: trains `eval_config` (an evaluation at step 3) in WORKDIR, recording how
many samples this process measured; writes ``REPORT_DIR/process_<i>.json``.

``die``: runs ``train.py TRAIN_ARGS``; process PROCESS_ID dies after step 2 —
``kill``: SIGKILL, ``raise``: an exception (through train.py's error path).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys

import jax
import numpy as np

from sagan_jax import data as data_lib
from sagan_jax import viz
from sagan_jax.runs import train_and_evaluate
from sagan_jax.runtime import distributed, gather
from sagan_jax.runs import training
from tests.tiny_configs import tiny_config

MULTI_PROCESS_STEPS = 3


def config():
  """configs/tiny.py on 16 images (batch 8, 2 steps per epoch), 3 steps, a checkpoint,
  log line and sample grid at step 3 (and the run's end)."""
  return tiny_config(num_steps=MULTI_PROCESS_STEPS, checkpoint_every=MULTI_PROCESS_STEPS,
                     sample_every=MULTI_PROCESS_STEPS, log_every=1)


EVAL_SAMPLES = 8


def eval_config():
  """`config` with an evaluation at step 3 on 8 samples (the MNIST classifier's features)."""
  config_ = config()
  config_.eval.update(every=MULTI_PROCESS_STEPS, num_samples=EVAL_SAMPLES, batch_size=8)
  return config_


def evaluate(report_dir: str, workdir: str) -> None:
  measured: list[int] = []
  measure_generator = training.shared_evaluation.evaluation.measure_generator

  def recording_measure(*args, **kwargs):
    result = measure_generator(*args, **kwargs)
    measured.append(result.count)
    return result

  training.shared_evaluation.evaluation.measure_generator = recording_measure
  state = train_and_evaluate(eval_config(), workdir)
  # float64 values no float32 holds, gathered from every process: bit-exact or not?
  thirds = gather.allgather_objects(np.float64(jax.process_index() + 1) / 3)
  report = {"process_index": jax.process_index(), "step": int(state.step),
            "measured": measured, "thirds": [float(x).hex() for x in thirds]}
  with open(os.path.join(report_dir, f"process_{jax.process_index()}.json"), "w") as f:
    json.dump(report, f)


def train(report_dir: str, workdirs: list[str]) -> None:
  reads: list[list[int]] = []
  pngs: list[str] = []
  make_source, save_png = data_lib.make_source, viz.save_png

  def recording_source(*args, **kwargs):
    source = make_source(*args, **kwargs)
    get = source.get

    def recording_get(indices):
      reads.append([int(i) for i in indices])
      return get(indices)

    source.get = recording_get
    return source

  def recording_save_png(path, array):
    pngs.append(os.fspath(path))
    return save_png(path, array)

  data_lib.make_source = recording_source
  viz.save_png = recording_save_png
  runs = []
  for workdir in workdirs:
    reads.clear()
    state = train_and_evaluate(config(), workdir)
    runs.append({"workdir": workdir, "reads": list(reads), "step": int(state.step)})
  report = {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "pid": os.getpid(), "local_devices": len(jax.local_devices()),
            "devices": jax.device_count(), "runs": runs, "pngs": pngs}
  with open(os.path.join(report_dir, f"process_{jax.process_index()}.json"), "w") as f:
    json.dump(report, f)


def die(process_id: int, how: str, train_args: list[str]) -> None:
  dispatch = training.Trainer.dispatch

  def dispatch_then_die(self, state, host_batches):
    out = dispatch(self, state, host_batches)
    if jax.process_index() == process_id and int(host_batches[-1]["step"]) + 1 == 2:
      jax.block_until_ready(out)
      print(f"process {process_id} dies now ({how})", flush=True)
      if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
      raise RuntimeError(f"process {process_id} failed on purpose")
    return out

  training.Trainer.dispatch = dispatch_then_die
  sys.argv = ["train.py", *train_args]
  runpy.run_path("train.py", run_name="__main__")


def main(argv: list[str]) -> None:
  if argv[1] == "train":
    distributed.maybe_initialize()
    train(argv[2], argv[3:])
  elif argv[1] == "evaluate":
    distributed.maybe_initialize()
    evaluate(argv[2], argv[3])
  elif argv[1] == "die":
    die(int(argv[2]), argv[3], argv[argv.index("--") + 1:])
  else:
    raise SystemExit(f"unknown scenario {argv[1]!r}")


if __name__ == "__main__":
  main(sys.argv)
