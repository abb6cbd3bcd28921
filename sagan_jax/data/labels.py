"""Checks that a source's labels can feed a class-conditional model, before any compute."""

from __future__ import annotations

import numpy as np

from sagan_jax.data.errors import DataError
from sagan_jax.data.source import Source


def source_num_classes(source: Source) -> int | None:
  """How many classes ``source`` declares (its ``class_names``), if it does."""
  names = getattr(source, "class_names", None)
  return None if names is None else len(names)


def check_class_labels(source: Source, num_classes: int) -> None:
  """Raises `DataError` unless ``source``'s labels are class indices in ``[0, num_classes)``
  and the classes it declares (if any) number ``num_classes``.

  Sources that read labels lazily (a streaming source, ``labels`` None but
  ``class_names`` set) are checked by their declared class count here and
  batch by batch by the `Batcher`.
  """
  declared = source_num_classes(source)
  if declared is not None and declared != num_classes:
    raise DataError(f"the data has {declared} classes but the model {num_classes} "
                    f"(config.model.num_classes): {source.description}")
  labels = getattr(source, "labels", None)
  if labels is None:
    if declared is None:
      raise DataError(f"config.model.num_classes={num_classes} needs labelled data, but the "
                      f"source has no labels: {source.description}")
    return
  check_label_range(np.asarray(labels), num_classes, source.description)


def check_label_range(labels: np.ndarray, num_classes: int, where: str) -> None:
  """Raises `DataError` naming the first label outside ``[0, num_classes)``."""
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    raise DataError(f"label {int(labels[bad[0]])} (example {int(bad[0])}) is outside "
                    f"[0, {num_classes}) for config.model.num_classes={num_classes}: {where}")
