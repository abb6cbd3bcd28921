"""Errors a user can cause when evaluating (bad arguments, workdir, missing weights)."""

from __future__ import annotations


class EvalError(ValueError):
  """An evaluation was misconfigured (bad argument, unsupported run or extractor)."""


class EvalAssetNotFoundError(EvalError, FileNotFoundError):
  """A weights file the evaluation needs does not exist."""
