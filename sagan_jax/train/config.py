"""The run config: every field with its default, and validation.

This is the only home of a default. ``configs/*.py`` start from
``base_config()`` (which *is* the chapter's recipe) and override fields; the
data factory, the model registry and evaluation read what they need from the
config and keep no defaults of their own. ``validate`` runs before any
compute and turns a bad value into one clear error.

Sections: ``model`` (which network, how it computes), ``data`` (what to
read: the source and its fields), ``batching`` (how to batch it),
``optimizer``, ``logging`` (where metrics go), ``eval`` (evaluation during
training and after); the rest are the run's length and cadence.

Values derived from a config are computed here once (`image_shape`, `total_steps`,
`ema_settings`, `uses_ema`), so the trainer, sampling and evaluation agree on them.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Optional

import ml_collections
from ml_collections import config_dict

from sagan_jax import models
from sagan_jax.checks import require_int
from sagan_jax.data import SOURCE_NAMES
from sagan_jax.data.transforms import CROPS, RANDOM_CROP_SOURCES
from sagan_jax.losses import LOSSES
from sagan_jax.train.ema import EmaSettings

CONV_IMPLEMENTATIONS = ("auto", "gemm", "xla")
HELDOUT_SOURCES = ("mnist78", "mnist")  # sources with held-out real images to evaluate against
COMPUTE_DTYPES = ("float32", "bfloat16")
# Metric backends (sagan_jax/runtime/writer_factory.py builds them; a test keeps the two equal).
WRITER_NAMES = ("tensorboard", "csv", "jsonl", "wandb")
EVAL_FEATURES = ("mnist", "inception")  # the feature networks evaluation knows
# Metrics best_checkpoint/ can select by, and whether lower is better.
BEST_METRICS = {"fid": "lower", "kid": "lower", "precision": "higher", "recall": "higher",
                "inception_score": "higher", "classifier_score": "higher"}
# What config.eval.metrics can name (sagan_jax/eval/evaluator.py's METRICS; a test keeps the
# two equal), and which of them computes each BEST_METRICS entry.
EVAL_METRICS = ("fid", "is", "kid", "precision_recall", "conditional")
METRIC_OF_BEST = {"fid": "fid", "kid": "kid", "precision": "precision_recall",
                  "recall": "precision_recall", "inception_score": "is",
                  "classifier_score": "is"}


class ConfigError(ValueError):
  """A config value that cannot work; raised before any compute."""


def base_config() -> ml_collections.ConfigDict:
  """Defaults: the chapter's SAGAN on MNIST 7s and 8s (see configs/mnist78.py)."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = "chapter64"
  c.model.z_dim = 20
  c.model.width = 64  # the chapter's image_size: a channel multiplier
  # Blocked attention with at most this many query rows a block (None: materialized).
  c.model.attention_chunk_size = 1024
  c.model.conv_implementation = "auto"
  # Activations and matmuls in bfloat16 (parameters, optimizer state, BatchNorm
  # statistics and losses stay float32).
  c.model.compute_dtype = "float32"
  # The paper's ResNet SAGAN (model.name='resnet', sagan_jax/models/resnet.py). These
  # defaults are its released code's; configs/cifar10.py shows StudioGAN's.
  c.model.num_classes = config_dict.placeholder(int)  # class-conditional G and D; None: not
  c.model.d_width = config_dict.placeholder(int)  # D's channel unit; None: model.width
  c.model.g_attention = (32,)  # feature resolutions followed by self-attention
  c.model.d_attention = (32,)
  c.model.weight_init = "xavier"  # 'xavier' (official code) | 'orthogonal' (StudioGAN) | 'pytorch'
  c.model.bn_style = "official"  # 'official' | 'studiogan': how (conditional) BN is built
  c.model.cbn_spectral_norm = False  # SN on the conditional BN's class tables (StudioGAN: on)
  c.model.spectral_eps = 1e-12  # power-iteration floor (torch's default; StudioGAN 1e-6)
  # D blocks' shortcuts see relu(x), as StudioGAN's in-place ReLU makes them (official: x)
  c.model.d_shortcut_after_activation = False

  # What to read. Fields of sources other than `source` are ignored, so
  # switching with --config.data.source=image_folder needs no other edit.
  c.data = ml_collections.ConfigDict()
  c.data.source = "mnist78"
  c.data.image_size = 64
  c.data.channels = 1
  c.data.digits = (7, 8)  # mnist78: the chapter's digits, ...
  c.data.per_digit = 200  # ... the first 200 of each ...
  c.data.split = "train"  # ... ('heldout': the rest, the evaluation's reference)
  c.data.path = config_dict.placeholder(str)  # image_folder
  c.data.tfds_name = config_dict.placeholder(str)  # tfds
  c.data.tfds_split = "train"
  c.data.tfds_image_key = "image"
  c.data.tfds_label_key = "label"
  c.data.tfds_data_dir = config_dict.placeholder(str)  # None: TFDS's default folder
  c.data.tfds_download = False  # never reach for the network unless asked
  c.data.class_folders = False  # image_folder: one subfolder per class (labels: sorted names)
  # Augmentation of the training batches, any source (sagan_jax/data/augment.py): mirror
  # each image left to right with probability 1/2, drawn from (seed, epoch, image index).
  c.data.random_flip = False
  # image_folder, tfds, tfds_stream: None, or 'center_long_edge' (the centred square of each
  # image's long edge, cut before the resize to image_size, so the aspect ratio is kept);
  # 'random_long_edge' (image_folder, tfds_stream): a square at a position drawn per image
  # from (seed, epoch, image index), as StudioGAN's RandomCropLongEdge for training.
  c.data.crop = config_dict.placeholder(str)
  c.data.skip_bad_images = False  # image_folder: leave out unreadable files (else: stop)

  # How to batch it.
  c.batching = ml_collections.ConfigDict()
  c.batching.batch_size = 64  # global batch, split over all devices
  c.batching.drop_remainder = False  # the chapter's DataLoader keeps the last partial batch
  c.batching.prefetch = 2  # batches decoded ahead on a background thread

  c.num_epochs = 300
  c.num_steps = config_dict.placeholder(int)  # when set, overrides num_epochs

  # Training steps per jitted call (lax.scan over K batches): removes Python and
  # dispatch overhead on fast accelerators. Logging, sampling and checkpoint
  # steps still happen exactly where configured.
  c.steps_per_dispatch = 1

  c.loss = "hinge"
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.lr_g = 1e-4
  c.optimizer.lr_d = 4e-4
  c.optimizer.b1 = 0.0
  c.optimizer.b2 = 0.9
  c.optimizer.eps = 1e-8
  c.optimizer.d_steps = 1  # D updates (each on its own real batch) per G update

  # An exponential moving average of the generator's weights (off when decay is None).
  c.ema = ml_collections.ConfigDict()
  c.ema.decay = config_dict.placeholder(float)  # e.g. 0.999; None: no EMA
  c.ema.start_step = 0  # until this step the average is a copy of the weights
  c.ema.use_for_eval = True  # sample grids, sample.py and evaluation use the EMA generator

  c.log_every = 10  # steps between console/TensorBoard scalars
  c.sample_every = 300  # steps between sample grids (and at the end)
  c.checkpoint_every = 300  # steps between checkpoints (and at the end)
  c.keep_checkpoints = 3
  # Resume a checkpoint although the data differs from what it trained on (other files,
  # count or labels): refused otherwise, naming both.
  c.resume_on_new_data = False
  c.num_samples = 64  # images in a sample grid (fixed noise)

  # Where scalars and images go (sagan_jax/runtime/writer_factory.py); only process 0 writes.
  c.logging = ml_collections.ConfigDict()
  c.logging.writers = ("tensorboard",)  # any of WRITER_NAMES, e.g. ("tensorboard", "csv")
  c.logging.wandb_project = "sagan-jax"  # with "wandb" (pip install wandb)
  c.logging.wandb_entity = config_dict.placeholder(str)  # None: W&B's default entity

  # Evaluation during training (every `eval.every` steps) and by evaluate.py
  # (sagan_jax/runs/evaluation.py). The reference: `ref_stats` when given; else the
  # held-out digits of an MNIST source; else statistics of the run's own training
  # data, computed once and cached in <workdir>/eval/.
  c.eval = ml_collections.ConfigDict()
  c.eval.every = 0  # steps between evaluations during training (0: never)
  c.eval.features = "mnist"  # one of EVAL_FEATURES: 'mnist' (the packaged digit
  # classifier; MNIST sources only) | 'inception' (the FID Inception, any data)
  c.eval.inception_weights = config_dict.placeholder(str)  # pytorch-fid's .pth; None: the
  # torch hub cache, where pytorch-fid downloads it
  c.eval.ref_stats = config_dict.placeholder(str)  # a pytorch-fid-compatible .npz
  c.eval.num_samples = 2000  # generated images per evaluation
  c.eval.batch_size = 500  # images per generator and feature-network call
  c.eval.best_metric = "fid"  # best_checkpoint/ keeps the best step by this (BEST_METRICS)
  # What to compute (EVAL_METRICS; default all): 'fid' — FID; 'is' — the Inception Score
  # (the classifier score with the MNIST classifier) and, against held-out digits, the
  # classifier's readings (confident share per digit) with what they can hide beside them
  # (per-digit recall, spread, the collapse flag); 'kid' — KID over 100 subsets;
  # 'precision_recall' — k-NN precision and recall (and the per-digit recall, spread and
  # collapse flag); 'conditional' — a class-conditional generator's conditional accuracy and
  # intra-FID. KID and precision/recall are the slow ones at 10,000+ samples.
  c.eval.metrics = EVAL_METRICS
  return c


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """``(H, W, C)`` of the images a run's data (and generator) have."""
  return (config.data.image_size, config.data.image_size, config.data.channels)


