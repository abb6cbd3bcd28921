"""Builds a source from a config (a plain dict or an ``ml_collections.ConfigDict``).

One config may carry the fields of every source, so switching with
``--config.data.source=image_folder`` needs no other edit: fields that belong
to a source other than the chosen one are ignored. A field that belongs to
no source is an error (most likely a typo), and so is a missing required one.
A value of ``None`` means "not set".

Fields (defaults in brackets):

* ``source``: ``'mnist78'``, ``'image_folder'`` or ``'tfds'`` (required);
* ``image_size`` [64]: output height and width;
* ``channels``: 1 or 3 [1 for ``mnist78``; required for the others];
* ``mnist78``: ``digits`` [(7, 8)], ``per_digit`` [200], ``split``
  [``'train'``; or ``'heldout'``, ``'all'``] — see `mnist_digits`;
* ``image_folder``: ``path`` (required) — see `ImageFolderSource`;
* ``tfds``: ``tfds_name`` (required), ``tfds_split`` [``'train'``],
  ``tfds_image_key`` [``'image'``], ``tfds_label_key`` [``'label'``],
  ``tfds_data_dir`` [TFDS default], ``tfds_download`` [True] — see
  `tfds_dataset`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from sagan_jax.data.errors import DataError
from sagan_jax.data.image_folder import image_folder
from sagan_jax.data.mnist import mnist_digits
from sagan_jax.data.source import Source
from sagan_jax.data.tfds_source import tfds_dataset

_COMMON = ("source", "image_size", "channels")
_REQUIRED = object()  # marks a field without a default

# source name -> (builder keyword -> (config field, default)).
_SOURCES: dict[str, tuple[Callable[..., Source], dict[str, tuple[str, Any]]]] = {
    "mnist78": (mnist_digits, {
        "image_size": ("image_size", 64),
        "channels": ("channels", 1),
        "digits": ("digits", (7, 8)),
        "per_digit": ("per_digit", 200),
        "split": ("split", "train"),
    }),
    "image_folder": (image_folder, {
        "path": ("path", _REQUIRED),
        "image_size": ("image_size", 64),
        "channels": ("channels", _REQUIRED),
    }),
    "tfds": (tfds_dataset, {
        "name": ("tfds_name", _REQUIRED),
        "split": ("tfds_split", "train"),
        "image_size": ("image_size", 64),
        "channels": ("channels", _REQUIRED),
        "image_key": ("tfds_image_key", "image"),
        "label_key": ("tfds_label_key", "label"),
        "data_dir": ("tfds_data_dir", None),
        "download": ("tfds_download", True),
    }),
}
SOURCE_NAMES = tuple(_SOURCES)
CONFIG_FIELDS = tuple(sorted(
    set(_COMMON) | {field for _, kw in _SOURCES.values() for field, _ in kw.values()}))


def _as_dict(config: Any) -> dict[str, Any]:
  if isinstance(config, Mapping):
    return dict(config)
  if hasattr(config, "keys") and hasattr(config, "__getitem__"):  # ConfigDict
    return {k: config[k] for k in config.keys()}
  raise DataError(f"data config must be a dict or ConfigDict, got {type(config).__name__}")


def make_source(config: Any) -> Source:
  """Builds the source a data config describes.

  Args:
    config: dict or ``ConfigDict`` with the fields listed in this module's
      docstring.

  Returns:
    The `Source`.

  Raises:
    DataError: unknown source name (the message lists the valid ones), an
      unknown field, a missing required field, or an invalid value.
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
  for keyword, (field, default) in keywords.items():
    value = fields.get(field)
    if value is None:
      if default is _REQUIRED:
        raise DataError(f"data source '{name}' needs config field '{field}'")
      value = default
    kwargs[keyword] = value
  return builder(**kwargs)
