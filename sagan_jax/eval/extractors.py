"""`make_extractor`: a feature network by name, as configs and ``evaluate.py`` name them."""

from __future__ import annotations

from typing import Optional

from sagan_jax.eval.errors import EvalError
from sagan_jax.eval.features import FeatureExtractor
from sagan_jax.eval.inception import FIDInception
from sagan_jax.eval.mnist_classifier import MnistClassifier

__all__ = ["FEATURES", "make_extractor"]

# The names `make_extractor` knows (train/config.py's EVAL_FEATURES; a test keeps them equal).
FEATURES = ("mnist", "inception")


def make_extractor(features: str = "mnist",
                   inception_weights: Optional[str] = None) -> FeatureExtractor:
  """The feature network named ``features``: ``'mnist'`` (the packaged classifier) or
  ``'inception'`` (`FIDInception` from ``inception_weights``; default: where pytorch-fid's
  download puts the file)."""
  if features == "mnist":
    if inception_weights is not None:
      raise EvalError("inception weights are given but the features are 'mnist'; "
                      "choose features='inception'")
    return MnistClassifier()
  if features == "inception":
    return FIDInception(inception_weights)
  raise EvalError(f"features must be one of {FEATURES}, got {features!r}")