def total_steps(config: ml_collections.ConfigDict, batcher) -> int:
  """Training steps: ``num_steps``, or ``num_epochs`` of ``batcher``'s data (a
  `sagan_jax.data.Batcher`; each step reads ``optimizer.d_steps`` batches, one per D update)."""
  if config.num_steps is not None:
    return config.num_steps
  return batcher.num_steps(config.num_epochs) // config.optimizer.d_steps


def ema_settings(config: ml_collections.ConfigDict) -> Optional[EmaSettings]:
  """The run's EMA settings, or None when it keeps no EMA."""
  if config.ema.decay is None:
    return None
  return EmaSettings(float(config.ema.decay), int(config.ema.start_step))


def uses_ema(config: ml_collections.ConfigDict, use_ema: Optional[bool] = None) -> bool:
  """Whether sampling a run's checkpoints reads its EMA generator: when the run keeps
  one (``ema.decay``) and ``use_ema`` (default: the run's ``ema.use_for_eval``) says so.

  Reads with ``get``: a workdir's saved config may predate the ``ema`` section.
  """
  ema = config.get("ema")
  if ema is None or ema.get("decay") is None:
    return False
  return bool(ema.get("use_for_eval", True) if use_ema is None else use_ema)


def _get(config, name: str):
  value = config
  for part in name.split("."):
    value = value[part]
  return value


