"""Whole runs: training a config in a workdir, sampling from it, evaluating it.

The top floor: the only code that combines the train step, data, evaluation,
figures and interop. The command-line scripts (``train.py``, ``sample.py``,
``evaluate.py``) call these functions and nothing deeper.

* `train_and_evaluate(config, workdir)` — train or resume (`training`);
* `restore_generator`, `Sampler`, `write_sample_files` — the one sampling path
  (`sampling`);
* `evaluate_run`, `evaluate_generator`, `evaluate_torch_generator` (`evaluation`),
  and `format_table` to print a result.
"""

from sagan_jax.eval import format_table
from sagan_jax.runs.errors import USER_ERRORS, NonFiniteLossError, SamplingError
from sagan_jax.runs.evaluation import (evaluate_generator, evaluate_run, evaluate_torch_generator,
                                       heldout_images, make_evaluator, write_results)
from sagan_jax.runs.sampling import (RestoredGenerator, Sampler, Samples, latents,
                                     restore_generator, write_sample_files)
from sagan_jax.runs.training import Trainer, train_and_evaluate
from sagan_jax.runs.workdir import load_config, write_config

__all__ = [
    "NonFiniteLossError",
    "RestoredGenerator",
    "Sampler",
    "SamplingError",
    "Samples",
    "Trainer",
    "USER_ERRORS",
    "evaluate_generator",
    "evaluate_run",
    "evaluate_torch_generator",
    "format_table",
    "heldout_images",
    "latents",
    "load_config",
    "make_evaluator",
    "restore_generator",
    "train_and_evaluate",
    "write_config",
    "write_results",
    "write_sample_files",
]
