"""The training config: every field with its default, and validation.

``configs/*.py`` start from ``base_config()`` (which *is* the chapter's
recipe) and override fields. ``validate`` runs before any compute and turns a
bad value into one clear error.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from sagan_jax.data import SOURCE_NAMES
from sagan_jax.losses import LOSSES

MODELS = ("chapter64",)
CONV_IMPLEMENTATIONS = ("auto", "gemm", "xla")
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
  c.model.attention_chunk_size = 1024  # blocked attention, ≤ this many query rows a block (None: materialized)
  c.model.conv_implementation = "auto"
  # Activations and matmuls in bfloat16 (parameters, optimizer state, BatchNorm
  # statistics and losses stay float32).
  c.model.compute_dtype = "float32"

  c.data = ml_collections.ConfigDict()
  c.data.source = "mnist78"
  c.data.image_size = 64
  c.data.channels = 1
  c.data.digits = (7, 8)
  c.data.per_digit = 200
  c.data.split = "train"
  c.data.path = config_dict.placeholder(str)
  c.data.tfds_name = config_dict.placeholder(str)
  c.data.tfds_split = "train"
  c.data.tfds_image_key = "image"
  c.data.tfds_label_key = "label"
  c.data.tfds_data_dir = config_dict.placeholder(str)
  c.data.tfds_download = False  # never reach for the network unless asked
  c.data.drop_remainder = False  # the chapter's DataLoader keeps the last partial batch
  c.data.prefetch = 2  # batches decoded ahead on a background thread

  c.batch_size = 64  # global batch, split over all devices
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


def _positive_int(config, name: str) -> None:
  value = config
  for part in name.split("."):
    value = value[part]
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ConfigError(f"config.{name} must be a positive integer, got {value!r}")


def _one_of(value, name: str, choices) -> None:
  if value not in choices:
    raise ConfigError(f"config.{name} must be one of {list(choices)}, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ``ConfigError`` for any value the run could not use."""
  for name in ("batch_size", "num_epochs", "steps_per_dispatch", "log_every", "sample_every", "checkpoint_every",
               "keep_checkpoints", "num_samples", "model.z_dim", "model.width",
               "data.image_size", "data.per_digit"):
    _positive_int(config, name)
  if config.num_steps is not None:
    _positive_int(config, "num_steps")
  _one_of(config.model.name, "model.name", MODELS)
  _one_of(config.model.conv_implementation, "model.conv_implementation", CONV_IMPLEMENTATIONS)
  _one_of(config.model.compute_dtype, "model.compute_dtype", COMPUTE_DTYPES)
  _one_of(config.loss, "loss", tuple(LOSSES))
  _one_of(config.data.source, "data.source", SOURCE_NAMES)
  _one_of(config.data.channels, "data.channels", (1, 3))
  if config.model.name == "chapter64":
    if config.data.image_size != 64:
      raise ConfigError(
          f"model 'chapter64' makes 64×64 images; config.data.image_size is "
          f"{config.data.image_size}")
    if config.model.width < 8 or config.model.width % 8:
      raise ConfigError(
          f"config.model.width must be a multiple of 8 (its self-attention layers need "
          f"channels divisible by 8), got {config.model.width}")
  if config.model.attention_chunk_size is not None:
    _positive_int(config, "model.attention_chunk_size")
  for name in ("lr_g", "lr_d"):
    value = config.optimizer[name]
    if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
      raise ConfigError(f"config.optimizer.{name} must be finite and > 0, got {value!r}")
  for name in ("b1", "b2"):
    value = config.optimizer[name]
    if not (isinstance(value, (int, float)) and 0 <= value < 1):
      raise ConfigError(f"config.optimizer.{name} must be in [0, 1), got {value!r}")
  if (isinstance(config.eval_every, bool) or not isinstance(config.eval_every, int)
      or config.eval_every < 0):
    raise ConfigError(f"config.eval_every must be >= 0 (0 turns evaluation off), got "
                      f"{config.eval_every!r}")
  if config.eval_every:
    _positive_int(config, "eval_num_samples")
    _positive_int(config, "eval_batch_size")
    if config.data.source != "mnist78":
      raise ConfigError("config.eval_every needs held-out real digits (data.source='mnist78'); "
                        "set eval_every=0")
  if not isinstance(config.data.prefetch, int) or config.data.prefetch < 0:
    raise ConfigError(f"config.data.prefetch must be >= 0, got {config.data.prefetch!r}")
