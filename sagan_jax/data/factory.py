"""Builds a source from a config's data section (a dict or an ``ml_collections.ConfigDict``).

The factory holds no defaults: every field it reads comes from the config
(``sagan_jax.train.config.base_config`` is their one home), so it cannot
disagree with it. One config carries the fields of every source, so switching
with ``--config.data.source=image_folder`` needs no other edit: fields that
belong to a source other than the chosen one are ignored. A field that
belongs to no source is an error (most likely a typo), and so is a missing
one or ``None`` where the source needs a value. Augmentation fields
(`AUGMENTATION_FIELDS`: ``random_flip``) belong to the batcher, not the source,
and are accepted here.

Fields per source (``builder keyword ← config field``):

* ``mnist78`` → `mnist_digits`: ``digits``, ``per_digit``, ``split``,
  ``image_size``, ``channels`` (labels: the digits);
* ``mnist`` → `mnist_classes`: the same fields (labels: class indices into
  ``digits``, for class-conditional models);
* ``image_folder`` → `image_folder`: ``path``, ``image_size``, ``channels``,
  ``class_folders``, ``skip_bad_images``, ``crop``;
* ``tfds`` → `tfds_dataset`: ``tfds_name``, ``tfds_split``, ``tfds_image_key``,
  ``tfds_label_key``, ``tfds_data_dir`` (``None``: TFDS's default folder),
  ``tfds_download``, ``image_size``, ``channels``, ``crop`` (the split in memory);
* ``tfds_stream`` → `tfds_stream`: the same fields (read per batch from ArrayRecord,
  for data that does not fit in memory).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from sagan_jax.data.errors import DataError
from sagan_jax.data.image_folder import image_folder
from sagan_jax.data.mnist import mnist_classes, mnist_digits
from sagan_jax.data.source import Source
from sagan_jax.data.tfds_source import tfds_dataset
from sagan_jax.data.tfds_stream import tfds_stream

# source name -> (builder, {builder keyword: config field}).
_MNIST_FIELDS = {"digits": "digits", "per_digit": "per_digit", "split": "split",
                 "image_size": "image_size", "channels": "channels"}
_TFDS_FIELDS = {"name": "tfds_name", "split": "tfds_split", "image_key": "tfds_image_key",
                "label_key": "tfds_label_key", "data_dir": "tfds_data_dir",
                "download": "tfds_download", "image_size": "image_size", "channels": "channels",
                "crop": "crop"}
_SOURCES: dict[str, tuple[Callable[..., Source], dict[str, str]]] = {
    "mnist78": (mnist_digits, _MNIST_FIELDS),
    "mnist": (mnist_classes, _MNIST_FIELDS),
    "image_folder": (image_folder, {"path": "path", "image_size": "image_size",
                                    "channels": "channels", "class_folders": "class_folders",
                                    "skip_bad_images": "skip_bad_images", "crop": "crop"}),
    "tfds": (tfds_dataset, _TFDS_FIELDS),
    "tfds_stream": (tfds_stream, _TFDS_FIELDS),
}
# None: TFDS's folder; ignore labels; no crop
_MAY_BE_NONE = ("tfds_data_dir", "tfds_label_key", "crop")
SOURCE_NAMES = tuple(_SOURCES)
AUGMENTATION_FIELDS = ("random_flip",)  # read by the Batcher (sagan_jax/data/augment.py)
CONFIG_FIELDS = tuple(sorted({"source", *AUGMENTATION_FIELDS}
                             | {f for _, kw in _SOURCES.values() for f in kw.values()}))


def _as_dict(config: Any) -> dict[str, Any]:
  if isinstance(config, Mapping):
    return dict(config)
  if hasattr(config, "keys") and hasattr(config, "__getitem__"):  # ConfigDict
    return {k: config[k] for k in config.keys()}
  raise DataError(f"data config must be a dict or ConfigDict, got {type(config).__name__}")


def make_source(config: Any) -> Source:
  """Builds the source a data config describes.

  Args:
    config: dict or ``ConfigDict`` with ``source`` and the fields that source
      reads (see this module's docstring), e.g. ``base_config().data``.

  Returns:
    The `Source`.

  Raises:
    DataError: unknown source name (the message lists the valid ones), an
      unknown field, a missing field, or an invalid value.
  """
  fields = _as_dict(config)
  unknown = sorted(set(fields) - set(CONFIG_FIELDS))
  if unknown:
    raise DataError(f"unknown data config field(s) {unknown}; known fields: "
                    f"{list(CONFIG_FIELDS)}")
  name = fields.get("source")
  if name not in _SOURCES:
    raise DataError(f"unknown data source {name!r}; valid sources: {list(SOURCE_NAMES)}")
  builder, keywords = _SOURCES[name]
  kwargs = {}
  for keyword, field in keywords.items():
    if field not in fields:
      raise DataError(f"data source '{name}' needs config field '{field}' (every field and "
                      "its default: sagan_jax.train.config.base_config)")
    if fields[field] is None and field not in _MAY_BE_NONE:
      raise DataError(f"data source '{name}' needs config field '{field}' to be set")
    kwargs[keyword] = fields[field]
  return builder(**kwargs)
