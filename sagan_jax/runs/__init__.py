"""Whole runs: training a config in a workdir, sampling from it, evaluating it.

The top floor: the only code that combines the train step, data, evaluation,
figures and interop. The command-line scripts (``train.py``, ``sample.py``,
``evaluate.py``) call these functions and nothing deeper.

* `train_and_evaluate(config, workdir)` — train or resume (`training`); it
  raises `TrainingStopped` after saving when SIGTERM or Ctrl-C stop it;
* `restore_generator`, `Sampler`, `write_sample_files`, `write_samples_npz` — the
  one sampling path (`sampling`); `write_explorer` — the attention explorer page;
* `evaluate_run`, `evaluate_generator`, `evaluate_torch_generator` (`evaluation`),
  and `format_table` to print a result; `make_extractor` picks the feature
  network (MNIST classifier or FID Inception);
* `write_dataset_statistics` — a dataset's reference statistics for FID
  (`dataset_stats`).
"""

from sagan_jax.eval import format_table
from sagan_jax.runs.errors import USER_ERRORS, NonFiniteLossError, SamplingError
from sagan_jax.runs.dataset_stats import write_dataset_statistics
from sagan_jax.runs.evaluation import (FEATURES, evaluate_generator, evaluate_run,
                                       evaluate_torch_generator, heldout_images, make_evaluator,
                                       make_extractor, write_results)
from sagan_jax.runs.explorer import write_explorer
from sagan_jax.runs.sampling import (RestoredGenerator, Sampler, Samples, WrittenFile, latents,
                                     restore_generator, torch_generator, write_sample_files,
                                     write_samples_npz)
from sagan_jax.runtime.stop_signals import TrainingStopped
from sagan_jax.runs.training import Trainer, train_and_evaluate
from sagan_jax.runtime.workdir import load_config, write_config

__all__ = [
    "FEATURES",
    "NonFiniteLossError",
    "RestoredGenerator",
    "Sampler",
    "SamplingError",
    "Samples",
    "Trainer",
    "TrainingStopped",
    "USER_ERRORS",
    "WrittenFile",
    "evaluate_generator",
    "evaluate_run",
    "evaluate_torch_generator",
    "format_table",
    "heldout_images",
    "latents",
    "load_config",
    "make_evaluator",
    "make_extractor",
    "restore_generator",
    "train_and_evaluate",
    "write_config",
    "write_dataset_statistics",
    "write_explorer",
    "write_results",
    "torch_generator",
    "write_sample_files",
    "write_samples_npz",
]
