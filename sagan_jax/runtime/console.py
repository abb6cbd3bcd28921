"""What the command-line entry points share: log levels and format, one-line flag errors."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any, Iterator

import ml_collections
from absl import app
from absl import logging as absl_logging


class _PlainFormatter(logging.Formatter):
  """The message alone (``warning: …`` above INFO): the console is for a person."""

  def format(self, record: logging.LogRecord) -> str:
    message = super().format(record)
    if record.levelno > logging.INFO:
      return f"{record.levelname.lower()}: {message}"
    return message


class _OrbaxFailureEchoes(logging.Filter):
  """Drops what orbax's background save threads log when a save fails — a
  traceback per thread and array, then asyncio's "Task exception was never
  retrieved" for each at exit. The failure itself reaches the trainer, which
  reports it in one line with its cause (`sagan_jax.train.checkpoint`).
  (`_unraisable` drops the rest of the echo: tensorstore's late callbacks.)"""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR:
      return True
    from_orbax = _ORBAX_PATH in record.pathname
    # asyncio's "Task / _GatheringFuture exception was never retrieved": orbax's either by
    # the task's repr (its coroutine's file, or the checkpoint's temporary folder named in
    # the error) or by where the exception was raised.
    unretrieved = record.name == "asyncio" and "never retrieved" in record.getMessage() and (
        "orbax" in record.getMessage() or _raised_in_orbax(record.exc_info))
    return not (from_orbax or unretrieved)


_ORBAX_PATH = f"{os.sep}orbax{os.sep}"


def _raised_in_orbax(exc_info) -> bool:
  if not exc_info or exc_info[2] is None:
    return False
  return any(_ORBAX_PATH in frame.filename for frame in traceback.extract_tb(exc_info[2]))


_ORBAX_FAILURE_ECHOES = _OrbaxFailureEchoes()


def _unraisable(unraisable) -> None:
  """``sys.unraisablehook`` without orbax's echoes of a failure already handled:

  * a failed save: tensorstore writes still in flight when orbax's event loop
    closed report "Event loop is closed" from their callbacks, one traceback each;
  * a read whose step a trainer deleted meanwhile (`_closing_an_abandoned_orbax_read`).

  Everything else as by default."""
  frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
  if (unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed"
      and frames and frames[-1].filename.endswith(os.path.join("asyncio", "base_events.py"))):
    return
  if _closing_an_abandoned_orbax_read(unraisable):
    return
  sys.__unraisablehook__(unraisable)


def _closing_an_abandoned_orbax_read(unraisable) -> bool:
  """Whether ``unraisable`` is orbax turning the close of an abandoned read into an error.

  Orbax reads a checkpoint's arrays concurrently and wraps *any* interruption of one
  (``except BaseException``, orbax/_src/serialization/serialization.py) in a new
  ``Exception``. When one read fails — its step was deleted by a trainer's
  ``keep_checkpoints`` — the others are abandoned and closed when collected; each
  close (``GeneratorExit``) becomes that exception, which Python can only print as
  "Exception ignored in: <coroutine …>" with the whole TensorStore spec (~60 lines
  each). The failed read itself reached the reader, which read the newest step
  instead (`sagan_jax.train.checkpoint.Checkpointer.read_newest`)."""
  error = unraisable.exc_value
  return (isinstance(error, Exception) and isinstance(error.__cause__, GeneratorExit)
          and _raised_in_orbax((unraisable.exc_type, error, unraisable.exc_traceback)))


def quiet_logging() -> None:
  """Our lines at INFO, plain (no absl prefix of level, time, thread and file);
  other libraries (orbax, jax) at WARNING only, in absl's format.

  Orbax logs every step of every save at INFO, which would bury the single
  progress line the trainer prints; the errors it logs from background saves
  are reported by the trainer instead (`_OrbaxFailureEchoes`).
  """
  absl_logging.set_verbosity(absl_logging.WARNING)
  ours = logging.getLogger("sagan_jax")
  ours.setLevel(logging.INFO)
  if not any(isinstance(h.formatter, _PlainFormatter) for h in ours.handlers):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PlainFormatter("%(message)s"))
    ours.addHandler(handler)
  ours.propagate = False  # not again through absl's handler on the root logger
  for name in ("absl", "asyncio"):
    logging.getLogger(name).addFilter(_ORBAX_FAILURE_ECHOES)  # once, however often called
  sys.unraisablehook = _unraisable


def _config_files(argv: list[str]) -> Iterator[tuple[str, str]]:
  """``(flag, path)`` of each ``--config FILE`` / ``--config=FILE`` in ``argv``
  (a ``FILE:arg`` suffix, which ml_collections passes to ``get_config``, dropped)."""
  for i, arg in enumerate(argv[1:], start=1):
    if arg in ("--config", "-config") and i + 1 < len(argv):
      yield arg, argv[i + 1].split(":", 1)[0]
    elif arg.startswith(("--config=", "-config=")):
      yield arg.split("=", 1)[0], arg.split("=", 1)[1].split(":", 1)[0]


def _check_config_files(argv: list[str]) -> None:
  """A missing config file, or one Python cannot parse, is one line (ml_collections
  would defer the first to a traceback at first use and show the second as one)."""
  for flag, path in _config_files(argv):
    if not os.path.isfile(path):
      sys.exit(f"error: {flag} {path}: no such file")
    try:
      with open(path, "rb") as f:
        compile(f.read(), path, "exec")
    except SyntaxError as error:
      sys.exit(f"error: {flag} {path}, line {error.lineno}: {error.msg}"
               + (f": {error.text.strip()}" if error.text else ""))
    except (OSError, ValueError) as error:
      sys.exit(f"error: {flag} {path}: cannot read it ({error})")


def require_config(config: Any, flag: str = "--config") -> None:
  """Exits with one line if a config file's ``get_config()`` gave no ConfigDict."""
  if not isinstance(config, ml_collections.ConfigDict):
    sys.exit(f"error: {flag}: get_config() must return an ml_collections.ConfigDict, "
             f"got {type(config).__name__}")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, but a ``--config.<field>`` the config lacks, a missing
  config file or one with a syntax error is one clear line (ml_collections
  raises a bare KeyError/AttributeError, or a traceback, for them)."""
  _check_config_files(argv)
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
