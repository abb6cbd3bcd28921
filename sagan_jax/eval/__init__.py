"""Sample-quality evaluation: FID, KID, precision/recall, classifier score.

* `metrics`: the metrics as pure float64 NumPy functions on feature arrays.
* `stats`: streaming mean/covariance (Chan merging), so FID statistics of any
  number of samples accumulate batch by batch.
* `features`: the `FeatureExtractor` contract and streaming extraction.
* `mnist_classifier`: the packaged offline feature network (64×64 MNIST).
* `evaluator`: `evaluate_run(workdir)` — generate, extract, score against the
  held-out real digits, write ``<workdir>/eval/eval_<step>.json`` and
  TensorBoard scalars.

Typical use::

  from sagan_jax.eval import evaluate_run, format_table
  result = evaluate_run("runs/mnist78", num_samples=10_000)
  print(format_table(result))
"""

from sagan_jax.eval import metrics, stats
from sagan_jax.eval.errors import EvalAssetNotFoundError, EvalError
from sagan_jax.eval.evaluator import (Evaluator, RealReference, evaluate_generator, evaluate_run,
                                      evaluate_torch_generator, format_table, generate_batches,
                                      scalars, write_results)
from sagan_jax.eval.features import FeatureExtractor, FeatureSet, extract
from sagan_jax.eval.metrics import (classifier_score, fid, frechet_distance, kernel_mmd2, kid,
                                    precision_recall)
from sagan_jax.eval.mnist_classifier import MnistClassifier

__all__ = [
    "EvalAssetNotFoundError",
    "EvalError",
    "Evaluator",
    "FeatureExtractor",
    "FeatureSet",
    "MnistClassifier",
    "RealReference",
    "classifier_score",
    "evaluate_generator",
    "evaluate_run",
    "evaluate_torch_generator",
    "extract",
    "fid",
    "format_table",
    "frechet_distance",
    "generate_batches",
    "kernel_mmd2",
    "kid",
    "metrics",
    "precision_recall",
    "scalars",
    "stats",
    "write_results",
]
