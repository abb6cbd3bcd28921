"""`sagan_jax.ops.compiler_options`: on CPU, convolutions on Eigen, matrix products on YNNPACK."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.ops import compiler_options as options_lib
from sagan_jax.ops.compiler_options import YNN_FUSION_OPTION, compiler_options

cpu_only = pytest.mark.skipif(jax.default_backend() != 'cpu', reason='an XLA:CPU option')


def _conv_and_dot(x, kernel, w):
  """A 3x3 convolution, then (``w`` given) a matrix product of its flattened output."""
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y if w is None else y.reshape(y.shape[0], -1) @ w


def _ynn_fusion_roots(options) -> set[str]:
  """The ops XLA:CPU handed to YNNPACK in `_conv_and_dot`'s compiled program (a 32-channel
  3x3 convolution: smaller ones stay with XLA either way)."""
  shapes = (jax.ShapeDtypeStruct((4, 16, 16, 32), jnp.float32),
            jax.ShapeDtypeStruct((3, 3, 32, 32), jnp.float32),
            jax.ShapeDtypeStruct((16 * 16 * 32, 64), jnp.float32))
  text = jax.jit(_conv_and_dot, compiler_options=options).lower(*shapes).compile().as_text()
  called = set(re.findall(r'calls=%?([\w.-]+).*"kind":"__ynn_fusion"', text))
  computations = {m.group(1): m.group(2) for m in re.finditer(
      r'^%?([\w.-]+) \([^\n]*\{\n(.*?)^\}', text, re.M | re.S)}
  return {op for name in called for op in ('convolution(', 'dot(')
          if op in computations.get(name, '')}


@cpu_only
def test_on_cpu_convolutions_leave_ynnpack_and_products_stay():
  options = compiler_options()
  assert options == {YNN_FUSION_OPTION: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'
                                        'LIBRARY_FUSION_TYPE_REDUCE'}
  # The option is what moves them: this XLA gives both to YNNPACK by default (if a newer
  # one stops doing so, the option and its measurements in benchmarks/README.md are stale).
  assert _ynn_fusion_roots({}) == {'convolution(', 'dot('}
  assert _ynn_fusion_roots(options) == {'dot('}


@cpu_only
def test_the_same_values_either_way():
  # The shapes `_ynn_fusion_roots` shows YNNPACK takes by default. Each output is a float32
  # sum of 3x3x32 = 288 products; either library's order is within 288 * 2^-24 of the sum of
  # the products' magnitudes of the exact value, so the two within twice that.
  rng = np.random.default_rng(0)
  x = rng.standard_normal((4, 16, 16, 32), np.float32)
  kernel = rng.standard_normal((3, 3, 32, 32), np.float32)
  conv = lambda x, kernel: _conv_and_dot(x, kernel, None)  # noqa: E731
  ours = np.asarray(jax.jit(conv, compiler_options=compiler_options())(x, kernel))
  default = np.asarray(jax.jit(conv)(x, kernel))
  magnitudes = np.asarray(jax.jit(conv)(np.abs(x), np.abs(kernel)))
  assert np.all(np.abs(ours - default) <= 2 * 288 * 2.0**-24 * magnitudes)
  assert np.abs(ours - default).max() > 0  # two libraries, two summation orders


def test_none_off_cpu_or_when_the_user_set_the_flag(monkeypatch):
  assert compiler_options('gpu') == {} and compiler_options('tpu') == {}
  monkeypatch.setenv('XLA_FLAGS', f'--{YNN_FUSION_OPTION}=-individual_convolution')
  assert compiler_options('cpu') == {}


@cpu_only
def test_an_xla_that_rejects_the_option_gets_none(monkeypatch):
  # A jaxlib that renamed the experimental flag or its values: slower, never broken.
  monkeypatch.setattr(options_lib, '_CPU_OPTIONS', {YNN_FUSION_OPTION: 'NOT_A_FUSION_TYPE'})
  options_lib._cpu_accepts_options.cache_clear()
  try:
    assert compiler_options('cpu') == {}
  finally:
    options_lib._cpu_accepts_options.cache_clear()
  monkeypatch.undo()
  assert compiler_options('cpu') != {}
