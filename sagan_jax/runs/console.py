"""What the command-line entry points share: log levels and format, one-line flag errors."""

from __future__ import annotations

import logging
import sys

from absl import app
from absl import logging as absl_logging


class _PlainFormatter(logging.Formatter):
  """The message alone (``warning: …`` above INFO): the console is for a person."""

  def format(self, record: logging.LogRecord) -> str:
    message = super().format(record)
    if record.levelno > logging.INFO:
      return f"{record.levelname.lower()}: {message}"
    return message


def quiet_logging() -> None:
  """Our lines at INFO, plain (no absl prefix of level, time, thread and file);
  other libraries (orbax, jax) at WARNING only, in absl's format.

  Orbax logs every step of every save at INFO, which would bury the single
  progress line the trainer prints.
  """
  absl_logging.set_verbosity(absl_logging.WARNING)
  ours = logging.getLogger("sagan_jax")
  ours.setLevel(logging.INFO)
  if not any(isinstance(h.formatter, _PlainFormatter) for h in ours.handlers):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PlainFormatter("%(message)s"))
    ours.addHandler(handler)
  ours.propagate = False  # not again through absl's handler on the root logger


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


def info(message: str, *args) -> None:
  """A line for the person at the console (plain, as the trainer's)."""
  logging.getLogger("sagan_jax.cli").info(message, *args)
