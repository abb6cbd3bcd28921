"""A small MNIST digit classifier at 64×64: the packaged, offline feature network.

``MnistClassifier()`` loads ``assets/mnist_classifier.msgpack`` (trained by
``scripts/train_mnist_classifier.py``) and follows the
`sagan_jax.eval.features.FeatureExtractor` contract: it reads generated
images directly (float (B, 64, 64, 1) in [-1, 1]; RGB is averaged to gray)
and returns the 64-d penultimate activations (divided by their RMS value on
the training images, so they are O(1)) as ``features`` and the softmax over
the ten digits as ``probs``.

Its inputs are prepared like the GAN's data: the 28×28 uint8 digit, PIL
bicubic to 64×64, then ``(x / 255 − 0.5) / 0.5``.

Training data (`split_indices`): the packaged 5,000 real digits minus the
chapter's GAN training images (the first 200 sevens and 200 eights), so the
classifier has never seen what the GAN was fit to. The last 100 digits of
every class form the test split; the rest (400 per class, 200 for 7 and 8)
train it. The held-out sevens and eights that the evaluation uses as its
real reference are therefore partly classifier-training images (2/3) and
partly test images (1/3); `sagan_jax.eval.evaluator` splits them so both
halves of its real-vs-real floor have the same mix.
"""

from __future__ import annotations

import functools
import math
import os
from importlib import resources
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from sagan_jax.atomic_file import atomic_write
from sagan_jax.data import load_mnist_5k, to_model_range
from sagan_jax.data.mnist import PER_CLASS
from sagan_jax.data.transforms import resize_uint8
from sagan_jax.eval.errors import EvalAssetNotFoundError, EvalError
from sagan_jax.layers import Conv, Dense
from sagan_jax.ops.compiler_options import compiler_options

__all__ = [
    "ASSET",
    "DigitCNN",
    "FORMAT",
    "MnistClassifier",
    "accuracy",
    "feature_scale",
    "load_weights",
    "mnist_64",
    "save_weights",
    "split_indices",
    "train_classifier",
]

ASSET = "mnist_classifier.msgpack"
FORMAT = "sagan-jax/mnist-classifier/v1"  # bump when DigitCNN's structure changes
IMAGE_SIZE = 64
TEST_PER_CLASS = 100  # the last 100 of every class: the classifier's test split
# He initialization: PyTorch's default U(±1/√fan_in) shrinks a deep ReLU stack's
# activations layer by layer, and this network has no normalization layers.
_HE = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class DigitCNN(nn.Module):
  """A small all-convolutional digit classifier.

  The 64×64 input (a bicubic upsampling of a 28×28 digit) is average-pooled
  to 32×32, then 3×3 convolutions with ReLU — ``widths[i]`` channels, stride
  2 where ``strides[i]`` says so — and a global average, a ReLU dense layer
  (the features) and a linear layer to the logits.

  Returns ``(logits (B, num_classes), features (B, feature_dim))``.
  """

  num_classes: int = 10
  feature_dim: int = 64
  widths: Sequence[int] = (16, 32, 32, 64, 64, 64)
  strides: Sequence[int] = (1, 2, 1, 2, 1, 2)

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    for i, (width, stride) in enumerate(zip(self.widths, self.strides)):
      x = nn.relu(Conv(width, kernel_size=3, strides=stride, padding=1, kernel_init=_HE,
                       bias_init=nn.initializers.zeros, name=f"conv{i}")(x))
    x = x.mean(axis=(1, 2))
    features = nn.relu(Dense(self.feature_dim, kernel_init=_HE,
                             bias_init=nn.initializers.zeros, name="features")(x))
    return Dense(self.num_classes, name="logits")(features), features


