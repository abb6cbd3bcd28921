"""Samples from a trained run: ``python sample.py --workdir runs/mnist78 [--attention]``.

Loads the workdir's latest checkpoint (or ``--step``), generates
``--num_samples`` images from noise ``--seed`` and writes a PNG grid (and, with
``--attention``, the attention figure of the generator's last attention layer).
"""

import sys

from absl import app, flags, logging

from sagan_jax.cli import quiet_logging
from sagan_jax.train.errors import USER_ERRORS
from sagan_jax.train.sampling import write_sample_files

flags.DEFINE_string("workdir", None, "A training workdir (holds config.json and checkpoints/).")
flags.DEFINE_integer("num_samples", 64, "Images in the grid.")
flags.DEFINE_integer("seed", 0, "Noise seed.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.DEFINE_string("out", None, "Output PNG (default: <workdir>/samples/sample_step…png).")
flags.DEFINE_bool("attention", False, "Also write the attention-map figure.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_logging()
  try:
    paths = write_sample_files(FLAGS.workdir, FLAGS.num_samples, FLAGS.seed, FLAGS.out,
                               FLAGS.attention, FLAGS.step)
  except USER_ERRORS as error:
    sys.exit(f"error: {error}")
  for path in paths:
    logging.info("wrote %s", path)
    print(path)


if __name__ == "__main__":
  app.run(main)
