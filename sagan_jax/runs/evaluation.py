"""Score a run (or any generator) against its data's held-out real images.

`evaluate_run(workdir)` restores a checkpoint's generator, draws samples
through the one sampling path (`sagan_jax.runs.sampling`), scores them with
an `Evaluator` against the held-out part of the run's own data (its config
says which classes, how many and at what size), and writes
``<workdir>/eval/eval_<step>.json`` and TensorBoard scalars ``eval/*``.
`evaluate_generator` is the core, for generators from anywhere (a converted
PyTorch ``state_dict``: `evaluate_torch_generator`).

Features: the packaged MNIST classifier (default), or the FID Inception
(`make_extractor('inception', weights)`) for numbers comparable with the
literature. The reference: the held-out real images, or a dataset's
statistics (``ref_stats='cifar10_train.npz'``, from ``evaluate.py stats`` or
pytorch-fid) — the standard protocol, which needs no held-out split.

Typical use::

  from sagan_jax.runs import evaluate_run
  from sagan_jax.eval import format_table
  print(format_table(evaluate_run("runs/mnist78", num_samples=10_000)))
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional

import ml_collections
import numpy as np

from sagan_jax.atomic_file import atomic_write, check_writable_folder
from sagan_jax.checks import require_int
from sagan_jax.data import make_source, to_model_range
from sagan_jax.eval import (EvalError, Evaluator, FeatureExtractor, FIDInception, MnistClassifier,
                            RealImages, reference_stats, scalars)
from sagan_jax.eval.evaluator import PRECISION_RECALL_K, min_generated_samples
from sagan_jax.runtime import workdir as workdir_lib
from sagan_jax.runtime.metric_writer import MetricWriter
from sagan_jax.runs.errors import SamplingError
from sagan_jax.runs.sampling import (Sampler, default_labels, image_shape, restore_generator,
                                     torch_generator, uses_ema)
from sagan_jax.train.config import HELDOUT_SOURCES, validate

__all__ = ["FEATURES", "evaluate_generator", "evaluate_run", "evaluate_torch_generator",
           "heldout_images", "make_evaluator", "make_extractor", "write_results"]

FEATURES = ("mnist", "inception")  # the feature networks `make_extractor` knows


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
  return require_int(value, name, minimum, EvalError)


def _check_counts(num_samples: Any, batch_size: Any, seed: Any,
                  evaluator: Optional[Evaluator] = None, k: Any = PRECISION_RECALL_K
                  ) -> tuple[int, int, int]:
  """Every count the metrics will use, checked before anything is read or generated."""
  k = _positive_int(evaluator.settings["k"] if evaluator is not None else k, "k")
  try:
    num_samples = _positive_int(num_samples, "num_samples", min_generated_samples(k))
  except EvalError as error:
    raise EvalError(f"{error} (precision/recall measure each sample's distance to its "
                    f"k-th nearest other one, k={k})") from None
  return num_samples, _positive_int(batch_size, "batch_size"), _positive_int(seed, "seed", 0)


def heldout_images(config: ml_collections.ConfigDict) -> RealImages:
  """The real images a run never trained on: its data's held-out split, labelled by digit."""
  data = config.data
  if data.source not in HELDOUT_SOURCES:
    raise EvalError(
        f"evaluation needs held-out real images; it supports runs on the packaged MNIST "
        f"digits (data.source one of {list(HELDOUT_SOURCES)}), not {data.source!r}")
  if data.split != "train":
    raise EvalError(f"the run trained on split {data.split!r}; the held-out reference is only "
                    "disjoint from split 'train'")
  source = make_source({**data.to_dict(), "split": "heldout"})
  images = to_model_range(source.get(np.arange(len(source))))
  labels = np.asarray(source.labels)
  if getattr(source, "class_names", None) is not None:  # class indices → the digits
    labels = np.asarray(class_values(config))[labels]
  return RealImages(images, labels, source.description)


