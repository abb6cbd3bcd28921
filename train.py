"""Trains a SAGAN: ``python train.py --config configs/mnist78.py [--workdir DIR]``.

Intentionally kept short: the logic lives in ``sagan_jax.runs`` so tests and
notebooks can call it. Override any config field on the command line, e.g.
``--config.num_steps=600`` or ``--config.data.source=image_folder
--config.data.path=img_78``. Rerunning the same command resumes from the
workdir's newest intact checkpoint. SIGTERM or Ctrl-C save a checkpoint after
the current step and exit with status 143 / 130; a second Ctrl-C exits at once.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from sagan_jax import runs
from sagan_jax.runtime import compilation, compilation_cache, console, distributed
from sagan_jax.runtime import workdir as workdir_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None,
                    "Checkpoints, samples and TensorBoard logs go here "
                    "(default: runs/<config file name>).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  console.quiet_logging()
  compilation_cache.enable()  # before anything compiles: reruns start in seconds
  console.require_config(FLAGS.config)
  distributed.maybe_initialize()  # before anything touches a device
  config_path = flags.FLAGS["config"].config_filename
  workdir = FLAGS.workdir or os.path.join(
      "runs", os.path.splitext(os.path.basename(config_path))[0])
  console.info("Config %s → workdir %s", config_path, workdir)
  with distributed.fail_fast():  # one process's error must not leave the others waiting
    try:
      workdir_lib.require_local(workdir)  # before the data is read, not after
      runs.train_and_evaluate(FLAGS.config, workdir)
    except runs.TrainingStopped as stop:  # SIGTERM / Ctrl-C: saved, and said so in one line
      compilation.exit_process(stop.exit_code)  # (not waiting for an abandoned compilation)
    except runs.USER_ERRORS as error:  # the one line (absl's handler would print it twice)
      sys.exit(f"error: {error}")


if __name__ == "__main__":
  app.run(main, flags_parser=console.parse_flags)
