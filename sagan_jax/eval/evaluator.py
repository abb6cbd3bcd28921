"""Evaluate a trained generator against held-out real digits.

`evaluate_run(workdir)` loads a workdir's checkpoint, generates
``num_samples`` images batch by batch (sharded over all local devices; the
images never sit in memory together), runs a feature extractor over them
and over the real held-out digits, and returns a flat dict of metrics:

* ``fid``, ``kid`` (± ``kid_std``), ``precision``, ``recall``: generated vs
  real features (`sagan_jax.eval.metrics`);
* ``classifier_score`` (± std): the Inception-Score formula on the
  classifier's probabilities;
* ``confident_fraction``: share of samples the classifier reads as one of
  the run's digits with probability ≥ ``confidence``; ``count_<d>`` and
  ``share_<d>`` per digit among those, and ``ratio_<a>_to_<b>`` for two digits;
* ``real``: the same metrics for real data — distances between two disjoint
  halves of the held-out digits (the floor a perfect generator would reach
  at that sample size) and the classifier readings of all of them.

`Evaluator` holds the extractor and the real reference so periodic
evaluation during training pays for them once; `write_results` writes
``<workdir>/eval/eval_<step>.json`` (atomically) and TensorBoard scalars
``eval/<name>``; `format_table` renders the console table.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Iterator, Mapping, NamedTuple, Optional, Sequence

import jax
import ml_collections
import numpy as np

from sagan_jax.atomic_file import atomic_write
from sagan_jax.data import mnist_digits, to_model_range
from sagan_jax.eval import metrics, stats
from sagan_jax.eval.errors import EvalError
from sagan_jax.eval.features import FeatureExtractor, FeatureSet, extract
from sagan_jax.train import sharding
from sagan_jax.train.metric_writer import MetricWriter

__all__ = [
    "Evaluator",
    "RealReference",
    "evaluate_generator",
    "evaluate_run",
    "evaluate_torch_generator",
    "format_table",
    "generate_batches",
    "scalars",
    "write_results",
]

logger = logging.getLogger(__name__)
EVAL_DIR = "eval"
NOISE_SALT = 0xE7A1  # evaluation noise: fold_in(key(seed), salt), apart from training keys


class RealReference(NamedTuple):
  """Features of the held-out real images, computed once per `Evaluator`."""
  all: FeatureSet  # every held-out image
  half_a: FeatureSet  # two disjoint halves (every other image of each digit),
  half_b: FeatureSet  # for the real-vs-real floor
  radii: np.ndarray  # k-NN radii of ``all`` for precision
  description: str


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise EvalError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
  return int(value)


def _real_images(data_config: Any) -> tuple[np.ndarray, np.ndarray, str]:
  """The held-out real digits of a run's data config: ``(images, labels, description)``."""
  source = data_config.get("source")
  if source != "mnist78":
    raise EvalError(
        f"evaluation needs held-out real images; it supports runs on the packaged MNIST "
        f"digits (data.source='mnist78'), not {source!r}")
  if data_config.get("split", "train") != "train":
    raise EvalError(f"the run trained on split {data_config.get('split')!r}; the held-out "
                    "reference is only disjoint from split 'train'")
  real = mnist_digits(tuple(data_config.get("digits", (7, 8))),
                      data_config.get("per_digit", 200), image_size=64, split="heldout",
                      channels=data_config.get("channels", 1))
  images = to_model_range(real.get(np.arange(len(real))))
  return images, np.asarray(real.labels), real.description


def _batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
  for start in range(0, len(images), batch_size):
    yield images[start:start + batch_size]


