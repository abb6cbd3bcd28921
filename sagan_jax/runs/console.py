"""What the command-line entry points share: log levels and one-line flag errors."""

from __future__ import annotations

import logging
import sys

from absl import app
from absl import logging as absl_logging


def quiet_logging() -> None:
  """Our progress lines at INFO; other libraries (orbax, jax) at WARNING only.

  Orbax logs every step of every save at INFO, which would bury the single
  progress line the trainer prints.
  """
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger("sagan_jax").setLevel(logging.INFO)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, but a ``--config.<field>`` the config lacks is one
  clear line (ml_collections raises a bare KeyError/AttributeError for it)."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as error:
    message = error
    while isinstance(message, BaseException) and message.args:
      message = message.args[0]  # AttributeError(KeyError("'name'\nDid you mean …"))
    name, _, hint = str(message).partition("\n")
    name = name.strip("'\"")
    culprits = [arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("--config.")
                and name in arg.split("=", 1)[0][len("--config."):].split(".")]
    if not culprits:
      raise
    sys.exit(f"error: {culprits[0]}: the config has no field {name!r}"
             + (f". {hint.strip()}" if hint.strip() else "")
             + " (every field and its default: sagan_jax/train/config.py)")
