"""Score a run (or any generator) against real images: ``config.eval`` says how.

`evaluate_run(workdir)` restores a checkpoint's generator, draws samples
through the one sampling path (`sagan_jax.runs.sampling`), scores them with
an `Evaluator`, and writes
``<workdir>/eval/eval_<step>_<features>_<reference>_n<samples>.json`` (`report_name`) and the
scalars ``eval/*`` through the run's writers (`run_writer`: TensorBoard, CSV, W&B …, as
``config.logging`` names them). `evaluate_generator` is the core, for generators from anywhere
(a converted PyTorch ``state_dict``: `evaluate_torch_generator`); the trainer calls it every
``config.eval.every`` steps.

Features (``config.eval.features``): the packaged MNIST classifier, or the FID
Inception (``config.eval.inception_weights``) for numbers comparable with the
literature. The reference, in this order: ``config.eval.ref_stats`` (a
dataset's statistics from ``evaluate.py stats`` or pytorch-fid — the standard
protocol); the held-out digits of an MNIST source (with a real-vs-real floor);
the statistics of the run's own training data, computed once and cached in
``<workdir>/eval/`` (`training_statistics`) — any data source.

Typical use::

  from sagan_jax.runs import evaluate_run
  from sagan_jax.eval import format_table
  print(format_table(evaluate_run("runs/mnist78", num_samples=10_000)))
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from typing import Any, Mapping, Optional, Sequence

import ml_collections
import numpy as np

from sagan_jax.atomic_file import atomic_write, check_writable_folder
from sagan_jax.checks import require_int
from sagan_jax.data import Source, make_source, to_model_range
from sagan_jax.eval import (EvalError, Evaluator, FeatureExtractor, Measurement, RealImages,
                            ReferenceStats, reference_stats, scalars)
from sagan_jax.eval.evaluator import PRECISION_RECALL_K, features_name, min_generated_samples
from sagan_jax.eval.extractors import FEATURES, make_extractor
from sagan_jax.runs.dataset_stats import dataset_statistics
from sagan_jax.runtime import workdir as workdir_lib
from sagan_jax.runtime.metric_writer import MetricWriter
from sagan_jax.runtime.writer_factory import make_writer
from sagan_jax.runs.errors import SamplingError
from sagan_jax.runs.sampling import Sampler, default_labels, restore_generator, torch_generator
from sagan_jax.train.config import HELDOUT_SOURCES, base_config, uses_ema, validate

__all__ = ["FEATURES", "eval_settings", "evaluate_generator", "evaluate_run",
           "evaluate_torch_generator", "extractor_of", "heldout_images", "make_evaluator",
           "make_extractor", "measure_generator", "report_name", "run_writer", "summary_line",
           "training_statistics", "uses_training_statistics", "write_results"]

logger = logging.getLogger(__name__)
_OLD_EVAL_FIELDS = ("eval_every", "eval_num_samples", "eval_batch_size")  # before config.eval


def _section(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """``config.<name>`` over its defaults: a run's config.json from an earlier release
  lacks the sections added since."""
  section = base_config()[name]
  if name in config:
    section.update(config[name].to_dict() if hasattr(config[name], "to_dict")
                   else dict(config[name]))
  return section


def eval_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config.eval``, also for a run of an earlier release (``eval_every``, … → ``eval.*``)."""
  settings = _section(config, "eval")
  for old in _OLD_EVAL_FIELDS:
    if old in config:
      settings[old[len("eval_"):]] = config[old]
  return settings


