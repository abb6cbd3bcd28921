"""Scores a trained run: ``python evaluate.py --workdir runs/mnist78 [--num_samples 10000]``.

Intentionally kept short: the logic is ``sagan_jax.runs.evaluate_run``.
Loads the workdir's latest checkpoint (or ``--step``), generates
``--num_samples`` images and scores them as the run's ``config.eval`` says
(flags override it). For an MNIST run: against the held-out real digits
through the packaged MNIST classifier — FID, KID, precision/recall,
classifier score, the share of samples read confidently as the run's digits,
and the same numbers for real-vs-real (the floor). For other data: through the
FID Inception against ``config.eval.ref_stats`` or the training data's
statistics (computed once, cached in ``<workdir>/eval/``). Writes
``<workdir>/eval/eval_<step>_<features>_<reference>_n<samples>.json`` (one file per
evaluation: another reference or sample count never replaces a report) and the scalars
``eval/*`` through the run's writers (``config.logging``), and prints a table.
``--metrics fid,is`` computes only those (default: ``config.eval.metrics``, all of
them unless the run says otherwise); KID and precision/recall are the slow ones.

The standard protocol (numbers comparable with the literature): the FID
Inception network (pytorch-fid's weight file, never downloaded here) and a
dataset's reference statistics, made once::

  python evaluate.py stats --source tfds:cifar10 --split train --out cifar10_train.npz \\
      --inception_weights pt_inception-2015-12-05-6726825d.pth
  python evaluate.py --workdir runs/cifar10 --num_samples 50000 --features inception \\
      --inception_weights pt_inception-2015-12-05-6726825d.pth --ref_stats cifar10_train.npz

``stats`` also reads image folders (``--source folder:PATH``); a ``.npz`` made
by pytorch-fid's ``--save-stats`` works as ``--ref_stats`` as is.

A generator trained with the chapter's PyTorch code (``benchmarks/torch_chapter.py
--save_dir``) scores the same way; its file is read without PyTorch::

  python evaluate.py --torch_generator runs/torch_mnist78/generator_002100.pt \\
      --config configs/mnist78.py

which writes ``generator_002100_eval_000000_mnist_heldout_n10000.json`` beside the file. StudioGAN's checkpoint
files (``model=G_ema-best-weights-step=N.pth``, the dict wrapper or a bare state_dict)
score the same way with the config of the same recipe (``--config configs/cifar10.py``).
"""

import os
import sys
from typing import Optional

from absl import app, flags, logging
from ml_collections import config_flags

from sagan_jax import data, runs
from sagan_jax.eval import EvalError, reference_stats
from sagan_jax.eval.evaluator import METRICS, check_metrics, features_name
from sagan_jax.eval.inception_weights import check_weights_file
from sagan_jax.runtime import compilation_cache, console
from sagan_jax.runtime import workdir as workdir_lib
from sagan_jax.train.config import base_config

flags.DEFINE_string("workdir", None, "A training workdir (holds config.json and checkpoints/).")
flags.DEFINE_string("torch_generator", None,
                    "Instead of --workdir: a PyTorch generator file (.pt/.pth, read without "
                    "torch): the chapter's state_dict or StudioGAN's model=G_ema-…pth.")
config_flags.DEFINE_config_file("config", None, "With --torch_generator: the run's config "
                                "(data and model), e.g. configs/mnist78.py.", lock_config=True)
