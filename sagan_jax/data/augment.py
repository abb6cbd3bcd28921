"""Training-time augmentation, decided per image from ``(seed, epoch, source index)``.

A decision is a function of the run's seed, the epoch and the image's index in the
source, never of a generator's running state, so the batch at a step stays a pure
function of the step (`sagan_jax.data.Batcher`): a resumed run, or the same run on
another number of hosts or with another batch size, flips the same images.

Horizontal flips as ``torchvision.transforms.RandomHorizontalFlip()`` (probability
1/2), what StudioGAN's ``apply_rflip`` adds to its training data. Random square crops of
the long edge (``crop='random_long_edge'``) draw one number per image here; the source
turns it into an offset when it decodes (`sagan_jax.data.transforms.crop_long_edge`).
"""

from __future__ import annotations

import numpy as np

# Told apart from the epoch's shuffle, numpy.random.default_rng([seed, epoch]), by a third
# entropy word: the two draws are independent streams.
_FLIP_STREAM = 1
_CROP_STREAM = 2


def flip_decisions(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """Whether each of a source's ``num_examples`` images is flipped in ``epoch``: bool
  ``(num_examples,)``, each True with probability 1/2, independently."""
  return np.random.default_rng([seed, epoch, _FLIP_STREAM]).random(num_examples) < 0.5


def crop_draws(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """Where each of a source's ``num_examples`` images is cropped in ``epoch``: float64
  ``(num_examples,)`` uniform in [0, 1), independently (a stream of its own)."""
  return np.random.default_rng([seed, epoch, _CROP_STREAM]).random(num_examples)


def flip_horizontally(images: np.ndarray, flip: np.ndarray) -> np.ndarray:
  """``images`` ``(n, H, W, C)`` with those where ``flip`` ``(n,)`` is True mirrored
  left to right (a new array)."""
  return np.where(np.asarray(flip, bool)[:, None, None, None], images[:, :, ::-1], images)