def generate_batches(generator: Any, variables: Any, z_dim: int, num_samples: int,
                     batch_size: int = 500, seed: int = 0,
                     devices: Optional[Sequence[jax.Device]] = None) -> Iterator[jax.Array]:
  """Yields eval-mode samples ``batch_size`` at a time (the last batch may be smaller).

  Sample ``i`` comes from noise ``normal(fold_in(fold_in(key(seed), salt), i))``,
  so the images do not depend on the batch size or the device count. Each
  batch is split over ``devices`` (default: all local devices); the batch is
  padded up to a multiple of their number and the padding dropped.

  Args:
    generator: the Flax generator module (``apply(variables, z)`` → images).
    variables: its eval-mode variables (``state.generator.variables()``).
    z_dim: latent size.
    num_samples: total images.
    batch_size: images per call (memory: the chapter's generator holds a
      1024×1024 attention map per image, 4 MB, during a call).
    seed: noise seed.
    devices: devices of this process to generate on.
  """
  mesh = sharding.make_mesh(list(devices) if devices is not None else jax.local_devices())
  num_devices = mesh.devices.size
  per_call = -(-batch_size // num_devices) * num_devices
  key = jax.random.fold_in(jax.random.PRNGKey(seed), NOISE_SALT)

  def sample(variables, indices):
    z = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (z_dim,)))(indices)
    return generator.apply(variables, z, train=False)

  replicated, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  sample = jax.jit(sample, in_shardings=(replicated, batched), out_shardings=batched)
  # Through the host: the state may live on another mesh (e.g. a multi-host training one).
  variables = jax.device_put(jax.device_get(variables), replicated)
  for start in range(0, num_samples, batch_size):
    n = min(batch_size, num_samples - start)
    indices = jax.device_put(np.arange(start, start + per_call, dtype=np.uint32), batched)
    images = sample(variables, indices)
    yield images if n == per_call else images[:n]


def _class_metrics(probs: np.ndarray, labels: Sequence[Any], digits: Sequence[int],
                   confidence: float) -> dict[str, Any]:
  """Share read as one of ``digits`` with probability ≥ ``confidence``; counts per digit."""
  columns = [list(labels).index(d) for d in digits]
  predicted = probs.argmax(axis=1)
  confident = probs.max(axis=1) >= confidence
  out: dict[str, Any] = {}
  counts = {}
  for d, c in zip(digits, columns):
    counts[d] = int(np.sum(confident & (predicted == c)))
  total = sum(counts.values())
  out["confident_fraction"] = total / len(probs)
  for d in digits:
    out[f"count_{d}"] = counts[d]
  for d in digits:
    out[f"share_{d}"] = counts[d] / total if total else None
  if len(digits) == 2:
    a, b = digits
    out[f"ratio_{a}_to_{b}"] = counts[a] / counts[b] if counts[b] else None
  return out


def _distances(real: FeatureSet, fake: FeatureSet, real_radii: Optional[np.ndarray],
               settings: Mapping[str, Any], seed: int) -> dict[str, Any]:
  mu_r, cov_r = stats.mean_cov(real.moments)
  mu_f, cov_f = stats.mean_cov(fake.moments)
  kid = metrics.kid(fake.features, real.features, num_subsets=settings["kid_subsets"],
                    subset_size=settings["kid_subset_size"], seed=seed)
  # Precision/recall assume sets of equal size: as many generated samples as real ones.
  n = min(len(real.features), len(fake.features))
  pr = metrics.precision_recall(real.features, fake.features[:n], k=settings["k"],
                                real_radii=real_radii)
  return {"fid": metrics.frechet_distance(mu_f, cov_f, mu_r, cov_r),
          "kid": kid.mean, "kid_std": kid.std,
          "precision": pr.precision, "recall": pr.recall}


