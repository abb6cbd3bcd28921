"""One persistent compilation cache per test session, and trainers on one device.

Compiled programs go to a cache on disk, so each distinct program is compiled once
per test session (also by the CLI tests' subprocesses), not once per ``Trainer``.
"""

from __future__ import annotations

import contextlib
import pathlib

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from sagan_jax import sharding


def use_compilation_cache(directory) -> None:
  """Points this process's persistent compilation cache at ``directory`` (None: off)."""
  jax.config.update("jax_compilation_cache_dir", None if directory is None else str(directory))
  compilation_cache.reset_cache()


def cache_dir(tmp_path_factory) -> pathlib.Path:
  """One compilation cache for the whole test session (also test_cli's subprocesses).

  Its keys include the process's device count, so a process with four (simulated)
  devices and one with one never share an entry — nor, on XLA:CPU, the last bits
  of their results."""
  path = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
  path.mkdir(exist_ok=True)
  return path


@contextlib.contextmanager
def one_device_and_compilation_cache(tmp_path_factory):
  """Trainers get a one-device mesh (what ``python train.py`` gets on a one-CPU
  machine; quicker than conftest's four) and compiled programs are cached on disk."""
  make_mesh = sharding.make_mesh
  previous_cache = jax.config.jax_compilation_cache_dir
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(sharding, "make_mesh",
                  lambda devices=None: make_mesh(jax.devices()[:1] if devices is None else devices))
    use_compilation_cache(cache_dir(tmp_path_factory))
    try:
      yield
    finally:
      use_compilation_cache(previous_cache)
