"""JAX's persistent compilation cache, on by default for the command-line tools.

Compiling the chapter's train step takes most of a minute on a small CPU, and
every run of the same config compiles the same programs again. With the cache
on, a rerun (or a resumed run, ``sample.py`` or ``evaluate.py`` after training)
loads them from disk in seconds. Where it lives:

* ``JAX_COMPILATION_CACHE_DIR`` if set (JAX's own variable; respected as is);
* else ``SAGAN_JAX_COMPILATION_CACHE``: a directory, or ``off`` to disable;
* else ``$XDG_CACHE_HOME/sagan_jax/jax_compilation`` (``~/.cache/…``).

Programs that compile in under a second are not stored (JAX's
``jax_persistent_cache_min_compile_time_secs``). Deleting the directory is
always safe.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import jax

logger = logging.getLogger(__name__)

ENV_VAR = "SAGAN_JAX_COMPILATION_CACHE"
OFF = ("off", "0", "false", "no", "none", "")


def default_directory(environ=os.environ) -> str:
  """``$XDG_CACHE_HOME/sagan_jax/jax_compilation``, XDG's default being ``~/.cache``."""
  base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "sagan_jax", "jax_compilation")


def cache_directory(environ=os.environ) -> Optional[str]:
  """The cache directory the rules above give, or None when it is off."""
  if environ.get("JAX_COMPILATION_CACHE_DIR"):
    return environ["JAX_COMPILATION_CACHE_DIR"]
  setting = environ.get(ENV_VAR)
  if setting is None:
    return default_directory(environ)
  return None if setting.strip().lower() in OFF else setting


def enable() -> Optional[str]:
  """Turns the cache on (unless switched off); returns its directory or None.

  Call before the first compilation. A directory that cannot be created only
  turns the cache off, with a warning: caching is never worth failing a run.
  """
  directory = cache_directory()
  if directory is None:
    return None
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as error:
    logger.warning("compilation cache off: cannot create %s (%s)", directory, error)
    return None
  jax.config.update("jax_compilation_cache_dir", directory)
  return directory
