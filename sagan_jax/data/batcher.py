"""Stateless, resumable batching: every batch is a function of its step number.

There is no iterator state to checkpoint. The batch at step ``k`` is found
from ``k`` alone::

  epoch    = k // batches_per_epoch
  position = k %  batches_per_epoch
  order    = numpy.random.default_rng([seed, epoch]).permutation(len(source))
  indices  = order[position * batch_size : (position + 1) * batch_size]

so a run resumed from a checkpoint at step ``k`` sees exactly the batches it
would have seen, and two runs with the same seed see the same data. Augmentation
(``random_flip``) keeps this: each image's flip is drawn from ``(seed, epoch, its
index)``, and so is each random crop's position (`sagan_jax.data.augment`).

Like the chapter's PyTorch ``DataLoader(shuffle=True)`` (and unlike many JAX
pipelines), the last, smaller batch of each epoch is kept by default: 400
images at batch 64 give 6 batches of 64 and one of 16 per epoch, so the
chapter's 300 epochs are 2,100 steps. A jitted train step then compiles for
two batch shapes; pass ``drop_remainder=True`` for one.

Multi-host: with ``process_count`` > 1, each process takes its contiguous
slice ``[i * b / P, (i + 1) * b / P)`` of every global batch of size ``b``
and reads only those examples; concatenating the processes' slices in
process order gives the global batch. Every batch, the last one included,
must divide evenly among the processes — a `DataError` at construction
says otherwise, rather than silently changing the schedule by host count.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from sagan_jax.checks import require_int
from sagan_jax.data.augment import crop_draws, flip_decisions, flip_horizontally
from sagan_jax.data.errors import DataError
from sagan_jax.data.source import Source
from sagan_jax.data.transforms import to_model_range


def _check_int(name: str, value: Any, minimum: int) -> int:
  return require_int(value, name, minimum, DataError)


class Batcher:
  """Maps a step number to that step's batch of a source.

  Args:
    source: any `Source`.
    batch_size: the *global* batch size (all processes together).
    seed: non-negative int; each epoch's order is a permutation drawn from
      ``numpy.random.default_rng([seed, epoch])``.
    drop_remainder: drop the last batch of each epoch if it is smaller than
      ``batch_size`` (default False, as the chapter).
    shuffle: False keeps the source's order every epoch (for evaluation).
    random_flip: mirror each image left to right with probability 1/2, drawn
      per image from ``(seed, epoch, index)`` (StudioGAN's ``apply_rflip``). A source
      built with ``crop='random_long_edge'`` gets each image's crop position drawn the
      same way (``crop_draws``).
    process_index: this process (``jax.process_index()``).
    process_count: the number of processes (``jax.process_count()``).

  Raises:
    DataError: an invalid argument, an empty source, a source smaller than
      one batch with ``drop_remainder=True``, or a global batch — full or the
      last, partial one — that does not divide among ``process_count``.
  """

  def __init__(self, source: Source, batch_size: int, seed: int = 0, *,
               drop_remainder: bool = False, shuffle: bool = True,
               random_flip: bool = False,
               process_index: int = 0, process_count: int = 1):
    self.source = source
    self.batch_size = _check_int("batch_size", batch_size, 1)
    self.seed = _check_int("seed", seed, 0)
    self.drop_remainder = bool(drop_remainder)
    self.shuffle = bool(shuffle)
    self.random_flip = bool(random_flip)
    self.process_count = _check_int("process_count", process_count, 1)
    self.process_index = _check_int("process_index", process_index, 0)
    if self.process_index >= self.process_count:
      raise DataError(f"process_index {process_index} must be < process_count "
                      f"{process_count}")
    self.num_examples = len(source)
    if self.num_examples == 0:
      raise DataError(f"data source is empty: {source.description}")
    if self.batch_size % self.process_count:
      raise DataError(f"global batch_size {self.batch_size} does not divide among "
                      f"{self.process_count} processes")

    full, remainder = divmod(self.num_examples, self.batch_size)
    if self.drop_remainder:
      remainder = 0
      if full == 0:
        raise DataError(f"drop_remainder=True with {self.num_examples} examples < "
                        f"batch_size {self.batch_size} leaves no batch")
    if remainder % self.process_count:
      raise DataError(
          f"the last batch of each epoch has {remainder} examples "
          f"({self.num_examples} % {self.batch_size}), which does not divide among "
          f"{self.process_count} processes; use drop_remainder=True or a batch size "
          "that leaves a divisible remainder")
    self.batches_per_epoch = full + (remainder > 0)
    self.last_batch_size = remainder or self.batch_size
    self._order_cache: tuple[int, np.ndarray] | None = None  # (epoch, order)
    # kind ('flip' or 'crop') -> (epoch, that epoch's draws by source index)
    self._draw_cache: dict[str, tuple[int, np.ndarray]] = {}
    # A source decoding per batch with crop='random_long_edge' takes one draw per image.
    self.random_crop = getattr(source, "crop", None) == "random_long_edge"

  def __repr__(self) -> str:
    return (f"Batcher({self.num_examples} examples, batch_size={self.batch_size}, "
            f"{self.batches_per_epoch} batches/epoch, seed={self.seed}, "
            f"drop_remainder={self.drop_remainder}, shuffle={self.shuffle}, "
            f"random_flip={self.random_flip}, "
            f"process {self.process_index}/{self.process_count})")

  @property
  def local_batch_size(self) -> int:
    """This process's share of a full global batch."""
    return self.batch_size // self.process_count

  def num_steps(self, num_epochs: int) -> int:
    """Steps in ``num_epochs`` epochs (300 chapter epochs → 2,100 steps)."""
    return _check_int("num_epochs", num_epochs, 0) * self.batches_per_epoch

  def epoch_order(self, epoch: int) -> np.ndarray:
    """The order in which ``epoch`` visits the source's examples (int64)."""
    epoch = _check_int("epoch", epoch, 0)
    cached = self._order_cache  # read once: the prefetch thread may replace it
    if cached is not None and cached[0] == epoch:
      return cached[1]
    if self.shuffle:
      order = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
    else:
      order = np.arange(self.num_examples)
    order.flags.writeable = False
    self._order_cache = (epoch, order)
    return order

  def epoch_flips(self, epoch: int) -> np.ndarray:
    """Whether each source example is flipped in ``epoch`` (bool, by source index)."""
    return self._epoch_draws("flip", flip_decisions, epoch)

  def epoch_crop_draws(self, epoch: int) -> np.ndarray:
    """Where each source example's random crop falls in ``epoch`` (by source index)."""
    return self._epoch_draws("crop", crop_draws, epoch)

  def _epoch_draws(self, kind: str, draw, epoch: int) -> np.ndarray:
    """``draw(seed, epoch, num_examples)``, read-only, cached for the latest epoch."""
    epoch = _check_int("epoch", epoch, 0)
    cached = self._draw_cache.get(kind)  # read once: the prefetch thread may replace it
    if cached is not None and cached[0] == epoch:
      return cached[1]
    draws = draw(self.seed, epoch, self.num_examples)
    draws.flags.writeable = False
    self._draw_cache[kind] = (epoch, draws)
    return draws

  def global_indices(self, step: int) -> np.ndarray:
    """Source indices of the whole global batch at ``step``."""
    epoch, position = divmod(self._check_step(step), self.batches_per_epoch)
    start = position * self.batch_size
    return self.epoch_order(epoch)[start:start + self.batch_size]

  def local_indices(self, step: int) -> np.ndarray:
    """Source indices of this process's slice of the batch at ``step``."""
    indices = self.global_indices(step)
    per_process = len(indices) // self.process_count
    start = self.process_index * per_process
    return indices[start:start + per_process]

  def batch(self, step: int) -> dict[str, Any]:
    """This process's part of the batch at ``step``.

    Returns:
      A dict with
        ``image``: float32 ``(b, H, W, C)`` in [-1, 1], ``(x/255 - 0.5)/0.5``;
          ``b`` is `local_batch_size`, or the last batch's share;
        ``label``: int32 ``(b,)``, only if the source has labels;
        ``step``, ``epoch``: Python ints.
    """
    step = self._check_step(step)
    indices = self.local_indices(step)
    epoch = step // self.batches_per_epoch
    crop = {"crop_draws": self.epoch_crop_draws(epoch)[indices]} if self.random_crop else {}
    labels = getattr(self.source, "labels", None)
    if labels is None and hasattr(self.source, "get_labeled"):  # labels read with the images
      images, labels = self.source.get_labeled(indices, **crop)
    else:
      images = self.source.get(indices, **crop)
      labels = None if labels is None else labels[indices]
    if self.random_flip:
      images = flip_horizontally(images, self.epoch_flips(epoch)[indices])
    out = {"image": to_model_range(images)}
    if labels is not None:
      out["label"] = np.asarray(labels, np.int32)
    out["step"] = step
    out["epoch"] = epoch
    return out

  def _check_step(self, step: int) -> int:
    try:
      step = operator.index(step)
    except TypeError:
      raise DataError(f"step must be an integer, got {step!r}") from None
    if step < 0:
      raise DataError(f"step must be >= 0, got {step}")
    return step
