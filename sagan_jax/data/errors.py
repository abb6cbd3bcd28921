"""Errors raised by the data pipeline.

Every problem the pipeline can diagnose (bad configuration, missing folder,
unreadable image, missing optional dependency) raises a `DataError`, so a
trainer can catch data problems in one place without a bare ``except``.
"""

from __future__ import annotations


class DataError(ValueError):
  """A data source or batcher was misconfigured or met unusable data."""


class DataNotFoundError(DataError, FileNotFoundError):
  """A file or folder a data source needs does not exist.

  Also a `FileNotFoundError`, so code that already handles missing files
  keeps working.
  """
