"""Forward-mode autodiff (jax.jvp, jax.jacfwd, jax.linearize) through every public layer
and both chapter models with their default settings — the GEMM convolutions on CPU and
the blocked attention — against the same computation with plain XLA convolutions and
the materialized attention, and against finite differences in float64.

Tolerance: ≤ 1e-5·max |reference| per array, float32. Both sides are float32 sums
of the same products in different orders, and their rounding is relative to the partial
sums, which reach the array's largest entries (entries near 0 come from cancellation): an
entry-wise relative bound would be one no float32 implementation meets (the 'xla' path is
as far from a float64 reference as the GEMM path, ~4e-6 of the largest entry)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.layers import (BatchNorm, ConvTranspose, Dense, Embed, OfficialSelfAttention,
                              PointwiseConv, SelfAttention, SNConv, SNConvTranspose, SNDense,
                              SNEmbed, SpectralNorm)
from sagan_jax.models import Discriminator64, Generator64
ATOL = 1e-5


def assert_tree_close(actual, expected, what=""):
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.max(np.abs(b))) or 1.0
    error = float(np.max(np.abs(a - b))) / scale
    assert error <= ATOL, f"{what}{jax.tree_util.keystr(path)}: {error:.3g} of max {scale:.3g}"

RNG = np.random.default_rng(0)
IMAGE = jnp.asarray(RNG.normal(size=(2, 32, 32, 16)), jnp.float32)  # N = 1024: blocked
VECTOR = jnp.asarray(RNG.normal(size=(2, 16)), jnp.float32)

EVAL = {"update_stats": False}
# name -> (layer with default settings, the same layer on the reference paths, input, call
# keyword arguments)
LAYERS = {
    "SNConv": (SNConv(8, 4, 2, 1), SNConv(8, 4, 2, 1, implementation="xla"), IMAGE, EVAL),
    "SNConvTranspose": (SNConvTranspose(8, 4, 2, 1),
                        SNConvTranspose(8, 4, 2, 1, implementation="xla"), IMAGE[:, :8, :8],
                        EVAL),
    "ConvTranspose_SAME": (ConvTranspose(8, 4, 2, "SAME"),
                           ConvTranspose(8, 4, 2, "SAME", implementation="xla"),
                           IMAGE[:, :8, :8], {}),
    "PointwiseConv": (PointwiseConv(8), PointwiseConv(8), IMAGE, {}),
    "Dense": (Dense(8), Dense(8), VECTOR, {}),
    "SNDense": (SNDense(8), SNDense(8), VECTOR, EVAL),
    "SelfAttention": (SelfAttention(), SelfAttention(chunk_size=None), IMAGE, {}),
    "OfficialSelfAttention": (OfficialSelfAttention(), OfficialSelfAttention(chunk_size=None),
                              IMAGE, EVAL),
    "SpectralNorm(nn.Conv)": (SpectralNorm(nn.Conv(8, (3, 3))), SpectralNorm(nn.Conv(8, (3, 3))),
                              IMAGE, EVAL),
    "BatchNorm": (BatchNorm(), BatchNorm(), IMAGE, {"use_running_average": False}),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_jvp_jacfwd_linearize_match_reference_paths(name):
  layer, reference, x, kwargs = LAYERS[name]
  variables = layer.init(jax.random.key(0), x, **kwargs)
  dx = jnp.asarray(RNG.normal(size=x.shape), jnp.float32)
  params = variables["params"]
  dparams = jax.tree.map(lambda p: jnp.asarray(RNG.normal(size=p.shape), p.dtype), params)

  def transforms(module):
    def f(x, params):
      out, _ = module.apply({**variables, "params": params}, x, mutable=["batch_stats"],
                            **kwargs)
      return out

    directions = jnp.stack([dx, jnp.roll(dx, 1), x, jnp.flip(dx, 0)])

    def along(s):  # the input moved along 4 directions: a (outputs, 4) Jacobian
      return f(x + jnp.tensordot(s, directions, axes=1), params)

    _, linear = jax.linearize(f, x, params)
    return {"jvp": jax.jvp(f, (x, params), (dx, dparams)),
            "linearize": linear(dx, dparams),
            "jacfwd": jax.jacfwd(along)(jnp.zeros(4))}

  got = jax.jit(lambda: transforms(layer))()
  want = jax.jit(lambda: transforms(reference))()
  assert_tree_close(got, want, what=name)


def test_embed_jvp_in_the_table():
  indices = jnp.array([0, 3, 3])
  for layer in (Embed(5, 3), SNEmbed(5, 3, update_stats=False)):
    variables = layer.init(jax.random.key(0), indices)
    f = lambda table, layer=layer, variables=variables: layer.apply(
        {**variables, "params": {"embedding": table}}, indices)
    table = variables["params"]["embedding"]
    dtable = jnp.asarray(RNG.normal(size=table.shape), jnp.float32)
    _, tangent = jax.jvp(f, (table,), (dtable,))
    if not layer.spectral_norm:  # a lookup: the tangent is the tangent's rows
      np.testing.assert_array_equal(tangent, dtable[indices])
    # The SN table is W/σ(W), smooth: a float32 central difference with h = 1e-3 has
    # rounding ~eps32·max|f|/h (6e-5 of the largest entry) and truncation ~h² ≈ 1e-6.
    h = 1e-3
    difference = (f(table + h * dtable) - f(table - h * dtable)) / (2 * h)
    scale = max(1.0, float(jnp.max(jnp.abs(difference))))
    np.testing.assert_allclose(tangent, difference, rtol=0, atol=2e-4 * scale)


@pytest.mark.parametrize("train", [False, True])
def test_models_jvp_and_linearize_match_reference_paths(train):
  z = jnp.asarray(RNG.normal(size=(2, 20)), jnp.float32)
  dz = jnp.asarray(RNG.normal(size=z.shape), jnp.float32)
  generator = Generator64(width=8)
  reference_g = Generator64(width=8, conv_implementation="xla", attention_chunk_size=None)
  discriminator = Discriminator64(width=8)
  reference_d = Discriminator64(width=8, conv_implementation="xla", attention_chunk_size=None)
  # Converged power iterations and settled BatchNorm statistics first: at init σ is
  # underestimated, W/σ is huge and the eval-mode tangent reaches ~1e7, where float32
  # rounding differs between any two summation orders by ~1e-3 (both paths are that far
  # from float64 there), which no 1e-5 bound survives.
  g_vars = generator.init(jax.random.key(0), z)
  d_vars = discriminator.init(jax.random.key(1), generator.apply(g_vars, z))
  settle = jax.jit(lambda g_vars, d_vars: (
      {**g_vars, **generator.apply(g_vars, z, train=True, mutable=["spectral", "batch_stats"])[1]},
      {**d_vars, **discriminator.apply(d_vars, generator.apply(g_vars, z), train=True,
                                       mutable=["spectral"])[1]}))
  for _ in range(30):
    g_vars, d_vars = settle(g_vars, d_vars)
  mutable = ["spectral", "batch_stats"] if train else False

  def transforms(g, d):
    def pipeline(z):
      out = g.apply(g_vars, z, train=train, mutable=mutable)
      fakes = out[0] if train else out
      logits = d.apply(d_vars, fakes, train=train, mutable=mutable)
      return logits[0] if train else logits
    _, linear = jax.linearize(pipeline, z)
    return {"jvp": jax.jvp(pipeline, (z,), (dz,)), "linearize": linear(dz),
            "jacfwd": jax.jacfwd(pipeline)(z)}

  got = jax.jit(lambda: transforms(generator, discriminator))()
  want = jax.jit(lambda: transforms(reference_g, reference_d))()
  assert_tree_close(got, want, what=f"G→D train={train}")


def test_layer_jvp_matches_finite_differences_in_float64():
  """Central differences of the blocked attention and the GEMM conv, in float64: step
  h = 1e-5 leaves truncation O(h²·f''') ≈ 1e-10 and rounding ~eps64·|f|/h ≈ 1e-11."""
  with jax.enable_x64():
    x = jnp.asarray(RNG.normal(size=(2, 32, 32, 16)), jnp.float64)
    dx = jnp.asarray(RNG.normal(size=x.shape), jnp.float64)
    for layer in (SelfAttention(gamma_init=nn.initializers.ones, param_dtype=jnp.float64),
                  SNConv(8, 4, 2, 1, param_dtype=jnp.float64)):
      variables = layer.init(jax.random.key(0), x, update_stats=False)
      f = jax.jit(lambda x: layer.apply(variables, x, update_stats=False))
      _, tangent = jax.jit(lambda x, dx: jax.jvp(f, (x,), (dx,)))(x, dx)
      h = 1e-5
      difference = (f(x + h * dx) - f(x - h * dx)) / (2 * h)
      np.testing.assert_allclose(np.asarray(tangent), np.asarray(difference), rtol=0,
                                 atol=1e-8 * max(1.0, float(jnp.max(jnp.abs(tangent)))))
