"""Console set-up shared by the command-line entry points."""

from __future__ import annotations

import logging

from absl import logging as absl_logging


def quiet_logging() -> None:
  """Our progress lines at INFO; other libraries (orbax, jax) at WARNING only.

  Orbax logs every step of every save at INFO, which would bury the single
  progress line the trainer prints.
  """
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger("sagan_jax").setLevel(logging.INFO)
