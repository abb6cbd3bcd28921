"""SelfAttention against the seed's ``Self_Attention`` and BigGAN's ``Attention``
(values, attention maps and gradients; ≤ 1e-5 abs, float32)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.interop import torch as interop
from sagan_jax.layers import OfficialSelfAttention, SelfAttention, attend
from tests.parity import SOURCES, assert_close, assert_tree_close, load_case, nchw, nhwc, sub


def _param_grads_to_ours(grads: dict, official: bool) -> dict:
  """Torch parameter gradients → our params layout (through the same converter)."""
  if official:
    fake_state = {k.replace("weight_orig", "weight"): v for k, v in grads.items()}
  else:
    fake_state = dict(grads)
  params = interop.self_attention(fake_state, official=official)["params"]
  return params


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", ["self_attention_seed", "self_attention_seed_rect"])
def test_seed_self_attention_matches_torch(name, source):
  case = load_case(name, source)
  variables = interop.self_attention(sub(case, "state/"))
  module = SelfAttention()
  x, r = nhwc(case["input/x"]), nhwc(case["input/r"])
  y, attention_map = module.apply(variables, x, return_attention=True)
  assert_close(nchw(y), case["fwd/out"], what="out")
  assert_close(attention_map, case["fwd/attention_map"], what="attention map")
  np.testing.assert_allclose(np.sum(attention_map, axis=-1), 1.0, rtol=1e-5)
  # Without the map the layer may take another path; the values must not change.
  assert_close(nchw(module.apply(variables, x)), case["fwd/out"], what="out (no map)")

  def loss(params, x):
    return jnp.sum(module.apply({"params": params}, x) * r)

  loss_value, (param_grads, x_grad) = jax.value_and_grad(loss, argnums=(0, 1))(
      variables["params"], x)
  assert_close(loss_value, case["bwd/loss"], what="loss (a sum)")
  expected = _param_grads_to_ours(sub(case, "bwd/grad/"), official=False)
  assert_tree_close(param_grads, expected, what="param grads")
  assert_close(nchw(x_grad), case["bwd/grad/x"], what="input grad")


@pytest.mark.parametrize("source", SOURCES)
def test_official_self_attention_matches_torch(source):
  case = load_case("self_attention_official", source)
  variables = interop.self_attention(sub(case, "state/"), official=True)
  module = OfficialSelfAttention()
  x, r = nhwc(case["input/x"]), nhwc(case["input/r"])

  (y, beta), updated = module.apply(variables, x, return_attention=True, update_stats=True,
                                    mutable=["spectral"])
  assert_close(nchw(y), case["train/out"], what="train out")
  assert_close(beta, case["train/beta"], what="train beta")
  expected_state = interop.self_attention(
      {**sub(case, "state/"), **sub(case, "train/state/")}, official=True)
  assert_tree_close(updated["spectral"], expected_state["spectral"], what="u, v after train")

  variables = {**variables, **updated}
  y_eval, beta_eval = module.apply(variables, x, return_attention=True, update_stats=False)
  assert_close(nchw(y_eval), case["eval/out"], what="eval out")
  assert_close(beta_eval, case["eval/beta"], what="eval beta")

  def loss(params, x):
    out, new = module.apply({"params": params, "spectral": variables["spectral"]}, x,
                            update_stats=True, mutable=["spectral"])
    return jnp.sum(out * r), new

  (loss_value, new), (param_grads, x_grad) = jax.value_and_grad(
      loss, argnums=(0, 1), has_aux=True)(variables["params"], x)
  assert_close(loss_value, case["bwd/loss"], what="loss (a sum)")
  expected_state = interop.self_attention(
      {**sub(case, "state/"), **sub(case, "bwd/state/")}, official=True)
  assert_tree_close(new["spectral"], expected_state["spectral"], what="u, v after bwd")
  expected = _param_grads_to_ours(sub(case, "bwd/grad/"), official=True)
  assert_tree_close(param_grads, expected, what="param grads")
  assert_close(nchw(x_grad), case["bwd/grad/x"], what="input grad")


def test_chunked_attention_equals_materialized_values_and_grads():
  keys = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(keys[0], (2, 300, 8))
  k = jax.random.normal(keys[1], (2, 75, 8))
  v = jax.random.normal(keys[2], (2, 75, 16))
  r = jax.random.normal(keys[3], (2, 300, 16))

  def loss(q, k, v, chunk_size):
    return jnp.sum(attend(q, k, v, chunk_size=chunk_size) * r)

  full = jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v, None)
  chunked = jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v, 64)  # 300 = 4·64 + 44
  assert_close(chunked[0], full[0], atol=1e-3, what="loss (a sum of 9600 terms)")
  for got, want, what in zip(chunked[1], full[1], "qkv"):
    assert_close(got, want, what=f"d{what}")


def test_seed_layer_uses_chunks_above_threshold():
  x = jax.random.normal(jax.random.key(0), (1, 16, 16, 8))
  variables = SelfAttention().init(jax.random.key(1), x)
  variables = {"params": {**variables["params"], "gamma": jnp.asarray(0.5)}}
  full = SelfAttention(chunk_size=None).apply(variables, x)
  chunked = SelfAttention(chunk_size=64).apply(variables, x)
  assert_close(chunked, full, what="chunked layer")
  jaxpr = str(jax.make_jaxpr(SelfAttention(chunk_size=64).apply)(variables, x))
  assert "256,256" not in jaxpr.replace(" ", "")  # no N×N array anywhere


@pytest.mark.parametrize("shape, message", [
    ((2, 8, 8), "4-D"),
    ((2, 4, 4, 4), "divisible by qk_reduction"),
    ((2, 4, 4, 12), "divisible by qk_reduction"),
])
def test_bad_input_shapes_raise_clear_errors(shape, message):
  with pytest.raises(ValueError, match=message):
    SelfAttention().init(jax.random.key(0), jnp.ones(shape))


def test_channel_mismatch_with_parameters_names_the_layer():
  variables = SelfAttention().init(jax.random.key(0), jnp.ones((1, 4, 4, 16)))
  with pytest.raises(ValueError, match=r"initialised for 16 channels.*\(1, 4, 4, 24\)"):
    SelfAttention().apply(variables, jnp.ones((1, 4, 4, 24)))


def test_official_variant_needs_even_sizes():
  with pytest.raises(ValueError, match="even height and width"):
    OfficialSelfAttention().init(jax.random.key(0), jnp.ones((1, 5, 4, 16)), update_stats=True)


def test_gamma_starts_at_zero_so_the_layer_starts_as_identity():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 16))
  variables = SelfAttention().init(jax.random.key(1), x)
  assert float(variables["params"]["gamma"]) == 0.0
  np.testing.assert_array_equal(SelfAttention().apply(variables, x), x)
