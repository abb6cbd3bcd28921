"""The run config: every field with its default, and validation.

This is the only home of a default. ``configs/*.py`` start from
``base_config()`` (which *is* the chapter's recipe) and override fields; the
data factory, the model registry and evaluation read what they need from the
config and keep no defaults of their own. ``validate`` runs before any
compute and turns a bad value into one clear error.

Sections: ``model`` (which network, how it computes), ``data`` (what to
read: the source and its fields), ``batching`` (how to batch it),
``optimizer``; the rest are the run's length, cadence and evaluation.
"""

from __future__ import annotations

import math

import ml_collections
from ml_collections import config_dict

from sagan_jax import models
from sagan_jax.checks import require_int
from sagan_jax.data import SOURCE_NAMES
from sagan_jax.losses import LOSSES

CONV_IMPLEMENTATIONS = ("auto", "gemm", "xla")
HELDOUT_SOURCES = ("mnist78", "mnist")  # sources with held-out real images to evaluate against
COMPUTE_DTYPES = ("float32", "bfloat16")


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
  c.num_samples = 64  # images in a sample grid (fixed noise)

  # Evaluation against held-out real digits during training (see evaluate.py).
  c.eval_every = 0  # steps between evaluations (0: never)
  c.eval_num_samples = 2000  # generated images per evaluation
  c.eval_batch_size = 500
  return c


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
  _positive_int(config, "eval_every", minimum=0)  # 0 turns evaluation off
  _positive_int(config, "ema.start_step", minimum=0)
  if config.model.d_width is not None:
    _positive_int(config, "model.d_width")
  decay = config.ema.decay
  if decay is not None and not (isinstance(decay, (int, float)) and 0 <= decay < 1):
    raise ConfigError(f"config.ema.decay must be None (no EMA) or in [0, 1), got {decay!r}")
  if config.optimizer.d_steps > 1 and not config.batching.drop_remainder:
    raise ConfigError("config.optimizer.d_steps > 1 stacks equal-sized batches: set "
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
  image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
  try:
    models.check_model_config(config.model, image_shape)
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
  if config.eval_every:
    _positive_int(config, "eval_num_samples", minimum=2)
    _positive_int(config, "eval_batch_size")
    if config.data.source not in HELDOUT_SOURCES:
      raise ConfigError(f"config.eval_every needs held-out real digits (data.source one of "
                        f"{list(HELDOUT_SOURCES)}); set eval_every=0")
