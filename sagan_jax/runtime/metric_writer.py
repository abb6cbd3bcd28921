"""The metric-writer interface: scalars, images and hyperparameters of a run, anywhere.

The shape of CLU's ``metric_writers``: a `MetricWriter` has ``write_scalars(step,
mapping)``, ``write_images(step, mapping)``, ``write_hparams(mapping)``, ``flush()``
and ``close()``, and is a context manager. The run code writes through this
interface only; which backends receive the values is the factory's choice
(`sagan_jax.runtime.writer_factory.make_writer`, from ``config.logging.writers``):

* `sagan_jax.runtime.tensorboard_writer.TensorBoardWriter` (the default);
* `sagan_jax.runtime.scalar_file_writers.CsvWriter` and ``JsonlWriter``: the
  scalars as a table in the workdir, for pandas or a spreadsheet;
* `sagan_jax.runtime.wandb_writer.WandbWriter`: Weights & Biases, when ``wandb``
  is installed.

`MultiWriter` fans one call out to several writers; `NoOpWriter` is what every
process but the chief gets in a multi-host run, so the loop needs no ``if``
around logging. `scalar_values` and `checked_images` convert and check values
once, the same way for every backend: a bad value raises ``ValueError`` before
anything is written anywhere.
"""

from __future__ import annotations

import abc
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["MetricWriter", "MultiWriter", "NoOpWriter", "checked_images", "flat_hparams",
           "scalar_values"]


def _to_float(name: str, value: Any) -> float:
  """A Python float from a Python, numpy or jax scalar (or size-1 array)."""
  array = np.asarray(value)  # jax arrays come to the host here
  if array.size != 1:
    raise ValueError(f"scalar {name!r} must have exactly one element, got shape {array.shape}.")
  return float(array.reshape(()))


def _check_image(name: str, image: Any) -> np.ndarray:
  """A uint8 (H, W, C) image with C in 1, 3, 4."""
  array = np.asarray(image)
  if array.dtype != np.uint8:
    # Backends read floats as [0, 1]; this project's images are [-1, 1], so
    # accepting them would give a silently wrong picture.
    raise ValueError(f"image {name!r} must be uint8 (H, W, C), got dtype {array.dtype}; "
                     "convert [-1, 1] floats with sagan_jax.viz.image_grid/to_uint8.")
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
    raise ValueError(f"image {name!r} must be (H, W) or (H, W, C) with C in 1, 3, 4, got "
                     f"shape {np.shape(image)}.")
  return array


def scalar_values(mapping: Mapping[str, Any]) -> dict[str, float]:
  """``{name: float}`` of Python, numpy or jax scalars (non-finite values kept as they
  are). Raises ``ValueError`` for a value of more than one element."""
  return {str(k): _to_float(k, v) for k, v in mapping.items()}


def checked_images(mapping: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """``{name: uint8 (H, W, C)}``; raises ``ValueError`` for floats or bad shapes."""
  return {str(k): _check_image(k, v) for k, v in mapping.items()}


def flat_hparams(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """``{"model": {"width": 64}}`` → ``{"model.width": 64}``: what `write_hparams` takes.
  Sequences become their text (``(16,)`` → ``"(16,)"``), as hyperparameter tables show them."""
  out: dict[str, Any] = {}
  for key, value in nested.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flat_hparams(value, name + "."))
    elif isinstance(value, (list, tuple)):
      out[name] = str(tuple(value))
    else:
      out[name] = value
  return out


class MetricWriter(abc.ABC):
  """Where a run's scalars, images and hyperparameters go.

  Implementations convert with `scalar_values` / `checked_images` first, so a
  bad value writes nothing rather than half; after `close`, writes raise
  ``RuntimeError`` rather than being lost silently; closing twice is harmless.
  """

  @abc.abstractmethod
  def write_scalars(self, step: int, mapping: Mapping[str, Any]) -> None:
    """One scalar per name at ``step`` (Python, numpy or jax scalars)."""

  @abc.abstractmethod
  def write_images(self, step: int, mapping: Mapping[str, Any]) -> None:
    """One uint8 image (H, W) or (H, W, 1|3|4) per name at ``step``."""

  @abc.abstractmethod
  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """The run's hyperparameters: flat ``{name: bool | int | float | str}``."""

  @abc.abstractmethod
  def flush(self) -> None:
    """Everything written so far reaches its destination."""

  @abc.abstractmethod
  def close(self) -> None:
    """Flushes and releases the backend."""

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, exc_type, exc_value, traceback) -> None:
    self.close()


class NoOpWriter(MetricWriter):
  """Writes nothing and touches no file: processes other than the chief (process 0)."""

  def write_scalars(self, step: int, mapping: Mapping[str, Any]) -> None:
    del step, mapping

  def write_images(self, step: int, mapping: Mapping[str, Any]) -> None:
    del step, mapping

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    del hparams

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


class MultiWriter(MetricWriter):
  """Every call goes to each of ``writers`` in order. Values are checked once, before
  the first writer sees them, so one backend never gets what another refused."""

  def __init__(self, writers: Sequence[MetricWriter]):
    self.writers = tuple(writers)

  def write_scalars(self, step: int, mapping: Mapping[str, Any]) -> None:
    values = scalar_values(mapping)
    for writer in self.writers:
      writer.write_scalars(step, values)

  def write_images(self, step: int, mapping: Mapping[str, Any]) -> None:
    images = checked_images(mapping)
    for writer in self.writers:
      writer.write_images(step, images)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    for writer in self.writers:
      writer.write_hparams(hparams)

  def flush(self) -> None:
    for writer in self.writers:
      writer.flush()

  def close(self) -> None:
    """Closes every writer, even when one fails (the first error is raised after)."""
    errors = []
    for writer in self.writers:
      try:
        writer.close()
      except Exception as error:  # pylint: disable=broad-except  # raised below
        errors.append(error)
    if errors:
      raise errors[0]
