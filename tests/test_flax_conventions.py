"""The layers take Flax's conventions: dtype / param_dtype / precision / initializers,
'SAME' / 'VALID' padding, an ``update_stats`` flag that nn.remat and nn.scan can carry,
and ``OfficialSelfAttention`` as a real class."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.layers import (ConvTranspose, Dense, Embed, OfficialSelfAttention, PointwiseConv,
                              SelfAttention, SNConv, SNConvTranspose, SNDense)

X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 16)), jnp.float32)

LAYERS = {
    "SNConv": (lambda **kw: SNConv(8, 4, 2, 1, **kw), X),
    "SNConvTranspose": (lambda **kw: SNConvTranspose(8, 4, 2, 1, **kw), X),
    "PointwiseConv": (lambda **kw: PointwiseConv(8, **kw), X),
    "SNDense": (lambda **kw: SNDense(8, **kw), X[:, 0, 0]),
    "SelfAttention": (lambda **kw: SelfAttention(**kw), X),
    "OfficialSelfAttention": (lambda **kw: OfficialSelfAttention(**kw), X),
}


def _run(layer, x):
  variables = layer.init(jax.random.key(0), x, update_stats=False)
  out, _ = layer.apply(variables, x, update_stats=True, mutable=["spectral"])
  return variables, out


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_dtype_and_param_dtype(name):
  make, x = LAYERS[name]
  # dtype=None: Flax's promotion of input and parameters (bf16 input, f32 params -> f32).
  variables, out = _run(make(), x.astype(jnp.bfloat16))
  assert out.dtype == jnp.float32
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
  # dtype: the computation's; param_dtype: the parameters'.
  variables, out = _run(make(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16), x)
  assert out.dtype == jnp.bfloat16
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.bfloat16)}
  # bf16 compute stays near the f32 result (8 bits of mantissa).
  _, out32 = _run(make(), x)
  _, out16 = _run(make(dtype=jnp.bfloat16), x)
  assert float(jnp.max(jnp.abs(out16.astype(jnp.float32) - out32))) <= 0.05 * max(
      1.0, float(jnp.max(jnp.abs(out32))))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_precision_reaches_every_product(name):
  make, x = LAYERS[name]
  layer = make(precision=jax.lax.Precision.HIGHEST)
  variables = layer.init(jax.random.key(0), x, update_stats=False)
  jaxpr = str(jax.make_jaxpr(functools.partial(layer.apply, update_stats=False))(variables, x))
  products = jaxpr.count("dot_general[") + jaxpr.count("conv_general_dilated[")
  assert products and jaxpr.count("Precision.HIGHEST") >= products, jaxpr


def test_initializers_are_flax_initializers():
  layer = SNDense(3, kernel_init=nn.initializers.ones, bias_init=nn.initializers.constant(2.0))
  params = layer.init(jax.random.key(0), jnp.ones((1, 4)), update_stats=False)["params"]
  np.testing.assert_array_equal(params["kernel"], np.ones((4, 3)))
  np.testing.assert_array_equal(params["bias"], np.full(3, 2.0))
  table = Embed(5, 2, embedding_init=nn.initializers.zeros).init(
      jax.random.key(0), jnp.zeros((1,), jnp.int32))["params"]["embedding"]
  assert not np.any(table)


@pytest.mark.parametrize("padding, size", [("SAME", 8), ("VALID", 7), (((0, 1), (1, 0)), 8)])
def test_conv_layer_padding_forms(padding, size):
  layer = SNConv(4, 2, 1, padding)
  variables = layer.init(jax.random.key(0), X, update_stats=False)
  assert layer.apply(variables, X, update_stats=False).shape == (2, size, size, 4)


def test_conv_transpose_same_is_the_chapters_padding():
  x = X[:, :4, :4]
  same = ConvTranspose(4, 4, 2, "SAME")
  torch_style = ConvTranspose(4, 4, 2, 1)
  variables = same.init(jax.random.key(0), x)
  np.testing.assert_array_equal(same.apply(variables, x), torch_style.apply(variables, x))
  assert same.apply(variables, x).shape == (2, 8, 8, 4)


def test_official_self_attention_is_a_class():
  assert isinstance(OfficialSelfAttention, type) and issubclass(OfficialSelfAttention,
                                                                SelfAttention)
  layer = OfficialSelfAttention(spectral_eps=1e-6)
  assert (layer.value_reduction, layer.pool_sources, layer.spectral_eps) == (2, True, 1e-6)


def test_self_attention_passes_spectral_eps_to_its_convs():
  # A tiny weight makes the power iteration's eps visible: with eps above ‖Wᵀu‖ the
  # vector is divided by eps, not by its norm, so σ differs.
  layer = OfficialSelfAttention(spectral_eps=10.0, kernel_init=nn.initializers.constant(1e-3))
  variables = layer.init(jax.random.key(0), X, update_stats=False)
  _, state = layer.apply(variables, X, update_stats=True, mutable=["spectral"])
  default = OfficialSelfAttention(kernel_init=nn.initializers.constant(1e-3))
  _, default_state = default.apply(variables, X, update_stats=True, mutable=["spectral"])
  sigma = state["spectral"]["key_conv"]["sigma"]
  assert not np.allclose(sigma, default_state["spectral"]["key_conv"]["sigma"])


class _Stack(nn.Module):
  """Two remat'ed SN convs: the flag static (static_argnums) or traced (a jnp bool)."""
  static: bool

  @nn.compact
  def __call__(self, x, train):
    if self.static:
      conv = nn.remat(SNConv, static_argnums=(2,))  # (self, x, update_stats)
    else:
      conv = nn.remat(SNConv)
    x = conv(16, 3, 1, 1, name="a")(x, train)
    return conv(16, 3, 1, 1, name="b")(x, train)


