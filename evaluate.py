"""Scores a trained run: ``python evaluate.py --workdir runs/mnist78 [--num_samples 10000]``.

Intentionally kept short: the logic is ``sagan_jax.runs.evaluate_run``.
Loads the workdir's latest checkpoint (or ``--step``), generates
``--num_samples`` images and compares them with the held-out real digits
through the packaged MNIST classifier: FID, KID, precision/recall,
classifier score, the share of samples read confidently as the run's digits,
and the same numbers for real-vs-real (the floor). Writes
``<workdir>/eval/eval_<step>.json`` and TensorBoard scalars ``eval/*``, and
prints a table.

A generator trained with the chapter's PyTorch code scores the same way
(needs torch; see ``benchmarks/torch_chapter.py --save_dir``)::

  python evaluate.py --torch_generator runs/torch_mnist78/generator_002100.pt \\
      --config configs/mnist78.py

which writes ``generator_002100_eval.json`` beside the file.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from sagan_jax import runs
from sagan_jax.runs import console

flags.DEFINE_string("workdir", None, "A training workdir (holds config.json and checkpoints/).")
flags.DEFINE_string("torch_generator", None,
                    "Instead of --workdir: a PyTorch chapter Generator state_dict (.pt).")
config_flags.DEFINE_config_file("config", None, "With --torch_generator: the run's config "
                                "(data and model), e.g. configs/mnist78.py.", lock_config=True)
flags.DEFINE_integer("num_samples", 10_000, "Generated images to score.")
flags.DEFINE_integer("batch_size", 500, "Images per generator/classifier call (memory).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.DEFINE_integer("seed", 0, "Noise seed of the generated images.")
flags.DEFINE_bool("ema", True, "Score the run's EMA generator when it keeps one (--noema: the "
                  "trained weights, written to eval_<step>_weights.json).")
FLAGS = flags.FLAGS


def _evaluate():
  options = dict(num_samples=FLAGS.num_samples, batch_size=FLAGS.batch_size, seed=FLAGS.seed)
  if FLAGS.torch_generator is None:
    return runs.evaluate_run(FLAGS.workdir, step=FLAGS.step,
                             use_ema=None if FLAGS.ema else False, **options)
  return runs.evaluate_torch_generator(FLAGS.torch_generator, FLAGS.config, **options)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if (FLAGS.workdir is None) == (FLAGS.torch_generator is None):
    raise app.UsageError("give exactly one of --workdir and --torch_generator")
  if FLAGS.torch_generator is not None and (FLAGS.config is None or FLAGS.step is not None):
    raise app.UsageError("--torch_generator needs --config (and takes no --step)")
  console.quiet_logging()
  try:
    result = _evaluate()
  except ImportError as error:
    sys.exit(f"error: --torch_generator needs PyTorch ({error})")
  except runs.USER_ERRORS as error:
    sys.exit(f"error: {error}")
  logging.info("wrote %s", result["path"])
  print(runs.format_table(result))
  print(result["path"])


if __name__ == "__main__":
  app.run(main)
