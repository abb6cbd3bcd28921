"""Samples from a trained run: ``python sample.py --workdir runs/mnist78 [--attention]``.

Loads the generator of the workdir's latest checkpoint (or ``--step``) — its moving
average when the run keeps one (``--noema`` for the trained weights) — generates
``--num_samples`` images from noise ``--seed`` (seed = the run's ``config.seed``
redraws its training grids) and writes a PNG grid (and, with ``--attention``, the
attention figure of the generator's last attention layer). A class-conditional run
also takes ``--labels 3,3,7`` (one image per listed class), ``--class_grid`` (a row
per class, ``--per_class`` columns sharing a latent each) and ``--interpolate N``
(N images from one latent to another at a fixed class: a row per ``--labels``
class, or per class).

Files are named by kind in ``<workdir>/samples/``: ``samples_<step>_seed<seed>.png``,
``labels_…``, ``classes_…``, ``interpolation_…`` and each one's attention figure
(``attention_…``, ``labels-attention_…``, …), so no two commands overwrite each other's
files or the trainer's (``samples_<step>.png``). ``--explorer`` and ``--npz`` write only
what they name, unless a grid is asked for too (``--grid`` or any grid flag). One line per
written file says what it is and where.

A PyTorch generator file — StudioGAN's ``model=G_ema-best-weights-step=N.pth`` or the
chapter's — samples the same way with the model's shape from one of our configs
(read without torch; the grid goes beside the file, e.g.
``model=G_ema-best-weights-step=100000_samples_100000_seed0.png``, unless ``--out``)::

  python sample.py --torch_generator model=G_ema-best-weights-step=100000.pth \
      --config configs/cifar10.py
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from sagan_jax import runs
from sagan_jax.runtime import compilation_cache, console
from sagan_jax.runtime import workdir as workdir_lib

flags.DEFINE_string("workdir", None, "A training workdir (holds config.json and checkpoints/).")
flags.DEFINE_integer("num_samples", 64, "Images in the grid (and the .npz).")
flags.DEFINE_integer("seed", 0, "Noise seed.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.DEFINE_bool("best", False, "Sample the best evaluated checkpoint (best_checkpoint/, kept "
                  "when training with --config.eval.every) instead of the latest.")
flags.DEFINE_bool("grid", None, "Write the sample grid PNG (default: yes, unless only "
                  "--explorer or --npz are asked for).")
flags.DEFINE_string("out", None, "Output PNG (default: <workdir>/samples/<kind>_<step>_seed"
                    "<seed>.png, the kind being samples, labels, classes or interpolation).")
flags.DEFINE_bool("attention", False, "Also write the attention-map figure.")
flags.DEFINE_string("explorer", None, "Write the attention explorer: one self-contained "
                    "HTML page (e.g. attention.html) of samples and every attention layer's maps.")
flags.DEFINE_integer("explorer_samples", 8, "Samples in the explorer page.")
flags.DEFINE_string("npz", None, "Write --num_samples samples to this .npz (uint8 "
                    "'images', N×H×W×C) for external tools.")
flags.DEFINE_list("labels", None, "Classes of the samples, e.g. 3,3,7 (conditional runs).")
flags.DEFINE_bool("class_grid", False, "A row per class (conditional runs).")
flags.DEFINE_integer("per_class", 8, "Columns of --class_grid.")
flags.DEFINE_integer("interpolate", None, "Steps of a latent interpolation at fixed classes.")
flags.DEFINE_bool("ema", True, "Use the run's EMA generator when it keeps one.")
flags.DEFINE_string("torch_generator", None, "Instead of --workdir: a PyTorch generator file "
                    "(StudioGAN's model=G_ema-…pth, or the chapter's), with --config.")
config_flags.DEFINE_config_file("config", None, "With --torch_generator: the model's config, "
                                "e.g. configs/cifar10.py.", lock_config=True)
FLAGS = flags.FLAGS
GRID_FLAGS = ("out", "attention", "labels", "class_grid", "interpolate")  # they shape the grid


def wants_grid() -> bool:
  """``--grid`` if given; else whether a grid flag was given or nothing else was asked."""
  if FLAGS.grid is not None:
    return FLAGS.grid
  return any(FLAGS[name].present for name in GRID_FLAGS) or not (FLAGS.explorer or FLAGS.npz)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  console.quiet_logging()
  compilation_cache.enable()
  try:
    labels = None if FLAGS.labels is None else [int(label) for label in FLAGS.labels]
  except ValueError:
    sys.exit(f"error: --labels must be integers, got {','.join(FLAGS.labels)}")
  if not (wants_grid() or FLAGS.explorer or FLAGS.npz):
    sys.exit("error: --nogrid without --explorer or --npz: nothing to write")
  use_ema = None if FLAGS.ema else False
  if (FLAGS.workdir is None) == (FLAGS.torch_generator is None):
    raise app.UsageError("give exactly one of --workdir and --torch_generator")
  if FLAGS.torch_generator is not None and (FLAGS.config is None or FLAGS.explorer
                                            or FLAGS.npz or FLAGS.step is not None):
    raise app.UsageError("--torch_generator needs --config (and takes no --step, --explorer, "
                         "--npz)")
  if FLAGS.config is not None:
    console.require_config(FLAGS.config)
  written = []
  try:
    run, out = None, FLAGS.out
    if FLAGS.torch_generator is not None:
      run = runs.torch_generator(FLAGS.torch_generator, FLAGS.config)
    else:
      workdir_lib.require_local(FLAGS.workdir)
    if wants_grid():
      written += runs.write_sample_files(
          FLAGS.workdir, FLAGS.num_samples, FLAGS.seed, out, FLAGS.attention, FLAGS.step,
          labels=labels, class_grid=FLAGS.class_grid, per_class=FLAGS.per_class,
          interpolate=FLAGS.interpolate, use_ema=use_ema, best=FLAGS.best, run=run,
          beside=FLAGS.torch_generator)
    if FLAGS.explorer:
      written.append(runs.write_explorer(FLAGS.workdir, FLAGS.explorer, FLAGS.explorer_samples,
                                         FLAGS.seed, FLAGS.step, FLAGS.best, use_ema))
    if FLAGS.npz:
      written.append(runs.write_samples_npz(FLAGS.workdir, FLAGS.npz, FLAGS.num_samples,
                                            FLAGS.seed, FLAGS.step, use_ema=use_ema,
                                            best=FLAGS.best))
  except runs.USER_ERRORS as error:
    sys.exit(f"error: {error}")
  finally:
    for file in written:  # what was written stays said, even if a later output failed
      print(file.line())


if __name__ == "__main__":
  app.run(main, flags_parser=console.parse_flags)