def _positive_int(config, name: str, minimum: int = 1) -> None:
  require_int(_get(config, name), f"config.{name}", minimum, ConfigError)


def _one_of(config, name: str, choices) -> None:
  value = _get(config, name)
  if value not in choices:
    raise ConfigError(f"config.{name} must be one of {list(choices)}, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ``ConfigError`` for any value the run could not use."""
  for name in ("batching.batch_size", "num_epochs", "steps_per_dispatch", "log_every",
               "sample_every", "checkpoint_every", "keep_checkpoints", "num_samples",
               "model.z_dim", "model.width", "data.image_size", "data.per_digit",
               "optimizer.d_steps"):
    _positive_int(config, name)
  _positive_int(config, "batching.prefetch", minimum=0)
  _positive_int(config, "ema.start_step", minimum=0)
  if config.model.d_width is not None:
    _positive_int(config, "model.d_width")
  decay = config.ema.decay
  if decay is not None and not (isinstance(decay, (int, float)) and 0 <= decay < 1):
    raise ConfigError(f"config.ema.decay must be None (no EMA) or in [0, 1), got {decay!r}")
  if config.optimizer.d_steps > 1 and not config.batching.drop_remainder:
    raise ConfigError("config.optimizer.d_steps > 1 stacks equal-sized batches, so an epoch's "
                      "partial last batch cannot be used: set "
                      "config.batching.drop_remainder=True")
  if config.num_steps is not None:
    _positive_int(config, "num_steps")
  if config.model.attention_chunk_size is not None:
    _positive_int(config, "model.attention_chunk_size")
  _one_of(config, "model.name", models.MODEL_NAMES)
  _one_of(config, "model.conv_implementation", CONV_IMPLEMENTATIONS)
  _one_of(config, "model.compute_dtype", COMPUTE_DTYPES)
  _one_of(config, "loss", tuple(LOSSES))
  _one_of(config, "data.source", SOURCE_NAMES)
  _one_of(config, "data.channels", (1, 3))
  _one_of(config, "data.crop", CROPS)
  if config.data.crop == "random_long_edge" and config.data.source not in RANDOM_CROP_SOURCES:
    raise ConfigError(f"config.data.crop='random_long_edge' needs a source that decodes per "
                      f"batch ({' or '.join(RANDOM_CROP_SOURCES)}), not "
                      f"{config.data.source!r}: use crop='center_long_edge' there")
  try:
    models.check_model_config(config.model, image_shape(config))
  except ValueError as error:
    raise ConfigError(str(error)) from None
  for name in ("lr_g", "lr_d"):
    value = config.optimizer[name]
    if not (isinstance(value, (int, float)) and 0 < value < math.inf):
      raise ConfigError(f"config.optimizer.{name} must be finite and > 0, got {value!r}")
  for name in ("b1", "b2"):
    value = config.optimizer[name]
    if not (isinstance(value, (int, float)) and 0 <= value < 1):
      raise ConfigError(f"config.optimizer.{name} must be in [0, 1), got {value!r}")
  _validate_logging(config)
  _validate_eval(config)


def _names(value, field: str, kind: str, valid, *, non_empty: bool = False):
  """``value`` if it is a tuple (or list) of names from ``valid``; else one ConfigError line."""
  if isinstance(value, str) or not isinstance(value, (tuple, list)) or (non_empty and not value):
    raise ConfigError(f"config.{field} must be a {'non-empty ' if non_empty else ''}tuple of "
                      f"names from {list(valid)}, got {value!r}")
  for name in value:
    if name not in valid:
      raise ConfigError(f"config.{field}: unknown {kind} {name!r}; choose from {list(valid)}")
  return value


def _validate_logging(config: ml_collections.ConfigDict) -> None:
  writers = _names(config.logging.writers, "logging.writers", "writer", WRITER_NAMES)
  if "wandb" in writers and importlib.util.find_spec("wandb") is None:
    raise ConfigError("config.logging.writers names 'wandb' but wandb is not installed: "
                      "pip install wandb, or leave 'wandb' out")


def _validate_eval(config: ml_collections.ConfigDict) -> None:
  for old in ("eval_every", "eval_num_samples", "eval_batch_size"):
    if old in config:  # a config of an earlier release, edited by hand
      raise ConfigError(f"config.{old} is now config.eval.{old[len('eval_'):]}")
  _positive_int(config, "eval.every", minimum=0)  # 0 turns evaluation during training off
  _positive_int(config, "eval.num_samples", minimum=2)
  _positive_int(config, "eval.batch_size")
  _one_of(config, "eval.features", EVAL_FEATURES)
  _one_of(config, "eval.best_metric", tuple(BEST_METRICS))
  _validate_eval_metrics(config)
  if config.eval.features == "mnist":
    if config.eval.inception_weights is not None:
      raise ConfigError("config.eval.inception_weights is set but config.eval.features is "
                        "'mnist'; set config.eval.features='inception'")
    if config.eval.every and config.data.source not in HELDOUT_SOURCES:
      raise ConfigError(f"config.eval.features='mnist' reads MNIST digits (data.source one "
                        f"of {list(HELDOUT_SOURCES)}); for data.source "
                        f"{config.data.source!r} set config.eval.features='inception'")


def _validate_eval_metrics(config: ml_collections.ConfigDict) -> None:
  metrics = _names(config.eval.metrics, "eval.metrics", "metric", EVAL_METRICS,
                   non_empty=True)
  needed = METRIC_OF_BEST[config.eval.best_metric]
  if needed not in metrics:
    raise ConfigError(f"config.eval.best_metric={config.eval.best_metric!r} is computed by "
                      f"{needed!r}, which config.eval.metrics={tuple(metrics)!r} leaves out: add "
                      f"it, or choose a best_metric among the computed ones")