def class_values(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """What a conditional run's class ``k`` is, as the classifier names it: the digit
  ``data.digits[k]``."""
  return tuple(int(d) for d in config.data.digits)


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


def make_evaluator(config: ml_collections.ConfigDict,
                   extractor: Optional[FeatureExtractor] = None,
                   ref_stats: Optional[str] = None, **options: Any) -> Evaluator:
  """An `Evaluator` expecting ``config``'s classes, against the held-out images of its data
  or, given ``ref_stats`` (an ``.npz`` of `sagan_jax.eval.reference_stats`), against those
  statistics (any data source)."""
  if ref_stats is not None:
    return Evaluator(reference_stats.load(ref_stats), config.data.digits, extractor, **options)
  return Evaluator(heldout_images(config), config.data.digits, extractor, **options)


def evaluate_generator(generator: Any, variables: Any, config: ml_collections.ConfigDict, *,
                       num_samples: int = 10_000, batch_size: int = 500, seed: int = 0,
                       extractor: Optional[FeatureExtractor] = None,
                       evaluator: Optional[Evaluator] = None, **evaluator_options: Any
                       ) -> dict[str, Any]:
  """The metrics of ``generator`` with eval-mode ``variables`` (from any source: a
  checkpoint, a converted PyTorch ``state_dict``) against ``config``'s held-out data.

  Args:
    generator, variables: the Flax generator and its eval-mode variables.
    config: the run's config (model and data).
    num_samples: generated images (≥ k + 1 = 4 with precision/recall's default k).
    batch_size: images per generator and extractor call.
    seed: noise seed of the generated images (and KID's subsets).
    extractor: a `FeatureExtractor`; default the packaged MNIST classifier.
    evaluator: reuse one (its real features are computed once), e.g. during
      training; ``extractor`` and ``evaluator_options`` are then unused.
    **evaluator_options: ``ref_stats`` (see `make_evaluator`) and
      `Evaluator`'s keyword arguments (``kid_subsets``, ``k``, ``splits``,
      ``confidence``, ``max_kept``, ...).
  """
  num_samples, batch_size, seed = _check_counts(
      num_samples, batch_size, seed, evaluator, evaluator_options.get("k", PRECISION_RECALL_K))
  if evaluator is None:
    evaluator = make_evaluator(config, extractor, batch_size=batch_size, seed=seed,
                               **evaluator_options)
  num_classes = config.model.get("num_classes")
  sampler = Sampler(generator, config.model.z_dim, num_classes=num_classes)
  batches = (s.images for s in sampler.batches(variables, num_samples, seed=seed,
                                               batch_size=batch_size))
  if num_classes is None:
    return evaluator.evaluate(batches)
  # The sampler's default classes (i mod K), as the classifier names them.
  expected = np.asarray(class_values(config))[default_labels(np.arange(num_samples),
                                                             num_classes)]
  return evaluator.evaluate(batches, expected)


def _json_safe(value: Any) -> Any:
  """NaN/inf → None (strict JSON), NumPy scalars → Python."""
  if isinstance(value, Mapping):
    return {str(k): _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _write_json(path: str, payload: Mapping[str, Any]) -> str:
  return atomic_write(path, (json.dumps(_json_safe(dict(payload)), indent=2, allow_nan=False)
                             + "\n").encode())


def write_results(workdir: str, result: Mapping[str, Any],
                  writer: Optional[MetricWriter] = None, suffix: str = "") -> str:
  """Writes ``<workdir>/eval/eval_<step:06d><suffix>.json`` atomically, and the ``eval<suffix>/*``
  scalars to ``writer`` (None: a writer of its own on ``workdir``, beside the
  training curves). Returns the JSON file's path."""
  step = int(result["step"])
  path = _write_json(os.path.join(workdir_lib.eval_dir(workdir), f"eval_{step:06d}{suffix}.json"),
                     result)
  values = scalars(result, f"eval{suffix}/")
  if writer is not None:
    writer.write_scalars(step, values)
  else:
    with MetricWriter(workdir) as own:
      own.write_scalars(step, values)
  return path


def evaluate_run(workdir: str, num_samples: int = 10_000, batch_size: int = 500,
                 step: Optional[int] = None, seed: int = 0,
                 extractor: Optional[FeatureExtractor] = None, write: bool = True,
                 use_ema: Optional[bool] = None, **evaluator_options: Any) -> dict[str, Any]:
  """Evaluates the checkpoint at ``step`` (default: latest) of a training workdir.

  Arguments as `evaluate_generator`'s, plus ``workdir``, ``step``, ``use_ema`` (see
  `restore_generator`: a run's EMA generator by default) and ``write`` (write
  ``<workdir>/eval/eval_<step>.json`` and TensorBoard scalars ``eval/*``; for the trained
  weights of a run that keeps an EMA, ``eval_<step>_weights.json`` and ``eval_weights/*``).

  Returns:
    The metrics (see `sagan_jax.eval.evaluator`), with ``step``, ``workdir``
    and, when written, ``path``.

  Raises:
    FileNotFoundError: no config or checkpoint in ``workdir``.
    EvalError: bad arguments, or a run without a held-out reference.
  """
  num_samples, batch_size, seed = _check_counts(
      num_samples, batch_size, seed, k=evaluator_options.get("k", PRECISION_RECALL_K))
  if step is not None:
    step = _positive_int(step, "step", 0)
  if write:  # the results go into the workdir: learn now, not after the work, if it can't
    check_writable_folder(workdir_lib.eval_dir(workdir))
    check_writable_folder(workdir)  # TensorBoard events
  run = restore_generator(workdir, step, use_ema=use_ema)
  result = {"step": int(run.step), "workdir": os.path.abspath(workdir), "seed": seed,
            "ema": run.ema}
  result.update(evaluate_generator(run.generator, run.variables, run.config,
                                   num_samples=num_samples, batch_size=batch_size, seed=seed,
                                   extractor=extractor, **evaluator_options))
  if write:
    weights_of_ema_run = not run.ema and uses_ema(run.config)
    result["path"] = write_results(workdir, result,
                                   suffix="_weights" if weights_of_ema_run else "")
  return result


def evaluate_torch_generator(path: str, config: ml_collections.ConfigDict, *,
                             num_samples: int = 10_000, batch_size: int = 500, seed: int = 0,
                             write: bool = True, **options: Any) -> dict[str, Any]:
  """Scores a PyTorch generator file: the chapter's ``Generator`` or StudioGAN's SAGAN
  (``model=G_ema-best-weights-step=N.pth``), a bare ``state_dict`` or a checkpoint dict
  holding one under ``'state_dict'``, read without torch (`sagan_jax.torch_file`).

  The weights go through `sagan_jax.interop.torch.from_torch` into our
  generator built from ``config.model``, so a PyTorch run and ours are scored by
  the same code on the same noise. Writes ``<path without .pt>_eval.json`` beside
  the file.

  Raises:
    ConfigError: ``config`` is invalid.
    FileNotFoundError: no file at ``path``.
    EvalError: the file is not a state_dict of ``config.model``'s generator.
  """
  validate(config)
  _check_counts(num_samples, batch_size, seed, k=options.get("k", PRECISION_RECALL_K))
  try:
    run = torch_generator(path, config)
  except SamplingError as error:
    raise EvalError(str(error)) from error
  generator, variables = run.generator, run.variables
  result = {"torch_generator": os.path.abspath(path), "seed": seed}
  result.update(evaluate_generator(generator, variables, config, num_samples=num_samples,
                                   batch_size=batch_size, seed=seed, **options))
  if write:
    result["path"] = _write_json(os.path.splitext(path)[0] + "_eval.json", result)
  return result

