"""Sample-quality evaluation: FID, KID, precision/recall, classifier score.

This floor knows feature networks and metrics, not trainers or checkpoints:

* `metrics`: the metrics as pure float64 NumPy functions on feature arrays.
* `stats`: streaming mean/covariance (Chan merging), so FID statistics of any
  number of samples accumulate batch by batch.
* `features`: the `FeatureExtractor` contract and streaming extraction.
* `mnist_classifier`: the packaged offline feature network (64×64 MNIST).
* `inception`: `FIDInception`, pytorch-fid's FID Inception network in Flax
  (`inception_net`), loaded from its weight file (`inception_weights`): the
  features of the standard FID and Inception Score.
* `reference_stats`: a dataset's feature statistics as pytorch-fid's ``.npz``.
* `extractors`: `make_extractor` — a feature network by its config name.
* `evaluator`: `Evaluator` — score batches of generated images against real
  ones; `format_table` and `scalars` render a result.
* `measurement`: what `Evaluator.measure` gathers of a share of the samples, and
  `merge` of the shares (one per process of a multi-host evaluation).

Scoring a training run (generate from its checkpoint, compare with its
held-out data, write ``eval/eval_<step>_<features>_<reference>_n<samples>.json``) is
`sagan_jax.runs.evaluate_run`.
"""

from sagan_jax.eval import metrics, stats
from sagan_jax.eval.errors import EvalAssetNotFoundError, EvalError
from sagan_jax.eval.evaluator import Evaluator, RealImages, RealReference, format_table, scalars
from sagan_jax.eval.features import FeatureExtractor, FeatureSet, extract
from sagan_jax.eval.measurement import Measurement
from sagan_jax.eval.inception import FIDInception
from sagan_jax.eval.metrics import (classifier_score, fid, frechet_distance, kernel_mmd2, kid,
                                    precision_recall)
from sagan_jax.eval.mnist_classifier import MnistClassifier
from sagan_jax.eval.reference_stats import ReferenceStats

__all__ = [
    "EvalAssetNotFoundError",
    "EvalError",
    "Evaluator",
    "FIDInception",
    "FeatureExtractor",
    "FeatureSet",
    "Measurement",
    "MnistClassifier",
    "RealImages",
    "RealReference",
    "ReferenceStats",
    "classifier_score",
    "extract",
    "fid",
    "format_table",
    "frechet_distance",
    "kernel_mmd2",
    "kid",
    "metrics",
    "precision_recall",
    "scalars",
    "stats",
]
