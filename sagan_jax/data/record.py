"""What a run trained on, as a small JSON-able record, and how two records differ.

A checkpoint keeps the record of the data it was trained on, so a resume on other
data — the same config pointed at another folder, a folder that gained or lost
files — is noticed (`sagan_jax.train.checkpoint.Checkpointer.check_compatible`)
instead of silently training on.

The record is cheap to make: no image is decoded. An image folder is identified by
its images' count and a digest of their paths relative to the folder, their sizes and
their first and last 4 KiB (read by the header check: `ImageFolderSource.fingerprint`),
so moving the folder keeps the identity while adding, removing, renaming or replacing
a file changes it; a source with labels also by a digest of them. ``path`` says where the data was, for
the messages, and is not compared.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping, Optional

import numpy as np

# Shown, never compared: the same files moved elsewhere are the same data.
_NOT_COMPARED = ("path",)


def _digest(parts: Iterable[bytes]) -> str:
  hasher = hashlib.sha256()
  for part in parts:
    hasher.update(part)
    hasher.update(b"\0")
  return hasher.hexdigest()[:16]  # 64 bits: a fingerprint, not a security boundary


def data_record(source: Any, data_config: Mapping[str, Any]) -> dict[str, Any]:
  """The record of ``source``, built by `make_source` from ``data_config``.

  Returns:
    ``{"source": name, "images": count}``, plus for an image folder ``path``
    (absolute) and ``files`` (digest of the relative paths), for TFDS ``tfds``
    (``name[split]``), and ``labels`` (digest) where the source holds labels.
  """
  record: dict[str, Any] = {"source": str(data_config["source"]), "images": len(source)}
  files = getattr(source, "files", None)
  root = getattr(source, "root", None)
  if files is not None and root is not None:
    record["path"] = str(root)
    fingerprint = getattr(source, "fingerprint", None)  # names, sizes and sampled bytes
    record["files"] = fingerprint or _digest(f.relative_to(root).as_posix().encode()
                                             for f in files)
  if record["source"] in ("tfds", "tfds_stream"):
    record["tfds"] = f"{data_config['tfds_name']}[{data_config['tfds_split']}]"
  labels = getattr(source, "labels", None)
  if labels is not None:
    record["labels"] = _digest([np.asarray(labels, np.int64).tobytes()])
  return record


def record_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """The compared fields whose values differ between two records."""
  return sorted(k for k in set(old) | set(new)
                if k not in _NOT_COMPARED and old.get(k) != new.get(k))


def describe_record(record: Optional[Mapping[str, Any]]) -> str:
  """``record`` in a few words, e.g. ``image folder /data/a (8 images, files 1a2b3c4d…)``."""
  if not record:
    return "unrecorded data"
  where = {"image_folder": f"image folder {record.get('path')}",
           "tfds": f"tfds {record.get('tfds')}", "tfds_stream": f"tfds {record.get('tfds')}"}
  what = where.get(record.get("source"), f"{record.get('source')} digits")
  details = [f"{record.get('images')} images"]
  if "files" in record:
    details.append(f"file list {record['files'][:8]}")
  if "labels" in record:
    details.append(f"labels {record['labels'][:8]}")
  return f"{what} ({', '.join(details)})"
