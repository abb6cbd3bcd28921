"""Trains a SAGAN: ``python train.py --config configs/mnist78.py [--workdir DIR]``.

Intentionally kept short: the logic lives in ``sagan_jax.train`` so tests and
notebooks can call it. Override any config field on the command line, e.g.
``--config.num_steps=600`` or ``--config.data.source=image_folder
--config.data.path=img_78``. Rerunning the same command resumes from the
workdir's latest checkpoint.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from sagan_jax.train import distributed
from sagan_jax.cli import quiet_logging
from sagan_jax.train.errors import USER_ERRORS

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None,
                    "Checkpoints, samples and TensorBoard logs go here "
                    "(default: runs/<config file name>).")
flags.mark_flags_as_required(["config"])


def parse_flags(argv):
  """absl's flag parsing, but a ``--config.<field>`` the config lacks is one
  clear line (ml_collections raises a bare KeyError/AttributeError for it)."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as error:
    message = error
    while isinstance(message, BaseException) and message.args:
      message = message.args[0]  # AttributeError(KeyError("'name'\nDid you mean …"))
    name, _, hint = str(message).partition("\n")
    name = name.strip("'\"")
    culprits = [arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("--config.")
                and name in arg.split("=", 1)[0][len("--config."):].split(".")]
    if not culprits:
      raise
    sys.exit(f"error: {culprits[0]}: the config has no field {name!r}"
             + (f". {hint.strip()}" if hint.strip() else "")
             + " (every field and its default: sagan_jax/train/config.py)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_logging()
  distributed.maybe_initialize()
  # Imported after distributed init: jax must not touch devices before it.
  from sagan_jax.train.loop import train_and_evaluate

  config_path = flags.FLAGS["config"].config_filename
  workdir = FLAGS.workdir or os.path.join(
      "runs", os.path.splitext(os.path.basename(config_path))[0])
  logging.warning("Config %s → workdir %s", config_path, workdir)
  try:
    train_and_evaluate(FLAGS.config, workdir)
  except USER_ERRORS as error:
    logging.error("%s: %s", type(error).__name__, error)
    sys.exit(f"error: {error}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
