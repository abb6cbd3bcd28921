"""Score generated images against a real reference: FID, KID, precision/recall, classifier readings.

`Evaluator` holds a feature extractor and the features of a set of real
images (computed once), and scores any stream of generated image batches
against them, returning a flat dict of metrics:

* ``fid``, ``kid`` (± ``kid_std``), ``precision``, ``recall``: generated vs
  real features (`sagan_jax.eval.metrics`);
* ``classifier_score`` (± std over ``splits``, default 10) and
  ``classifier_score_1split``: the Inception-Score formula on the extractor's
  class probabilities (named ``inception_score…`` for the FID Inception:
  an extractor's ``score_name``);
* ``confident_fraction``: share of samples the classifier reads as one of
  the expected ``classes`` with probability ≥ ``confidence``; ``count_<c>`` and
  ``share_<c>`` per class among those, and ``ratio_<a>_to_<b>`` for two;
* what a classifier reading hides — never reported without it: ``recall_<c>``,
  the share of class ``c``'s real images that the generated samples cover
  (k-NN recall against that class alone), ``spread_ratio``, the generated
  features' total variance over the real ones' (≈ 1 for real data, 0 for one
  repeated image), and ``collapsed`` with ``collapse_reasons`` when the output
  is a collapsed or class-missing set however confidently it is read (flat grey
  images are read as an 8 with p ≥ 0.9 more often than real digits are);
* ``conditional_accuracy`` (and ``/<c>``), ``intra_fid`` (and ``/<c>``): when
  the samples come with the classes they were drawn for (a class-conditional
  generator; `sagan_jax.eval.conditional`), the share read as that class and
  the per-class FID against the real images of the class;
* ``real``: the same metrics for real data — distances between two disjoint
  halves of the real images (the floor a perfect generator would reach at
  that sample size) and the classifier readings of all of them.

``metrics`` (`METRICS`; default all) names what is computed — ``fid``;
``is`` (the classifier score and, with held-out images, the class readings
and what they hide); ``kid``; ``precision_recall`` (precision, recall and,
with held-out images, what the readings hide); ``conditional`` (conditional
accuracy, intra-FID) — the rest is skipped: KID's subsets and the k-NN of
precision/recall are the slow parts at 10,000+ samples.

`Evaluator.evaluate` is `Evaluator.measure` (extract the samples' features)
then `Evaluator.score` (the metrics); between them the measurements of
disjoint shares of the samples merge (`sagan_jax.eval.measurement`), so
several processes can each measure a share.

The real side is either images (`RealImages`, features computed once) or a
dataset's precomputed statistics (`ReferenceStats`, e.g. pytorch-fid's
training-set ``.npz``: the standard protocol). Against statistics there is no
real-vs-real floor, and KID and precision/recall need the file's
``features``.

It knows no trainer, checkpoint or config: where the images come from (a
run's generator, a PyTorch one, a folder) is the caller's business
(`sagan_jax.runs.evaluation`). `scalars` and `format_table` render a result.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Iterator, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from sagan_jax.checks import require_int
from sagan_jax.eval import conditional, metrics, stats
from sagan_jax.eval.errors import EvalError
from sagan_jax.eval.features import FeatureExtractor, FeatureSet, extract
from sagan_jax.eval.measurement import Measurement
from sagan_jax.eval.mnist_classifier import MnistClassifier
from sagan_jax.eval.reference_stats import ReferenceStats

__all__ = ["Evaluator", "METRICS", "PRECISION_RECALL_K", "RealImages", "RealReference",
           "check_metrics", "format_table", "min_generated_samples", "scalars"]

# What ``metrics`` can name (train/config.py's EVAL_METRICS; a test keeps the two equal).
METRICS = ("fid", "is", "kid", "precision_recall", "conditional")


def check_metrics(metrics: Any) -> tuple[str, ...]:
  """``metrics`` as a tuple of `METRICS` names; one-line `EvalError` for anything else."""
  if isinstance(metrics, str):
    metrics = [m for m in metrics.split(",") if m]
  if not isinstance(metrics, (tuple, list)) or not metrics:
    raise EvalError(f"metrics must name at least one of {list(METRICS)}, got {metrics!r}")
  unknown = [m for m in metrics if m not in METRICS]
  if unknown:
    raise EvalError(f"unknown metric {unknown[0]!r}; choose from {list(METRICS)}")
  return tuple(dict.fromkeys(metrics))

PRECISION_RECALL_K = 3  # neighbourhood size of precision/recall (k = 3 in Kynkäänniemi et al.)


def min_generated_samples(k: int = PRECISION_RECALL_K) -> int:
  """The fewest generated samples every metric can use: precision/recall's k-NN
  radius of a sample needs k *other* samples (k + 1 in all); KID needs 2."""
  return max(2, k + 1)



class RealReference(NamedTuple):
  """Features of the held-out real images, computed once per `Evaluator`."""
  all: FeatureSet  # every held-out image
  half_a: FeatureSet  # two disjoint halves (every other image of each digit),
  half_b: FeatureSet  # for the real-vs-real floor
  radii: Optional[np.ndarray]  # k-NN radii of ``all`` for precision (None: not computed)
  description: str


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
  return require_int(value, name, minimum, EvalError)


def _halves(labels: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """Two disjoint halves with the same mix of classes: every other image of each class."""
  return tuple(np.concatenate([np.flatnonzero(labels == c)[start::2] for c in classes])
               for start in (0, 1))


def _batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
  for start in range(0, len(images), batch_size):
    yield images[start:start + batch_size]


def _class_metrics(probs: np.ndarray, labels: Sequence[Any], classes: Sequence[int],
                   confidence: float) -> dict[str, Any]:
  """Share read as one of ``classes`` with probability ≥ ``confidence``; counts per class."""
  predicted = probs.argmax(axis=1)
  confident = probs.max(axis=1) >= confidence
  counts = {c: int(np.sum(confident & (predicted == list(labels).index(c)))) for c in classes}
  total = sum(counts.values())
  out: dict[str, Any] = {"confident_fraction": total / len(probs)}
  out.update({f"count_{c}": counts[c] for c in classes})
  out.update({f"share_{c}": counts[c] / total if total else None for c in classes})
  if len(classes) == 2:
    a, b = classes
    out[f"ratio_{a}_to_{b}"] = counts[a] / counts[b] if counts[b] else None
  return out


def _distances(real: FeatureSet | ReferenceStats, fake: FeatureSet,
               real_radii: Optional[np.ndarray], settings: Mapping[str, Any],
               seed: int) -> dict[str, Any]:
  """The distances of ``settings["metrics"]`` between generated and real features."""
  if isinstance(real, ReferenceStats):
    (mu_r, cov_r), real_features = (real.mu, real.sigma), real.features
  else:
    (mu_r, cov_r), real_features = stats.mean_cov(real.moments), real.features
  wanted = settings["metrics"]
  out: dict[str, Any] = {}
  if "fid" in wanted:
    mu_f, cov_f = stats.mean_cov(fake.moments)
    out["fid"] = metrics.frechet_distance(mu_f, cov_f, mu_r, cov_r)
  if real_features is None:  # statistics without features: FID only
    return out
  if "kid" in wanted:
    kid = metrics.kid(fake.features, real_features, num_subsets=settings["kid_subsets"],
                      subset_size=settings["kid_subset_size"], seed=seed)
    out.update({"kid": kid.mean, "kid_std": kid.std})
  if "precision_recall" in wanted:
    # Precision/recall assume sets of equal size: as many generated samples as real ones.
    n = min(len(real_features), len(fake.features))
    pr = metrics.precision_recall(real_features, fake.features[:n], k=settings["k"],
                                  real_radii=real_radii)
    out.update({"precision": pr.precision, "recall": pr.recall})
  return out


class RealImages(NamedTuple):
  """The real side of an evaluation."""
  images: np.ndarray  # float (n, H, W, C) in [-1, 1]
  labels: np.ndarray  # int (n,): each image's class
  description: str  # one line for the report


# Output collapse, as flagged beside the classifier readings: a spread of the samples'
# features below a quarter of the real data's, or a class whose real images the samples
# cover less than a tenth of. (Real vs real: spread ≈ 1, recall per class ≈ 0.9; the
# chapter's run at its worst checkpoint: recall 0.46 overall.)
COLLAPSED_SPREAD = 0.25
MISSING_CLASS_RECALL = 0.1


def _diversity(real: FeatureSet, fake: FeatureSet, real_labels: np.ndarray,
               classes: Sequence[int], k: int) -> dict[str, Any]:
  """Per-class recall, the spread ratio, and the collapse flag (see the module docstring)."""
  out: dict[str, Any] = {}
  n = min(len(real.features), len(fake.features))
  for c in classes:
    real_c = real.features[real_labels == c]
    if len(real_c) > k and n > k:
      out[f"recall_{c}"] = metrics.precision_recall(real_c, fake.features[:n], k=k).recall
  spread = lambda moments: float(np.trace(stats.mean_cov(moments)[1]))
  out["spread_ratio"] = spread(fake.moments) / max(spread(real.moments), 1e-30)
  reasons = []
  if out["spread_ratio"] < COLLAPSED_SPREAD:
    reasons.append(f"samples spread {out['spread_ratio']:.2f}× the real data's features "
                   f"(< {COLLAPSED_SPREAD})")
  for c in classes:
    recall = out.get(f"recall_{c}")
    if recall is not None and recall < MISSING_CLASS_RECALL:
      reasons.append(f"the samples cover {recall:.0%} of the real {c}s (< "
                     f"{MISSING_CLASS_RECALL:.0%})")
  out["collapsed"] = bool(reasons)
  out["collapse_reasons"] = reasons
  return out


class Evaluator:
  """Scores generators against one set of real images with one feature extractor.

  Example (what `sagan_jax.runs.evaluation.evaluate_generator` does)::

    evaluator = Evaluator(RealImages(images, labels, "held-out 7s and 8s"), classes=(7, 8))
    result = evaluator.evaluate(batches)   # any iterable of (B, H, W, C) in [-1, 1]

  Args:
    real: the real images, their classes and a description; or a dataset's
      `ReferenceStats` (made with the same extractor); or None for an evaluator
      that only measures (`measure`: another process scores).
    classes: the classes a generated image should be read as (the
      ``confident_fraction`` and ``share_<c>`` readings; the real halves of
      the floor keep the same mix of them).
    extractor: a `FeatureExtractor`; default the packaged `MnistClassifier`.
    batch_size: images per extractor call for the real images.
    kid_subsets, kid_subset_size: KID's subsets (size capped by the set sizes).
    k: neighbourhood size of precision/recall.
    splits: splits of the classifier score (it is also reported with 1 split).
    confidence: probability above which a sample counts as read as a class.
    max_kept: generated samples whose features are kept for KID and
      precision/recall (FID uses streaming statistics of all samples).
    seed: KID's subset sampling.
    metrics: what to compute (`METRICS`; default all of them).
    per_class_reference: whether the scoring side holds real images of each class
      (intra-FID; then `measure` keeps each class's feature moments). Default: whether
      ``real`` is `RealImages`; a measuring-only evaluator (``real=None``) is told.
  """

  def __init__(self, real: Optional[RealImages | ReferenceStats], classes: Sequence[int],
               extractor: Optional[FeatureExtractor] = None, *,
               batch_size: int = 500, kid_subsets: int = 100, kid_subset_size: int = 1000,
               k: int = PRECISION_RECALL_K, splits: int = 10, confidence: float = 0.9,
               max_kept: int = 10_000,
               seed: int = 0, metrics: Sequence[str] = METRICS,
               per_class_reference: Optional[bool] = None):
    extractor = MnistClassifier() if extractor is None else extractor
    if not callable(extractor):
      raise EvalError(f"extractor must be callable, got {type(extractor).__name__}")
    self.real = real
    self.per_class_reference = (isinstance(real, RealImages) if per_class_reference is None
                                else bool(per_class_reference))
    self.extractor = extractor
    self.classes = tuple(int(c) for c in classes)
    self.batch_size = _positive_int(batch_size, "batch_size")
    if not 0 < confidence <= 1:
      raise EvalError(f"confidence must be in (0, 1], got {confidence!r}")
    self.settings = {
        "kid_subsets": _positive_int(kid_subsets, "kid_subsets"),
        "kid_subset_size": _positive_int(kid_subset_size, "kid_subset_size", 2),
        "k": _positive_int(k, "k"),
        "splits": _positive_int(splits, "splits"),
        "confidence": float(confidence),
        "max_kept": _positive_int(max_kept, "max_kept", min_generated_samples(k)),
        "metrics": list(check_metrics(metrics)),
    }
    self.seed = int(seed)
    self._real: Optional[RealReference] = None
    self._stats_radii: Optional[np.ndarray] = None  # k-NN radii of a ReferenceStats' features

  @property
  def extractor_name(self) -> str:
    return str(getattr(self.extractor, "name", type(self.extractor).__name__))

  @property
  def score_name(self) -> str:
    """The result key of the classifier score (``'inception_score'`` for the FID Inception)."""
    return str(getattr(self.extractor, "score_name", "classifier_score"))

  def _check_statistics(self, reference: ReferenceStats, fake: FeatureSet) -> None:
    if reference.extractor is not None and reference.extractor != self.extractor_name:
      raise EvalError(f"the reference statistics were made with {reference.extractor!r} "
                      f"features, this evaluation uses {self.extractor_name!r}")
    if reference.dim != fake.moments.mean.shape[0]:
      raise EvalError(f"the reference statistics hold {reference.dim}-d features, "
                      f"{self.extractor_name!r} gives {fake.moments.mean.shape[0]}-d ones: "
                      "they come from another network")
    if reference.features is not None and len(reference.features) <= self.settings["k"]:
      raise EvalError(f"k={self.settings['k']} needs more than {len(reference.features)} "
                      "reference features")

  def real_reference(self) -> RealReference | ReferenceStats:
    """The real images' features (computed on first use), or the reference statistics."""
    if isinstance(self.real, ReferenceStats):
      return self.real
    if self._real is None:
      images, labels, description = self.real
      half_a, half_b = _halves(labels, self.classes)
      full = extract(self.extractor, _batches(images, self.batch_size))
      if min(len(half_a), len(half_b)) <= self.settings["k"]:
        raise EvalError(f"k={self.settings['k']} needs more than {len(half_b)} real images "
                        "per half")

      def subset(index):
        probs = None if full.probs is None else full.probs[index]
        return FeatureSet(stats.of(full.features[index]), full.features[index], probs)

      radii = (metrics.knn_radii(full.features, self.settings["k"])
               if "precision_recall" in self.settings["metrics"] else None)
      self._real = RealReference(full, subset(half_a), subset(half_b), radii, description)
    return self._real

  def _classifier_metrics(self, probs: Optional[np.ndarray]) -> dict[str, Any]:
    if probs is None or "is" not in self.settings["metrics"]:
      return {}
    # A fixed shuffle first: the real images are sorted by digit, and the score's
    # consecutive splits assume samples in random order.
    shuffled = probs[np.random.default_rng(0).permutation(len(probs))]
    score = metrics.classifier_score(shuffled, min(self.settings["splits"], len(probs)))
    name = self.score_name
    out = {name: score.mean, f"{name}_std": score.std,
           f"{name}_1split": metrics.classifier_score(probs, 1).mean}
    labels = getattr(self.extractor, "labels", None)
    if labels is not None and all(c in list(labels) for c in self.classes):
      out.update(_class_metrics(probs, labels, self.classes, self.settings["confidence"]))
    return out

  def _conditional_metrics(self, tally: conditional.ClassCounts, real: RealReference,
                           floor: dict[str, Any]) -> dict[str, Any]:
    """Conditional accuracy and intra-FID of ``tally``; their real floors go to ``floor``
    (the classifier on the real images of each class; FID between the halves of each)."""
    labels = np.asarray(self.real.labels)
    features = real.all.features
    out: dict[str, Any] = {}
    if tally.correct:
      out.update(conditional.accuracy(tally.correct, tally.count, self.classes))
      floor.update(conditional.real_readings(real.all.probs, labels,
                                             getattr(self.extractor, "labels", None),
                                             self.classes))
    out.update(conditional.intra_fid(tally.moments,
                                     conditional.class_moments(features, labels, self.classes),
                                     self.classes))
    halves = [{c: stats.of(features[np.flatnonzero(labels == c)[part::2]]) for c in self.classes}
              for part in (0, 1)]
    floor.update(conditional.intra_fid(halves[0], halves[1], self.classes))
    return out

  def _wants(self, *names: str) -> bool:
    return any(name in self.settings["metrics"] for name in names)

  def measure(self, image_batches: Any, expected: Optional[Sequence[Any]] = None
              ) -> Measurement:
    """Features of generated images (an iterable of batches in [-1, 1]): what `score` reads.

    Keeps the first ``max_kept`` samples' features only where a chosen metric needs
    them (KID, precision/recall, the readings beside the classifier's), and the class
    probabilities only for ``is``. ``expected``: see `evaluate`.
    """
    keep = self.settings["max_kept"] if self._wants("kid", "precision_recall", "is") else 0
    # Intra-FID needs the real images of each class; reference statistics hold none.
    tally = (conditional.ClassTally(self.extractor, expected,
                                    class_moments=self.per_class_reference)
             if expected is not None and self._wants("conditional") else None)
    fake = extract(tally or self.extractor, image_batches, keep=keep)
    if not self._wants("is"):
      fake = fake._replace(probs=None)
    return Measurement(fake, None if tally is None else tally.counts())

  def score(self, measured: Measurement) -> dict[str, Any]:
    """The chosen metrics of a `measure` result (or a `merge` of several) vs the real
    reference."""
    if self.real is None:
      raise EvalError("this evaluator only measures (real=None): score on the process that "
                      "holds the real reference")
    start = time.monotonic()
    real = self.real_reference()
    fake, tally = measured.features, measured.classes
    if fake.count < min_generated_samples(self.settings["k"]):
      raise EvalError(f"need at least {min_generated_samples(self.settings['k'])} generated "
                      f"samples (precision/recall with k={self.settings['k']}), got {fake.count}")
    result: dict[str, Any] = {"num_samples": fake.count}
    if isinstance(real, ReferenceStats):
      self._check_statistics(real, fake)
      if (self._stats_radii is None and real.features is not None
          and self._wants("precision_recall")):
        self._stats_radii = metrics.knn_radii(real.features, self.settings["k"])
      result["num_real"] = real.num_images
      result.update(_distances(real, fake, self._stats_radii, self.settings, self.seed))
      if tally is not None and tally.correct:  # statistics hold no classes: no intra-FID
        result.update(conditional.accuracy(tally.correct, tally.count, self.classes))
    else:
      result["num_real"] = real.all.count
      result.update(_distances(real.all, fake, real.radii, self.settings, self.seed))
    result.update(self._classifier_metrics(fake.probs))
    if not isinstance(real, ReferenceStats):
      labels = np.asarray(self.real.labels)
      diversity = self._wants("is", "precision_recall")  # beside the classifier's readings
      if diversity:
        result.update(_diversity(real.all, fake, labels, self.classes, self.settings["k"]))
      floor = {"num_per_half": min(real.half_a.count, real.half_b.count)}
      floor.update(_distances(real.half_a, real.half_b, None, self.settings, self.seed))
      floor.update(self._classifier_metrics(real.all.probs))
      if diversity:
        floor.update(_diversity(real.half_a, real.half_b,
                                labels[_halves(labels, self.classes)[0]], self.classes,
                                self.settings["k"]))
      if tally is not None:
        result.update(self._conditional_metrics(tally, real, floor))
      result["real"] = floor
    result.update(extractor=self.extractor_name, classes=list(self.classes),
                  real_data=real.description, settings=dict(self.settings),
                  seconds=round(time.monotonic() - start, 2))
    return result

  def evaluate(self, image_batches: Any, expected: Optional[Sequence[Any]] = None
               ) -> dict[str, Any]:
    """Metrics of generated images (an iterable of batches in [-1, 1]) vs the real reference.

    ``expected``: for a class-conditional generator, the class each sample was
    drawn for (values of ``classes``, in batch order); adds the conditional
    accuracy and intra-FID (``conditional`` among the metrics).
    """
    start = time.monotonic()
    result = self.score(self.measure(image_batches, expected))
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


_NOT_SCALARS = ("step", "seed", "seconds", "num_samples", "num_real", "num_per_half")


def scalars(result: Mapping[str, Any], prefix: str = "eval/") -> dict[str, float]:
  """The numeric entries of a result as TensorBoard scalars (``eval/fid``, ``eval/real/fid``)."""
  out = {}
  for key, value in result.items():
    if isinstance(value, Mapping):
      if key == "real":
        out.update(scalars(value, f"{prefix}real/"))
    elif key == "collapsed":
      out[prefix + key] = float(value)  # 1.0 when flagged: a step to find in TensorBoard
    elif (isinstance(value, (int, float)) and not isinstance(value, bool)
          and key not in _NOT_SCALARS and math.isfinite(value)):
      out[prefix + key] = float(value)
  return out


# The name each feature network goes by for users (evaluate.py --features, the table, report
# file names). The networks' own names (``extractor`` in a result and in reference
# statistics files, which are compared on load) stay as they are.
FEATURES_BY_EXTRACTOR = {"mnist_classifier": "mnist", "fid_inception": "inception"}


def features_name(extractor: Any) -> str:
  """The user-facing name (``--features``) of the feature network named ``extractor``."""
  return FEATURES_BY_EXTRACTOR.get(str(extractor), str(extractor))


def _fmt(value: Any, std: Any = None) -> str:
  if value is None:
    return "-"
  if isinstance(value, int) and not isinstance(value, bool):
    return str(value)
  small = abs(value) < 1e-3 and value != 0
  text = f"{value:.2e}" if small else f"{value:.4g}"
  if std is not None:
    # The std to the value's last shown digit: a spread below it is summation-order
    # noise (e.g. KID of real vs real, where every subset is the whole set), shown as 0.
    last_digit = (10.0 ** (math.floor(math.log10(abs(value))) - (2 if small else 3))
                  if value != 0 else 0.0)
    text += " ± 0" if std < last_digit / 2 else f" ± {std:.2g}"
  return text


def format_table(result: Mapping[str, Any]) -> str:
  """The console table of a result: generated vs the real reference."""
  real = result.get("real")
  splits = result.get("settings", {}).get("splits", 10)
  rows = [("FID", "fid", None), ("KID", "kid", "kid_std"), ("precision", "precision", None),
          ("recall", "recall", None)]
  for name, label in (("classifier_score", "classifier score"),
                      ("inception_score", "Inception score")):
    rows += [(f"{label} ({splits} splits)", name, f"{name}_std"),
             (f"{label} (1 split)", f"{name}_1split", None)]
  rows.append(("confident (p ≥ {:g})".format(result.get("settings", {}).get("confidence", 0.9)),
               "confident_fraction", None))
  classes = result.get("classes", [])
  rows += [(f"  share of {c}", f"share_{c}", None) for c in classes]
  if "intra_fid" in result:
    rows += [("conditional accuracy", "conditional_accuracy", None),
             ("intra-FID (mean)", "intra_fid", None)]
    for c in classes:
      rows += [(f"  class {c}: accuracy", f"conditional_accuracy/{c}", None),
               (f"  class {c}: intra-FID", f"intra_fid/{c}", None)]
  if len(classes) == 2:
    a, b = classes
    rows.append((f"  ratio {a}:{b}", f"ratio_{a}_to_{b}", None))
  # What a confident reading can hide: coverage of each class and the samples' spread.
  rows += [(f"  recall of the {c}s", f"recall_{c}", None) for c in classes]
  rows.append(("  spread (÷ real)", "spread_ratio", None))
  source = (os.path.basename(str(result["torch_generator"])) if "torch_generator" in result
            else f"step {result['step']}" if "step" in result else "generator")
  if real is None:  # against reference statistics
    lines = [f"{source}: {result.get('num_samples')} samples vs {result.get('real_data')} "
             f"({features_name(result.get('extractor'))} features)",
             f"{'metric':<28}{'generated':>20}"]
  else:
    lines = [f"{source}: {result.get('num_samples')} samples vs "
             f"{result.get('num_real')} held-out real ({features_name(result.get('extractor'))} "
             "features)",
             f"{'metric':<28}{'generated':>20}{'real vs real':>20}"]
  for label, key, std in rows:
    if key not in result:
      continue
    line = f"{label:<28}{_fmt(result[key], result.get(std) if std else None):>20}"
    if real is not None:
      line += f"{_fmt(real.get(key), real.get(std) if std else None):>20}"
    lines.append(line)
  if real is not None:
    lines.append(f"(real vs real: FID/KID/precision/recall between two halves of "
                 f"{real.get('num_per_half')} images; classifier rows on all held-out images)")
  if result.get("collapsed"):
    lines.append("COLLAPSED OUTPUT — the classifier rows above do not mean quality: "
                 + "; ".join(result.get("collapse_reasons", [])))
  return "\n".join(lines)