class Evaluator:
  """Scores generators against one real reference with one feature extractor.

  Example (what `evaluate_run` does)::

    evaluator = Evaluator(config.data)                  # builds the real reference
    batches = generate_batches(generator, variables, config.model.z_dim, 10_000)
    result = evaluator.evaluate(batches)

  Args:
    data_config: the run's ``config.data`` (a ConfigDict or dict); the real
      reference is its held-out split.
    extractor: a `FeatureExtractor`; default the packaged `MnistClassifier`.
    batch_size: images per extractor call for the real reference.
    kid_subsets, kid_subset_size: KID's subsets (size capped by the set sizes).
    k: neighbourhood size of precision/recall.
    splits: splits of the classifier score.
    confidence: probability above which a sample counts as read as a digit.
    max_kept: generated samples whose features are kept for KID and
      precision/recall (FID uses streaming statistics of all samples).
    seed: KID's subset sampling.
  """

  def __init__(self, data_config: Any, extractor: Optional[FeatureExtractor] = None, *,
               batch_size: int = 500, kid_subsets: int = 100, kid_subset_size: int = 1000,
               k: int = 3, splits: int = 10, confidence: float = 0.9, max_kept: int = 10_000,
               seed: int = 0):
    if extractor is None:
      from sagan_jax.eval.mnist_classifier import MnistClassifier  # loads weights
      extractor = MnistClassifier()
    if not callable(extractor):
      raise EvalError(f"extractor must be callable, got {type(extractor).__name__}")
    if isinstance(data_config, ml_collections.ConfigDict):
      data_config = data_config.to_dict()
    self.data_config = dict(data_config)
    self.extractor = extractor
    self.digits = tuple(int(d) for d in self.data_config.get("digits", (7, 8)))
    self.batch_size = _positive_int(batch_size, "batch_size")
    if not 0 < confidence <= 1:
      raise EvalError(f"confidence must be in (0, 1], got {confidence!r}")
    self.settings = {
        "kid_subsets": _positive_int(kid_subsets, "kid_subsets"),
        "kid_subset_size": _positive_int(kid_subset_size, "kid_subset_size", 2),
        "k": _positive_int(k, "k"),
        "splits": _positive_int(splits, "splits"),
        "confidence": float(confidence),
        "max_kept": _positive_int(max_kept, "max_kept", 2),
    }
    self.seed = int(seed)
    self._real: Optional[RealReference] = None

  @property
  def extractor_name(self) -> str:
    return str(getattr(self.extractor, "name", type(self.extractor).__name__))

  def real_reference(self) -> RealReference:
    """The held-out real images' features (computed on first use)."""
    if self._real is None:
      images, labels, description = _real_images(self.data_config)
      # Two halves with the same mix of digits: every other image of each digit.
      half_a = np.concatenate([np.flatnonzero(labels == d)[0::2] for d in self.digits])
      half_b = np.concatenate([np.flatnonzero(labels == d)[1::2] for d in self.digits])
      full = extract(self.extractor, _batches(images, self.batch_size))
      if min(len(half_a), len(half_b)) <= self.settings["k"]:
        raise EvalError(f"k={self.settings['k']} needs more than {len(half_b)} real images "
                        "per half")

      def subset(index):
        probs = None if full.probs is None else full.probs[index]
        return FeatureSet(stats.of(full.features[index]), full.features[index], probs)

      self._real = RealReference(full, subset(half_a), subset(half_b),
                                 metrics.knn_radii(full.features, self.settings["k"]),
                                 description)
    return self._real

  def _classifier_metrics(self, probs: Optional[np.ndarray]) -> dict[str, Any]:
    if probs is None:
      return {}
    # A fixed shuffle first: the real images are sorted by digit, and the score's
    # consecutive splits assume samples in random order.
    shuffled = probs[np.random.default_rng(0).permutation(len(probs))]
    score = metrics.classifier_score(shuffled, min(self.settings["splits"], len(probs)))
    out = {"classifier_score": score.mean, "classifier_score_std": score.std}
    labels = getattr(self.extractor, "labels", None)
    if labels is not None and all(d in list(labels) for d in self.digits):
      out.update(_class_metrics(probs, labels, self.digits, self.settings["confidence"]))
    return out

  def evaluate(self, image_batches: Any) -> dict[str, Any]:
    """Metrics of generated images (an iterable of batches in [-1, 1]) vs the real reference."""
    start = time.monotonic()
    real = self.real_reference()
    fake = extract(self.extractor, image_batches, keep=self.settings["max_kept"])
    if fake.count < 2:
      raise EvalError(f"need at least 2 generated samples, got {fake.count}")
    result: dict[str, Any] = {"num_samples": fake.count, "num_real": real.all.count}
    result.update(_distances(real.all, fake, real.radii, self.settings, self.seed))
    result.update(self._classifier_metrics(fake.probs))
    floor = {"num_per_half": min(real.half_a.count, real.half_b.count)}
    floor.update(_distances(real.half_a, real.half_b, None, self.settings, self.seed))
    floor.update(self._classifier_metrics(real.all.probs))
    result["real"] = floor
    result.update(extractor=self.extractor_name, digits=list(self.digits),
                  real_data=real.description, settings=dict(self.settings),
                  seconds=round(time.monotonic() - start, 2))
    return result