def test_update_stats_under_remat_static_or_traced():
  variables = _Stack(True).init(jax.random.key(0), X, False)
  results = []
  for static, flag in ((True, True), (False, jnp.bool_(True))):
    def loss(params, flag=flag, static=static):
      out, state = _Stack(static).apply({**variables, "params": params}, X, flag,
                                        mutable=["spectral"])
      return jnp.sum(out ** 2), state
    (value, state), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    results.append((value, state, grads))
  (v1, s1, g1), (v2, s2, g2) = results
  np.testing.assert_allclose(v1, v2, rtol=1e-6)
  for a, b in zip(jax.tree.leaves((s1, g1)), jax.tree.leaves((s2, g2))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # A traced False keeps the stored vectors (and gives eval mode's output).
  out, state = _Stack(False).apply(variables, X, jnp.bool_(False), mutable=["spectral"])
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(variables["spectral"])):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(out, _Stack(True).apply(variables, X, False), rtol=1e-6)


class _Cell(nn.Module):
  @nn.compact
  def __call__(self, carry, _, train):
    return SNDense(8, name="dense")(carry, train), None


def test_update_stats_under_scan():
  """nn.scan over an SNDense with the flag broadcast: every step iterates its own u, v,
  as three layers applied by hand do."""
  scanned = nn.scan(_Cell, variable_axes={"params": 0, "spectral": 0},
                    split_rngs={"params": True}, in_axes=(0, nn.broadcast), length=3)()
  x = X[:, 0, 0, :8]
  variables = scanned.init(jax.random.key(0), x, None, False)
  (out, _), state = scanned.apply(variables, x, None, True, mutable=["spectral"])
  want = x
  for i in range(3):
    layer = jax.tree.map(lambda t, i=i: t[i], variables)
    want, layer_state = SNDense(8).apply(
        {"params": layer["params"]["dense"], "spectral": layer["spectral"]["dense"]}, want,
        True, mutable=["spectral"])
    np.testing.assert_allclose(state["spectral"]["dense"]["u"][i],
                               layer_state["spectral"]["u"], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