flags.DEFINE_integer("num_samples", 10_000, "Generated images to score (standard: 50000).")
flags.DEFINE_integer("batch_size", 500, "Images per generator/feature-network call (memory: "
                     "the FID Inception needs about 8 MB an image).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.DEFINE_integer("seed", 0, "Noise seed of the generated images.")
flags.DEFINE_enum("features", None, runs.FEATURES,
                  "Feature network: 'mnist' (the packaged classifier) or 'inception' (the FID "
                  "Inception). Default: 'inception' for `stats` and with --ref_stats or "
                  "--inception_weights, else the run's config.eval.features.")
flags.DEFINE_string("inception_weights", None,
                    "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: the run's "
                    "config.eval.inception_weights, else torch hub's cache, where pytorch-fid "
                    "downloads it).")
flags.DEFINE_list("metrics", None, "What to compute, comma-separated, of "
                  f"{','.join(METRICS)} (default: the run's config.eval.metrics, all of them "
                  "unless it says otherwise); kid and precision_recall are the slow ones.")
flags.DEFINE_string("ref_stats", None, "Score against these reference statistics (.npz from "
                    "`evaluate.py stats` or pytorch-fid). Default: the run's "
                    "config.eval.ref_stats, else its held-out digits (MNIST sources) or its "
                    "training data's statistics (cached in <workdir>/eval/).")
# `stats`: reference statistics of a dataset.
flags.DEFINE_string("source", None, "stats: tfds:NAME or folder:PATH (or a folder).")
flags.DEFINE_string("split", "train", "stats: the TFDS split.")
flags.DEFINE_string("out", None, "stats: the .npz to write.")
flags.DEFINE_integer("image_size", None, "stats: resize to this square size (default: the "
                     "images' own size, as pytorch-fid reads them).")
flags.DEFINE_integer("keep_features", 10_000, "stats: also store this many images' features "
                     "(KID and precision/recall need them; 0: only mu and sigma).")
flags.DEFINE_string("tfds_data_dir", None, "stats: TFDS's data folder (default: TFDS's).")
flags.DEFINE_bool("tfds_download", base_config().data.tfds_download,
                  "stats: let TFDS download the dataset if it is not there.")
flags.DEFINE_bool("ema", True, "Score the run's EMA generator when it keeps one (--noema: the "
                  "trained weights, written to eval_<step>_…_weights.json).")
FLAGS = flags.FLAGS


def _features(standard: bool) -> Optional[str]:
  """The --features to use; None: the run's config.eval.features."""
  if FLAGS.features is not None:
    return FLAGS.features
  return "inception" if standard or FLAGS.inception_weights or FLAGS.ref_stats else None


def _input_problems(stats: bool) -> list[str]:
  """Every problem with the command's inputs (files that are missing or unreadable), found
  before any work, so one run reports them all rather than the first after minutes."""
  problems = []
  if not stats:
    try:  # the counts evaluate_run checks first, with the same words
      runs.evaluation._check_counts(  # pylint: disable=protected-access
          FLAGS.num_samples, FLAGS.batch_size, FLAGS.seed)
    except EvalError as error:
      problems.append(str(error))
    if FLAGS.metrics is not None:
      try:
        check_metrics(FLAGS.metrics)
      except EvalError as error:
        problems.append(f"--metrics: {error}")
  run_config, workdir_problem = None, None
  if FLAGS.workdir is not None:
    try:
      workdir_lib.require_local(FLAGS.workdir)
      run_config = workdir_lib.load_config(FLAGS.workdir)
    except workdir_lib.WorkdirError as error:  # a URL: one line, nothing created
      workdir_problem = str(error)
    except FileNotFoundError:
      workdir_problem = (f"{os.path.join(os.path.abspath(FLAGS.workdir), workdir_lib.CONFIG_FILE)}"
                         f" not found: is {os.path.abspath(FLAGS.workdir)} a training workdir?")
    except ValueError as error:  # config.json is not JSON
      workdir_problem = f"{os.path.abspath(FLAGS.workdir)}'s config.json is unreadable: {error}"
  features, weights = _features(stats), FLAGS.inception_weights
  if features is None:  # the run's config.eval (or --config's) decides: check its weights now
    settings = runs.evaluation.eval_settings(
        run_config if run_config is not None else FLAGS.config or base_config())
    features, weights = settings.features, weights or settings.inception_weights
  if features == "inception":
    try:
      check_weights_file(weights)
    except EvalError as error:
      problems.append(str(error))
  elif FLAGS.inception_weights is not None:
    problems.append("--inception_weights is given but the features are 'mnist': choose "
                    "--features inception")
  if FLAGS.ref_stats is not None:
    try:
      reference_stats.load(FLAGS.ref_stats)
    except EvalError as error:
      problems.append(str(error))
  if workdir_problem is not None:
    problems.append(workdir_problem)
  if FLAGS.torch_generator is not None and not os.path.isfile(FLAGS.torch_generator):
    problems.append(f"no PyTorch generator file at {os.path.abspath(FLAGS.torch_generator)}")
  if stats:
    kind, _, rest = FLAGS.source.partition(":")
    folder = rest if kind == "folder" else (None if kind == "tfds" and rest else FLAGS.source)
    if folder is not None and not os.path.isdir(folder):
      problems.append(f"--source {FLAGS.source!r} is neither tfds:NAME nor an existing folder "
                      "(folder:PATH)")
    elif folder is not None:
      try:  # a listing: an empty folder is a problem too (each file is checked later)
        data.image_folder(folder, image_size=1, channels=3, check_files=False)
      except data.DataError as error:
        problems.append(str(error))
    if not FLAGS.out.endswith(".npz"):
      problems.append(f"--out must name an .npz file, got {FLAGS.out!r}")
  return problems


def _stats():
  path, reference = runs.write_dataset_statistics(
      FLAGS.source, FLAGS.out, features=_features(True),
      inception_weights=FLAGS.inception_weights, split=FLAGS.split, image_size=FLAGS.image_size,
      batch_size=FLAGS.batch_size, keep_features=FLAGS.keep_features,
      tfds_data_dir=FLAGS.tfds_data_dir, tfds_download=FLAGS.tfds_download)
  print(f"{reference.description}: {reference.num_images} images, {reference.dim}-d "
        f"{features_name(reference.extractor)} features")
  print(os.path.abspath(path))


def _evaluate():
  if FLAGS.workdir is not None:
    workdir_lib.require_local(FLAGS.workdir)  # before the extractor loads
  features = _features(False)
  extractor = (None if features is None  # the run's config.eval says
               else runs.make_extractor(features, FLAGS.inception_weights))
  options = dict(num_samples=FLAGS.num_samples, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
                 extractor=extractor, ref_stats=FLAGS.ref_stats, metrics=FLAGS.metrics)
  if FLAGS.torch_generator is None:
    result = runs.evaluate_run(FLAGS.workdir, step=FLAGS.step,
                               use_ema=None if FLAGS.ema else False, **options)
  else:
    result = runs.evaluate_torch_generator(FLAGS.torch_generator, FLAGS.config, **options)
  logging.info("wrote %s", result["path"])
  print(runs.format_table(result))
  print(os.path.abspath(result["path"]))


def main(argv):
  stats = argv[1:] == ["stats"]
  if len(argv) > 1 and not stats:
    raise app.UsageError(f"unexpected arguments: {argv[1:]} (the one command is `stats`)")
  if stats:
    if FLAGS.source is None or FLAGS.out is None:
      raise app.UsageError("stats needs --source and --out")
    if FLAGS.workdir or FLAGS.torch_generator or FLAGS.ref_stats:
      raise app.UsageError("stats takes no --workdir, --torch_generator or --ref_stats")
  elif (FLAGS.workdir is None) == (FLAGS.torch_generator is None):
    raise app.UsageError("give exactly one of --workdir and --torch_generator (or `stats`)")
  elif FLAGS.torch_generator is not None and (FLAGS.config is None or FLAGS.step is not None):
    raise app.UsageError("--torch_generator needs --config (and takes no --step)")
  console.quiet_logging()
  if FLAGS.config is not None:
    console.require_config(FLAGS.config)
  problems = _input_problems(stats)
  if problems:
    sys.exit("\n".join(f"error: {problem}" for problem in problems))
  compilation_cache.enable()
  try:
    if stats:
      _stats()
    else:
      _evaluate()
  except runs.USER_ERRORS as error:
    sys.exit(f"error: {error}")


if __name__ == "__main__":
  app.run(main, flags_parser=console.parse_flags)
