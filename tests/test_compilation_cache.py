"""Where the command-line tools keep JAX's compiled programs (sagan_jax.runtime.compilation_cache),
and the console's compile lines (sagan_jax.runtime.compilation)."""

from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import pytest

from sagan_jax.runtime import compilation, compilation_cache


@pytest.mark.parametrize("environ, expected", [
    ({}, os.path.join(os.path.expanduser("~"), ".cache", "sagan_jax", "jax_compilation")),
    ({"XDG_CACHE_HOME": "/x"}, "/x/sagan_jax/jax_compilation"),
    ({"SAGAN_JAX_COMPILATION_CACHE": "/mine"}, "/mine"),
    ({"SAGAN_JAX_COMPILATION_CACHE": "off"}, None),
    ({"SAGAN_JAX_COMPILATION_CACHE": "OFF"}, None),
    ({"SAGAN_JAX_COMPILATION_CACHE": "off", "JAX_COMPILATION_CACHE_DIR": "/jax"}, "/jax"),
    ({"JAX_COMPILATION_CACHE_DIR": "/jax", "XDG_CACHE_HOME": "/x"}, "/jax"),
])
def test_cache_directory_rules(environ, expected):
  assert compilation_cache.cache_directory(environ) == expected


def test_enable_sets_jax_config_and_off_leaves_it(tmp_path, monkeypatch):
  before = jax.config.jax_compilation_cache_dir
  try:
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("SAGAN_JAX_COMPILATION_CACHE", "off")
    assert compilation_cache.enable() is None
    assert jax.config.jax_compilation_cache_dir == before
    monkeypatch.setenv("SAGAN_JAX_COMPILATION_CACHE", str(tmp_path / "cache"))
    assert compilation_cache.enable() == str(tmp_path / "cache")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    assert (tmp_path / "cache").is_dir()
  finally:
    jax.config.update("jax_compilation_cache_dir", before)


def test_compile_lines_and_one_program_per_batch_shape(caplog):
  calls = []
  jitted = jax.jit(lambda state, batch: (calls.append(1), state + batch.sum())[1])
  step = compilation.CompiledByShape(jitted, "a test step")
  with caplog.at_level(logging.INFO, logger="sagan_jax"):
    assert float(step(jnp.float32(1), jnp.ones(3))) == 4.0
    assert float(step(jnp.float32(2), jnp.ones(3))) == 5.0   # same shape: no new program
    assert float(step(jnp.float32(0), jnp.ones(2))) == 2.0   # a smaller batch: one more
  lines = [r.getMessage() for r in caplog.records]
  assert sum(line.startswith("Compiling a test step") for line in lines) == 2
  assert sum(line.startswith("Compiled a test step in ") for line in lines) == 2
  assert len(calls) == 2  # traced once per shape