def logging_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config.logging`` over its defaults (a run of an earlier release has none)."""
  return _section(config, "logging")


def run_writer(config: ml_collections.ConfigDict, workdir: str, *, enabled: bool = True,
               resume_step: Optional[int] = None) -> MetricWriter:
  """The `MetricWriter` of ``config.logging`` for ``workdir``: what the trainer and the
  evaluation write through (`sagan_jax.runtime.writer_factory.make_writer`)."""
  return make_writer(workdir, logging_settings(config), enabled=enabled,
                     resume_step=resume_step)


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
  """What a run's class ``k`` is, as the evaluation names it: for the MNIST sources the
  digit ``data.digits[k]`` (the classifier's label); for other data ``k`` itself
  (none for an unconditional model)."""
  if config.data.source in HELDOUT_SOURCES:
    return tuple(int(d) for d in config.data.digits)
  return tuple(range(config.model.get("num_classes") or 0))


def extractor_of(config: ml_collections.ConfigDict) -> FeatureExtractor:
  """The feature network ``config.eval`` names (``features``, ``inception_weights``)."""
  settings = eval_settings(config)
  return make_extractor(settings.features, settings.inception_weights)


def _statistics_path(config: ml_collections.ConfigDict, extractor: FeatureExtractor,
                     workdir: str) -> str:
  """Where a run's training-data statistics are cached: named by the feature network
  and a hash of everything they depend on, so a rerun finds them (and another data
  config or weight file does not)."""
  settings = eval_settings(config)
  name = str(getattr(extractor, "name", type(extractor).__name__))
  key = json.dumps({"data": config.data.to_dict(), "extractor": name,
                    "weights": settings.inception_weights}, sort_keys=True, default=str)
  digest = hashlib.sha256(key.encode()).hexdigest()[:12]
  return os.path.join(workdir_lib.eval_dir(workdir), f"reference_{name}_{digest}.npz")


def uses_training_statistics(config: ml_collections.ConfigDict,
                             ref_stats: Optional[str] = None) -> bool:
  """Whether `make_evaluator` scores against the run's training-data statistics."""
  ref_stats = eval_settings(config).ref_stats if ref_stats is None else ref_stats
  return ref_stats is None and config.data.source not in HELDOUT_SOURCES


def training_statistics(config: ml_collections.ConfigDict, extractor: FeatureExtractor,
                        workdir: str, batch_size: int = 500,
                        source: Optional[Source] = None) -> ReferenceStats:
  """The feature statistics of the run's own training data: read from
  ``<workdir>/eval/reference_<features>_<hash>.npz`` when an earlier evaluation made
  them, else computed once (all training images of ``source``, default
  ``make_source(config.data)``: the trainer passes its own) and saved there."""
  path = _statistics_path(config, extractor, workdir)
  if os.path.exists(path):
    reference = reference_stats.load(path)
    logger.info("Evaluation reference: %s (%d images), cached in %s", reference.description,
                reference.num_images or 0, path)
    return reference
  source = make_source(config.data) if source is None else source
  logger.info("No config.eval.ref_stats: computing the reference statistics of the training "
              "data (%s, %d images) once; they are cached in %s. For numbers comparable with "
              "published ones give the standard statistics (evaluate.py stats).",
              source.description, len(source), path)
  reference = dataset_statistics(source, extractor, batch_size=batch_size)
  reference_stats.save(path, reference)
  return reference


def make_evaluator(config: ml_collections.ConfigDict,
                   extractor: Optional[FeatureExtractor] = None,
                   ref_stats: Optional[str] = None, workdir: Optional[str] = None, *,
                   source: Optional[Source] = None, measure_only: bool = False,
                   **options: Any) -> Evaluator:
  """An `Evaluator` expecting ``config``'s classes, with ``extractor`` (default: the one
  ``config.eval`` names), computing ``options["metrics"]`` (None or absent:
  ``config.eval.metrics``), against

  * ``ref_stats`` (default ``config.eval.ref_stats``): an ``.npz`` of
    `sagan_jax.eval.reference_stats` or pytorch-fid — any data source;
  * else, for the MNIST sources, the held-out digits;
  * else the statistics of the run's training data (``source``: the trainer's
    own; default ``config.data``'s), computed once and cached in ``workdir``
    (`training_statistics`).

  ``measure_only``: no reference at all — an evaluator that measures its share of
  the samples for another process to score (`sagan_jax.runs.shared_evaluation`).
  """
  settings = eval_settings(config)
  extractor = extractor_of(config) if extractor is None else extractor
  ref_stats = settings.ref_stats if ref_stats is None else ref_stats
  if options.get("metrics") is None:
    options["metrics"] = tuple(settings.metrics)
  classes = class_values(config)
  if measure_only:  # the scoring process has per-class real images only for held-out digits
    return Evaluator(None, classes, extractor, **options, per_class_reference=(
        ref_stats is None and config.data.source in HELDOUT_SOURCES))
  if ref_stats is not None:
    return Evaluator(reference_stats.load(ref_stats), classes, extractor, **options)
  if config.data.source in HELDOUT_SOURCES:
    return Evaluator(heldout_images(config), classes, extractor, **options)
  if workdir is None:
    raise EvalError(f"data.source {config.data.source!r} has no held-out images: give "
                    "reference statistics (config.eval.ref_stats or --ref_stats, from "
                    "`evaluate.py stats`), or a workdir to cache its training data's")
  reference = training_statistics(config, extractor, workdir,
                                  options.get("batch_size", settings.batch_size), source)
  return Evaluator(reference, classes, extractor, **options)


def evaluate_generator(generator: Any, variables: Any, config: ml_collections.ConfigDict, *,
                       num_samples: int = 10_000, batch_size: int = 500, seed: int = 0,
                       extractor: Optional[FeatureExtractor] = None,
                       evaluator: Optional[Evaluator] = None, workdir: Optional[str] = None,
                       **evaluator_options: Any) -> dict[str, Any]:
  """The metrics of ``generator`` with eval-mode ``variables`` (from any source: a
  checkpoint, a converted PyTorch ``state_dict``) against ``config``'s held-out data.

  Args:
    generator, variables: the Flax generator and its eval-mode variables.
    config: the run's config (model and data).
    num_samples: generated images (≥ k + 1 = 4 with precision/recall's default k).
    batch_size: images per generator and extractor call.
    seed: noise seed of the generated images (and KID's subsets).
    extractor: a `FeatureExtractor`; default the one ``config.eval`` names.
    evaluator: reuse one (its real features are computed once), e.g. during
      training; ``extractor`` and ``evaluator_options`` are then unused.
    workdir: where the training data's statistics are cached when they are the
      reference (see `make_evaluator`).
    **evaluator_options: ``ref_stats`` (see `make_evaluator`) and
      `Evaluator`'s keyword arguments (``metrics``, default ``config.eval.metrics``;
      ``kid_subsets``, ``k``, ``splits``, ``confidence``, ``max_kept``, ...).
  """
  num_samples, batch_size, seed = _check_counts(
      num_samples, batch_size, seed, evaluator, evaluator_options.get("k", PRECISION_RECALL_K))
  if evaluator is None:
    evaluator = make_evaluator(config, extractor, workdir=workdir, batch_size=batch_size,
                               seed=seed, **evaluator_options)
  start = time.monotonic()
  result = evaluator.score(measure_generator(generator, variables, config, evaluator,
                                             num_samples=num_samples, batch_size=batch_size,
                                             seed=seed))
  result["seconds"] = round(time.monotonic() - start, 2)  # generation and extraction too
  return result


def measure_generator(generator: Any, variables: Any, config: ml_collections.ConfigDict,
                      evaluator: Evaluator, *, num_samples: int, batch_size: int, seed: int,
                      start: int = 0, devices: Optional[Sequence[Any]] = None) -> Measurement:
  """`Evaluator.measure` of ``generator``'s samples ``start … start+num_samples-1`` of
  ``seed`` (a share of an evaluation: the samples, and for a conditional generator their
  classes, are those the whole evaluation draws there), generated on ``devices``
  (default: this process's)."""
  num_classes = config.model.get("num_classes")
  sampler = Sampler(generator, config.model.z_dim, devices=devices, num_classes=num_classes)
  batches = (s.images for s in sampler.batches(variables, num_samples, seed=seed,
                                               batch_size=batch_size, start=start))
  if num_classes is None:
    return evaluator.measure(batches)
  # The sampler's default classes (i mod K), as the classifier names them.
  expected = np.asarray(class_values(config))[
      default_labels(np.arange(start, start + num_samples), num_classes)]
  return evaluator.measure(batches, expected)


_SUMMARY = (("fid", "FID"), ("kid", "KID"), ("precision", "precision"), ("recall", "recall"),
            ("inception_score", "IS"), ("classifier_score", "classifier score"),
            ("conditional_accuracy", "conditional accuracy"))


def summary_line(result: Mapping[str, Any]) -> str:
  """The headline metrics of a result on one line (FID with its real-vs-real floor when the
  reference has one)."""
  parts = []
  for key, label in _SUMMARY:
    if isinstance(result.get(key), (int, float)):
      text = f"{label} {result[key]:.4g}"
      floor = (result.get("real") or {}).get(key)
      if key == "fid" and floor is not None:
        text += f" (real floor {floor:.4g})"
      parts.append(text)
  return " | ".join(parts)


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


def report_name(result: Mapping[str, Any], suffix: str = "") -> str:
  """The file name of ``result``'s report: one per evaluation, so a report never replaces
  a different one — ``eval_<step:06d>_<features>_<reference>_n<samples>[_seed<s>]<suffix>``
  ``.json``, e.g. ``eval_000300_mnist_heldout_n2000.json`` or
  ``eval_000300_inception_ref-1a2b3c4d_n50000.json``:
  ``reference`` is ``heldout`` (the run's held-out images) or ``ref-`` and a digest of the
  reference statistics' description (the same statistics, the same name)."""
  features = features_name(result.get("extractor"))
  if result.get("real") is not None:
    reference = "heldout"
  else:
    digest = hashlib.sha256(str(result.get("real_data")).encode()).hexdigest()[:8]
    reference = f"ref-{digest}"
  seed = int(result.get("seed") or 0)
  return (f"eval_{int(result['step']):06d}_{features}_{reference}_n{result.get('num_samples')}"
          f"{f'_seed{seed}' if seed else ''}{suffix}.json")


def write_results(workdir: str, result: Mapping[str, Any],
                  writer: Optional[MetricWriter] = None, suffix: str = "") -> str:
  """Writes ``<workdir>/eval/`` `report_name` ``(result, suffix)`` atomically (with the
  user-facing ``features`` name added), and the ``eval<suffix>/*`` scalars to ``writer``
  (None: the run's writers, `run_writer`, beside the training curves). Returns the JSON
  file's path."""
  step = int(result["step"])
  payload = {**result, "features": features_name(result.get("extractor"))}
  path = _write_json(os.path.join(os.path.abspath(workdir_lib.eval_dir(workdir)),
                                  report_name(result, suffix)), payload)
  values = scalars(result, f"eval{suffix}/")
  if writer is not None:
    writer.write_scalars(step, values)
  else:
    # A folder without config.json (results written for a generator from elsewhere) gets
    # the default writers.
    has_config = os.path.isfile(os.path.join(workdir, workdir_lib.CONFIG_FILE))
    config = workdir_lib.load_config(workdir) if has_config else ml_collections.ConfigDict()
    with run_writer(config, workdir) as own:
      own.write_scalars(step, values)
  return path


def evaluate_run(workdir: str, num_samples: int = 10_000, batch_size: int = 500,
                 step: Optional[int] = None, seed: int = 0,
                 extractor: Optional[FeatureExtractor] = None, write: bool = True,
                 use_ema: Optional[bool] = None, **evaluator_options: Any) -> dict[str, Any]:
  """Evaluates the checkpoint at ``step`` (default: latest) of a training workdir.

  Arguments as `evaluate_generator`'s, plus ``workdir``, ``step``, ``use_ema`` (see
  `restore_generator`: a run's EMA generator by default) and ``write`` (write
  ``<workdir>/eval/`` `report_name` and TensorBoard scalars ``eval/*``; for the trained
  weights of a run that keeps an EMA, the name ends ``_weights.json``, the scalars
  ``eval_weights/*``).

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
                                   extractor=extractor, workdir=workdir,
                                   **evaluator_options))
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
  holding one under ``'state_dict'``, read without torch (`sagan_jax.interop.torch_file`).

  The weights go through `sagan_jax.interop.torch.from_torch` into our
  generator built from ``config.model``, so a PyTorch run and ours are scored by
  the same code on the same noise. Writes ``<path without .pt>_`` `report_name` beside
  the file (e.g. ``G_eval_000000_mnist_heldout_n2000.json``: the step is the file's own,
  when it records one).

  The file is read without PyTorch (`sagan_jax.interop.torch_file`: both formats
  ``torch.save`` writes).

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
  result = {"torch_generator": os.path.abspath(path), "step": run.step, "seed": seed}
  result.update(evaluate_generator(generator, variables, config, num_samples=num_samples,
                                   batch_size=batch_size, seed=seed, **options))
  if write:
    # one report per evaluation, as a run's: another reference or count never replaces it
    result["path"] = _write_json(f"{os.path.splitext(path)[0]}_{report_name(result)}", result)
  return result