def split_indices(gan_digits: Sequence[int], gan_per_digit: int,
                  test_per_class: int = TEST_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
  """``(train, test)`` indices into `sagan_jax.data.load_mnist_5k`'s arrays.

  Test: the last ``test_per_class`` digits of every class. Train: the rest,
  minus the first ``gan_per_digit`` digits of each of ``gan_digits`` (the
  GAN's training images, never shown to the classifier). The shipped weights
  were trained with the chapter's ``base_config().data.digits`` and
  ``per_digit`` (see ``scripts/train_mnist_classifier.py``).
  """
  _, labels = load_mnist_5k()
  train, test = [], []
  for digit in range(10):
    of_digit = np.flatnonzero(labels == digit)
    first = gan_per_digit if digit in gan_digits else 0
    train.append(of_digit[first:PER_CLASS - test_per_class])
    test.append(of_digit[PER_CLASS - test_per_class:])
  return np.concatenate(train), np.concatenate(test)


def mnist_64(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Packaged digits ``indices`` as float32 (n, 64, 64, 1) in [-1, 1] and int32 labels."""
  images, labels = load_mnist_5k()
  resized = resize_uint8(images[indices][..., None], IMAGE_SIZE)
  return to_model_range(resized), labels[indices].astype(np.int32)


def _asset_path() -> Any:
  return resources.files("sagan_jax.eval") / "assets" / ASSET


def save_weights(path: str | os.PathLike, params: Any, meta: dict[str, Any]) -> str:
  """Writes ``{'format', 'meta', 'params'}`` as msgpack, atomically (temp file + rename)."""
  path = os.fspath(path)
  payload = serialization.msgpack_serialize({
      "format": FORMAT, "meta": dict(meta),
      "params": jax.tree.map(np.asarray, serialization.to_state_dict(params))})
  return atomic_write(path, payload)


def _abstract_params(model: DigitCNN) -> Any:
  x = jax.ShapeDtypeStruct((1, IMAGE_SIZE, IMAGE_SIZE, 1), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), x)["params"]


def load_weights(path: Optional[str | os.PathLike] = None,
                 model: Optional[DigitCNN] = None) -> tuple[Any, dict[str, Any]]:
  """``(params, meta)`` from a weights file (default: the packaged asset).

  Raises:
    EvalAssetNotFoundError: the file does not exist.
    EvalError: it is not a weights file of this ``model``'s structure.
  """
  model = model or DigitCNN()
  where = _asset_path() if path is None else os.fspath(path)
  try:
    with (where.open("rb") if path is None else open(where, "rb")) as f:
      raw = serialization.msgpack_restore(f.read())
  except FileNotFoundError as e:
    raise EvalAssetNotFoundError(
        f"classifier weights {where} not found; train them with "
        "`python scripts/train_mnist_classifier.py`") from e
  except Exception as e:  # msgpack raises several unrelated types for corrupt data
    raise EvalError(f"classifier weights {where} are unreadable: {e}") from e
  if not isinstance(raw, dict) or raw.get("format") != FORMAT:
    found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
    raise EvalError(f"{where} is not a {FORMAT} weights file (format {found!r})")
  expected = _abstract_params(model)
  try:
    params = serialization.from_state_dict(expected, raw["params"])
  except (ValueError, KeyError, TypeError) as e:
    raise EvalError(f"classifier weights {where} do not fit DigitCNN: {e}") from e
  for (key, want), got in zip(jax.tree_util.tree_leaves_with_path(expected),
                              jax.tree.leaves(params)):
    if np.shape(got) != want.shape:
      raise EvalError(f"classifier weights {where}: {jax.tree_util.keystr(key)} has shape "
                      f"{np.shape(got)}, expected {want.shape}")
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  return params, dict(raw.get("meta") or {})


def _predict(model: DigitCNN, params: Any, images: jax.Array,
             feature_scale: float = 1.0) -> dict[str, jax.Array]:
  logits, features = model.apply({"params": params}, images)
  return {"features": features / feature_scale, "probs": jax.nn.softmax(logits),
          "logits": logits}


def feature_scale(predict: Callable[[Any], dict[str, Any]], images: np.ndarray,
                  batch_size: int = 500) -> float:
  """RMS feature value ``√(mean ‖f‖² / D)`` of ``predict``'s features over ``images``.

  `MnistClassifier` divides its features by this (computed on its training
  images and stored with the weights), so they are O(1) like Inception's pool
  features: KID's kernel ``(xᵀy/D + 1)³`` then weighs the linear and
  higher-order terms comparably, and FID/KID values read as small numbers.
  """
  total, count, dim = 0.0, 0, 1
  for start in range(0, len(images), batch_size):
    f = np.asarray(predict(images[start:start + batch_size])["features"], np.float64)
    total += float(np.sum(f * f))
    count += f.shape[0]
    dim = f.shape[1]
  return math.sqrt(total / (count * dim))


class MnistClassifier:
  """The packaged digit classifier as a feature extractor (see module docstring).

  Attributes:
    name: ``'mnist_classifier'``, recorded in evaluation results.
    labels: the digit of each column of ``probs`` (0-9).
    meta: what the weights file says about its training (test accuracy, splits).
    feature_scale: the features are the penultimate activations divided by
      this (`feature_scale`; from the weights file).
  """

  name = "mnist_classifier"
  labels = tuple(range(10))  # the digit of each column of ``probs``

  def __init__(self, path: Optional[str | os.PathLike] = None):
    self.model = DigitCNN()
    self.params, self.meta = load_weights(path, self.model)
    self.feature_scale = float(self.meta.get("feature_scale", 1.0))
    self._predict = jax.jit(functools.partial(_predict, self.model,
                                              feature_scale=self.feature_scale),
                            compiler_options=compiler_options())

  def __call__(self, images: Any) -> dict[str, jax.Array]:
    """``{'features': (B, 64), 'probs': (B, 10), 'logits': (B, 10)}`` for images in [-1, 1].

    Square images of another size (e.g. a 32×32 run's) are resized to 64×64 first,
    bicubically (`jax.image.resize`), real and generated alike.
    """
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[3] not in (1, 3):
      raise EvalError(f"the MNIST classifier reads square (B, H, H, 1 or 3) images in "
                      f"[-1, 1], got shape {x.shape}")
    if x.shape[3] == 3:
      x = x.mean(axis=3, keepdims=True)
    if x.shape[1] != IMAGE_SIZE:
      x = jax.image.resize(x, (x.shape[0], IMAGE_SIZE, IMAGE_SIZE, 1), "bicubic")
    return self._predict(self.params, x)


# ----------------------------------------------------------------------------- training


def _shift(images: jax.Array, key: jax.Array, max_shift: int) -> jax.Array:
  """Each image translated by up to ``max_shift`` px in y and x; background (−1) fills."""
  b, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)),
                   constant_values=-1.0)
  offsets = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)
  crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def accuracy(predict: Callable[[Any], dict[str, Any]], images: np.ndarray, labels: np.ndarray,
             batch_size: int = 500) -> float:
  """Share of ``images`` whose most probable class is ``labels``."""
  correct = 0
  for start in range(0, len(images), batch_size):
    probs = np.asarray(predict(images[start:start + batch_size])["probs"])
    correct += int((probs.argmax(axis=1) == labels[start:start + batch_size]).sum())
  return correct / len(images)


def train_classifier(images: np.ndarray, labels: np.ndarray, *, num_epochs: int = 20,
                     batch_size: int = 100, learning_rate: float = 3e-3,
                     weight_decay: float = 1e-4, max_shift: int = 4, seed: int = 0,
                     log: Optional[Callable[[int, float, Any], None]] = None) -> Any:
  """Trains `DigitCNN` with AdamW (warm-up, cosine decay) and random shifts; returns its params.

  Args:
    images: float32 (n, 64, 64, 1) in [-1, 1] (see `mnist_64`).
    labels: int (n,) digit labels.
    num_epochs, batch_size, learning_rate, weight_decay: the optimization.
    max_shift: random translation range in pixels at 64×64 (4 ≈ 2 px of MNIST's 28).
    seed: initialization, shuffling and augmentation.
    log: called as ``log(epoch, mean_loss, params)`` after each epoch.
  """
  model = DigitCNN()
  key = jax.random.key(seed)
  params = model.init(jax.random.fold_in(key, 0), images[:1])["params"]
  steps_per_epoch = math.ceil(len(images) / batch_size)
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, warmup_steps=steps_per_epoch, decay_steps=num_epochs * steps_per_epoch)
  tx = optax.adamw(schedule, weight_decay=weight_decay)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y, key):
    x = _shift(x, key, max_shift) if max_shift else x

    def loss_fn(p):
      logits, _ = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  for epoch in range(num_epochs):
    order = rng.permutation(len(images))
    losses = []
    for i in range(steps_per_epoch):
      idx = order[i * batch_size:(i + 1) * batch_size]
      if len(idx) < batch_size:  # keep one compiled shape: top up from the start
        idx = np.concatenate([idx, order[:batch_size - len(idx)]])
      params, opt_state, loss = step(params, opt_state, images[idx], labels[idx],
                                     jax.random.fold_in(key, 1 + epoch * steps_per_epoch + i))
      losses.append(loss)
    if log is not None:
      log(epoch + 1, float(np.mean(jax.device_get(losses))), params)
  return params
