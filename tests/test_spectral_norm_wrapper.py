"""``SpectralNorm(layer)`` against ``torch.nn.utils.spectral_norm`` (the same fixtures and
tolerance as tests/test_spectral_norm_parity.py: ≤ 1e-5, float32), wrapping Flax's own
layers; and its state handling (collection name, eval without iteration)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.interop import torch as interop
from sagan_jax.layers import ConvTranspose, SNDense, SpectralNorm
from tests.parity import (SOURCES, assert_close, load_case, nchw, nhwc, spectral_torch_state,
                          sub)

# case -> (the wrapper around a layer *without* spectral norm, converter of the torch
# state_dict to our SN layer's variables, the weight's name, input is an image)
WRAPPED = {
    "sn_linear": (lambda: SpectralNorm(nn.Dense(6)), interop.linear, "kernel", False),
    "sn_conv2d": (lambda: SpectralNorm(nn.Conv(5, (4, 4), (2, 2), ((1, 1), (1, 1)))),
                  interop.conv2d, "kernel", True),
    "sn_conv_transpose2d": (lambda: SpectralNorm(ConvTranspose(4, 4, 2, 1)),
                            interop.conv_transpose2d, "kernel", True),
    "sn_embedding": (lambda: SpectralNorm(nn.Embed(10, 6)), interop.embedding, "embedding",
                     False),
}


def _wrapped_variables(variables, weight):
  """Our SN layer's variables in the wrapper's layout."""
  return {"params": {"layer_instance": variables["params"]},
          "spectral": {f"{weight}/{k}": v for k, v in variables["spectral"].items()}}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_wrapper_matches_torch(name, source):
  case = load_case(name, source)
  make, convert, weight, is_image = WRAPPED[name]
  module = make()
  to_ours = nhwc if is_image else np.asarray
  to_torch = nchw if is_image else np.asarray
  x, x2 = to_ours(case["input/x"]), to_ours(case["input/x2"])
  variables = _wrapped_variables(convert(sub(case, "state/")), weight)

  def train(variables, inputs):
    out, updated = module.apply(variables, inputs, update_stats=True, mutable=["spectral"])
    return out, {**variables, **updated}

  def check(call, out, variables):
    assert_close(to_torch(out), case[f"{call}/out"], what=f"{name} {call} out")
    expected = _wrapped_variables(convert(spectral_torch_state(case, call)), weight)["spectral"]
    for key, value in expected.items():
      assert_close(variables["spectral"][key], value, what=f"{name} {call} {key}")

  out, variables = train(variables, x)
  check("train1", out, variables)
  out, variables = train(variables, x2)
  check("train2", out, variables)
  # Eval: the stored u, v, no iteration and nothing mutable.
  eval_out = module.apply(variables, x, update_stats=False)
  assert_close(to_torch(eval_out), case["eval/out"], what=f"{name} eval out")


def test_wrapper_equals_our_sn_layer_and_keeps_pytorch_state():
  """Wrapping Dense gives SNDense's numbers and its u, v, σ, under a configurable
  collection; init does not iterate; eval leaves the state untouched."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32)
  sn_dense = SNDense(4)
  reference = sn_dense.init(jax.random.key(0), x, update_stats=False)
  wrapper = SpectralNorm(nn.Dense(4), collection_name="sn_state")
  variables = {"params": {"layer_instance": reference["params"]},
               "sn_state": {f"kernel/{k}": v for k, v in reference["spectral"].items()}}
  want, want_state = sn_dense.apply(reference, x, update_stats=True, mutable=["spectral"])
  got, got_state = wrapper.apply(variables, x, update_stats=True, mutable=["sn_state"])
  np.testing.assert_array_equal(got, want)
  for key in ("u", "v", "sigma"):
    np.testing.assert_array_equal(got_state["sn_state"][f"kernel/{key}"],
                                  want_state["spectral"][key])
  fresh = wrapper.init(jax.random.key(1), x, update_stats=True)
  assert set(fresh["sn_state"]) == {"kernel/u", "kernel/v", "kernel/sigma"}
  assert abs(float(jnp.linalg.norm(fresh["sn_state"]["kernel/u"])) - 1) < 1e-6
  # The gradient flows through σ = u·(W v) with u, v constant, as in SNDense (and torch).
  grad = jax.grad(lambda p: jnp.sum(wrapper.apply({**variables, "params": p}, x,
                                                  update_stats=False) ** 2))
  want_grad = jax.grad(lambda p: jnp.sum(sn_dense.apply({**reference, "params": p}, x,
                                                        update_stats=False) ** 2))
  np.testing.assert_allclose(grad(variables["params"])["layer_instance"]["kernel"],
                             want_grad(reference["params"])["kernel"], rtol=0, atol=1e-6)
  eval_out = wrapper.apply({**variables, **got_state}, x, update_stats=False)
  want_eval = sn_dense.apply({**reference, "spectral": want_state["spectral"]}, x,
                             update_stats=False)
  np.testing.assert_array_equal(eval_out, want_eval)


def test_wrapper_normalizes_nested_kernels():
  class TwoLayers(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3, name="second")(nn.relu(nn.Dense(4, name="first")(x)))

  x = jnp.ones((2, 5))
  variables = SpectralNorm(TwoLayers()).init(jax.random.key(0), x, update_stats=False)
  assert set(variables["spectral"]) == {f"{layer}/kernel/{k}" for layer in ("first", "second")
                                        for k in ("u", "v", "sigma")}