_NOT_SCALARS = ("step", "seed", "seconds", "num_samples", "num_real", "num_per_half")


def scalars(result: Mapping[str, Any], prefix: str = "eval/") -> dict[str, float]:
  """The numeric entries of a result as TensorBoard scalars (``eval/fid``, ``eval/real/fid``)."""
  out = {}
  for key, value in result.items():
    if isinstance(value, Mapping):
      if key == "real":
        out.update(scalars(value, f"{prefix}real/"))
    elif (isinstance(value, (int, float)) and not isinstance(value, bool)
          and key not in _NOT_SCALARS and math.isfinite(value)):
      out[prefix + key] = float(value)
  return out


def _write_json_atomic(path: str, payload: Mapping[str, Any]) -> None:
  atomic_write(path, (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode())


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


def write_results(workdir: str, result: Mapping[str, Any],
                  writer: Optional[MetricWriter] = None) -> str:
  """Writes ``<workdir>/eval/eval_<step:06d>.json`` atomically, and scalars to ``writer``.

  Args:
    workdir: the run's workdir.
    result: from `Evaluator.evaluate` / `evaluate_run`, with a ``step``.
    writer: where the ``eval/*`` scalars go; None opens (and closes) a
      `MetricWriter` on ``workdir``, beside the training curves.

  Returns:
    The JSON file's path.
  """
  step = int(result["step"])
  path = os.path.join(workdir, EVAL_DIR, f"eval_{step:06d}.json")
  _write_json_atomic(path, _json_safe(dict(result)))
  if writer is not None:
    writer.write_scalars(step, scalars(result))
  else:
    with MetricWriter(workdir) as own:
      own.write_scalars(step, scalars(result))
  return path


def evaluate_run(workdir: str, num_samples: int = 10_000, batch_size: int = 500,
                 step: Optional[int] = None, seed: int = 0,
                 extractor: Optional[FeatureExtractor] = None, write: bool = True,
                 **evaluator_options: Any) -> dict[str, Any]:
  """Evaluates the checkpoint at ``step`` (default: latest) of a training workdir.

  Args:
    workdir: a training workdir (``config.json`` and ``checkpoints/``).
    num_samples: generated images.
    batch_size: images per generator and extractor call.
    step: checkpoint step; None for the latest.
    seed: noise seed of the generated images (and KID's subsets).
    extractor: a `FeatureExtractor`; default the packaged MNIST classifier.
    write: write ``<workdir>/eval/eval_<step>.json`` and TensorBoard scalars.
    **evaluator_options: `Evaluator`'s keyword arguments (``kid_subsets``,
      ``k``, ``splits``, ``confidence``, ``max_kept``, ...).

  Returns:
    The metrics (see module docstring), with ``step``, ``workdir`` and,
    when written, ``path``.

  Raises:
    FileNotFoundError: no config or checkpoint in ``workdir``.
    EvalError: bad arguments, or a run without a held-out reference.
  """
  from sagan_jax.train.sampling import load_run  # pylint: disable=g-import-not-at-top

  num_samples = _positive_int(num_samples, "num_samples", 2)
  batch_size = _positive_int(batch_size, "batch_size")
  if step is not None:
    step = _positive_int(step, "step", 0)
  run = load_run(workdir, step)
  result = {"step": int(run.step), "workdir": os.path.abspath(workdir), "seed": seed}
  result.update(evaluate_generator(run.generator, run.state.generator.variables(), run.config,
                                   num_samples=num_samples, batch_size=batch_size, seed=seed,
                                   extractor=extractor, **evaluator_options))
  if write:
    result["path"] = write_results(workdir, result)
  return result


def evaluate_generator(generator: Any, variables: Any, config: Any, *, num_samples: int = 10_000,
                       batch_size: int = 500, seed: int = 0,
                       extractor: Optional[FeatureExtractor] = None,
                       **evaluator_options: Any) -> dict[str, Any]:
  """The metrics of ``generator`` with eval-mode ``variables`` (any source: a
  checkpoint, a converted PyTorch ``state_dict``) against ``config.data``'s
  held-out real images; arguments as `evaluate_run`'s."""
  num_samples = _positive_int(num_samples, "num_samples", 2)
  batch_size = _positive_int(batch_size, "batch_size")
  evaluator = Evaluator(config.data, extractor, batch_size=batch_size, seed=seed,
                        **evaluator_options)
  batches = generate_batches(generator, variables, config.model.z_dim, num_samples, batch_size,
                             seed)
  return evaluator.evaluate(batches)


def evaluate_torch_generator(path: str, config: Any, *, num_samples: int = 10_000,
                             batch_size: int = 500, seed: int = 0, write: bool = True,
                             **options: Any) -> dict[str, Any]:
  """Scores a PyTorch chapter ``Generator`` saved as a ``state_dict`` (``torch.save``).

  The weights go through `sagan_jax.interop.torch.from_torch` into our
  ``Generator64`` built from ``config.model`` (which must be the chapter's
  architecture), so a PyTorch run and ours are scored by the same code on the
  same noise. Writes ``<path without .pt>_eval.json`` beside the file.

  Raises:
    FileNotFoundError: no file at ``path``.
    ImportError: torch is not installed (it reads the file).
    EvalError: the file is not a state_dict of the chapter's generator.
  """
  import torch  # pylint: disable=g-import-not-at-top  # optional dependency

  from sagan_jax.interop.torch import from_torch  # pylint: disable=g-import-not-at-top
  from sagan_jax.models import build_gan  # pylint: disable=g-import-not-at-top

  if not os.path.isfile(path):
    raise FileNotFoundError(f"no PyTorch generator file at {path}")
  try:
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # torch raises several types for unreadable files
    raise EvalError(f"cannot read {path} as a PyTorch state_dict: {error}") from error
  if not isinstance(state_dict, Mapping):
    raise EvalError(f"{path} holds a {type(state_dict).__name__}, not a state_dict")
  generator, _ = build_gan(config.model, config.data.channels)
  try:
    variables = from_torch(generator, {k: v.numpy() for k, v in state_dict.items()})
  except (KeyError, ValueError, TypeError) as error:
    raise EvalError(f"{path} is not the chapter generator's state_dict: {error}") from error
  result = {"torch_generator": os.path.abspath(path), "seed": seed}
  result.update(evaluate_generator(generator, variables, config, num_samples=num_samples,
                                   batch_size=batch_size, seed=seed, **options))
  if write:
    out = os.path.splitext(path)[0] + "_eval.json"
    _write_json_atomic(out, _json_safe(result))
    result["path"] = out
  return result


def _fmt(value: Any, std: Any = None) -> str:
  if value is None:
    return "-"
  if isinstance(value, int) and not isinstance(value, bool):
    return str(value)
  text = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
  if std is not None:
    text += f" ± {std:.2g}"
  return text


def format_table(result: Mapping[str, Any]) -> str:
  """The console table of a result: generated vs the real reference."""
  real = result.get("real", {})
  rows = [("FID", "fid", None), ("KID", "kid", "kid_std"), ("precision", "precision", None),
          ("recall", "recall", None),
          ("classifier score", "classifier_score", "classifier_score_std"),
          ("confident (p ≥ {:g})".format(result.get("settings", {}).get("confidence", 0.9)),
           "confident_fraction", None)]
  digits = result.get("digits", [])
  rows += [(f"  share of {d}", f"share_{d}", None) for d in digits]
  if len(digits) == 2:
    rows.append((f"  ratio {digits[0]}:{digits[1]}", f"ratio_{digits[0]}_to_{digits[1]}", None))
  source = (f"step {result['step']}" if "step" in result
            else os.path.basename(str(result.get("torch_generator", "generator"))))
  lines = [f"{source}: {result.get('num_samples')} samples vs "
           f"{result.get('num_real')} held-out real ({result.get('extractor')} features)",
           f"{'metric':<24}{'generated':>20}{'real vs real':>20}"]
  for label, key, std in rows:
    if key not in result:
      continue
    lines.append(f"{label:<24}{_fmt(result[key], result.get(std) if std else None):>20}"
                 f"{_fmt(real.get(key), real.get(std) if std else None):>20}")
  lines.append(f"(real vs real: FID/KID/precision/recall between two halves of "
               f"{real.get('num_per_half')} images; classifier rows on all held-out images)")
  return "\n".join(lines)
