"""Scores a trained run: ``python evaluate.py --workdir runs/mnist78 [--num_samples 10000]``.

Intentionally kept short: the logic is ``sagan_jax.eval.evaluate_run``.
Loads the workdir's latest checkpoint (or ``--step``), generates
``--num_samples`` images and compares them with the held-out real digits
through the packaged MNIST classifier: FID, KID, precision/recall,
classifier score, the share of samples read confidently as the run's digits,
and the same numbers for real-vs-real (the floor). Writes
``<workdir>/eval/eval_<step>.json`` and TensorBoard scalars ``eval/*``, and
prints a table.
"""

import sys

from absl import app, flags, logging

from sagan_jax.cli import quiet_logging
from sagan_jax.eval import EvalError, evaluate_run, format_table
from sagan_jax.train.errors import USER_ERRORS

flags.DEFINE_string("workdir", None, "A training workdir (holds config.json and checkpoints/).")
flags.DEFINE_integer("num_samples", 10_000, "Generated images to score.")
flags.DEFINE_integer("batch_size", 500, "Images per generator/classifier call (memory).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.DEFINE_integer("seed", 0, "Noise seed of the generated images.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_logging()
  try:
    result = evaluate_run(FLAGS.workdir, num_samples=FLAGS.num_samples,
                          batch_size=FLAGS.batch_size, step=FLAGS.step, seed=FLAGS.seed)
  except USER_ERRORS + (EvalError,) as error:
    sys.exit(f"error: {error}")
  logging.info("wrote %s", result["path"])
  print(format_table(result))
  print(result["path"])


if __name__ == "__main__":
  app.run(main)
