"""Spectral-norm layers against ``torch.nn.utils.spectral_norm`` (≤ 1e-5 abs, float32).

Each case replays PyTorch's call sequence: two train-mode calls (u, v advance),
an eval-mode call (no iteration), a weight change then a train call, and a
train call with a backward pass. Outputs, u, v, σ and the gradients w.r.t.
``weight_orig``, bias and input must match after every call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.interop import torch as interop
from sagan_jax.layers import SNConv, SNConvTranspose, SNDense, SNEmbed
from tests.parity import (SOURCES, assert_close, assert_tree_close, load_case, nchw, nhwc,
                          spectral_torch_state, sub)

# case name → (module, converter of a torch state_dict, input is an image)
LAYERS = {
    "sn_linear": (lambda: SNDense(6), interop.linear, False),
    "sn_conv2d": (lambda: SNConv(5, kernel_size=4, strides=2, padding=1), interop.conv2d, True),
    "sn_conv2d_n3": (lambda: SNConv(5, kernel_size=4, strides=2, padding=1,
                                    num_power_iterations=3), interop.conv2d, True),
    "sn_conv_transpose2d": (lambda: SNConvTranspose(4, kernel_size=4, strides=2, padding=1),
                            interop.conv_transpose2d, True),
    "sn_conv_transpose2d_z": (lambda: SNConvTranspose(8, kernel_size=4, strides=1, padding=0),
                              interop.conv_transpose2d, True),
    "sn_embedding": (lambda: SNEmbed(10, 6), interop.embedding, False),
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_spectral_norm_layer_matches_torch(name, source):
  case = load_case(name, source)
  make_module, convert, is_image = LAYERS[name]
  module = make_module()
  to_ours = nhwc if is_image else np.asarray
  to_torch = nchw if is_image else np.asarray
  x, x2 = to_ours(case["input/x"]), to_ours(case["input/x2"])
  variables = convert(sub(case, "state/"))

  def train(variables, inputs):
    out, updated = module.apply(variables, inputs, update_stats=True, mutable=["spectral"])
    return out, {**variables, **updated}

  def check(call, out, variables, weight_key="state/weight_orig"):
    assert_close(to_torch(out), case[f"{call}/out"], what=f"{name} {call} out")
    expected = convert(spectral_torch_state(case, call, weight_key))
    assert_tree_close(variables["spectral"], expected["spectral"], what=f"{name} {call} u,v,σ")
    assert_close(variables["spectral"]["sigma"], case[f"{call}/sigma"], what=f"{call} σ")

  out, variables = train(variables, x)
  check("train1", out, variables)
  out, variables = train(variables, x2)
  check("train2", out, variables)

  eval_out = module.apply(variables, x, update_stats=False)
  assert_close(to_torch(eval_out), case["eval/out"], what=f"{name} eval out")

  changed = convert({**spectral_torch_state(case, "train2"), "weight_orig": case["changed/weight_orig"]})
  variables = {"params": changed["params"], "spectral": variables["spectral"]}
  out, variables = train(variables, x)
  check("train3", out, variables, "changed/weight_orig")

  r = to_ours(case["input/r"])
  float_input = "bwd/grad/x" in case

  def loss(params, inputs):
    out, updated = module.apply({"params": params, "spectral": variables["spectral"]},
                                inputs, update_stats=True, mutable=["spectral"])
    return jnp.sum(out * r), (out, updated)

  argnums = (0, 1) if float_input else 0
  (loss_value, (out, updated)), grads = jax.value_and_grad(
      loss, argnums=argnums, has_aux=True)(variables["params"], x)
  check("bwd", out, {"spectral": updated["spectral"]}, "changed/weight_orig")
  assert_close(loss_value, case["bwd/loss"], what="bwd loss (a sum)")
  param_grads = grads[0] if float_input else grads
  torch_grads = {"weight": case["bwd/grad/weight_orig"]}
  if "bwd/grad/bias" in case:
    torch_grads["bias"] = case["bwd/grad/bias"]
  expected_grads = convert(torch_grads)["params"]
  assert_tree_close(param_grads, expected_grads, what=f"{name} weight grads")
  if float_input:
    assert_close(to_torch(grads[1]), case["bwd/grad/x"], what=f"{name} input grad")


def test_eval_mode_does_not_iterate_or_need_mutable():
  module = SNConv(3, kernel_size=3, padding=1)
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 4))
  variables = module.init(jax.random.key(1), x, update_stats=True)
  out = module.apply(variables, x, update_stats=False)  # immutable: would raise if it wrote
  assert out.shape == (2, 5, 5, 3)
  _, updated = module.apply(variables, x, update_stats=True, mutable=["spectral"])
  assert not np.allclose(updated["spectral"]["u"], variables["spectral"]["u"])


def test_missing_update_stats_is_an_error():
  module = SNDense(3)
  x = jnp.ones((2, 4))
  variables = module.init(jax.random.key(0), x, update_stats=False)
  with pytest.raises(ValueError, match="update_stats"):
    module.apply(variables, x)


def test_init_does_not_iterate():
  """A fresh layer holds normalised random u, v, like a fresh PyTorch module."""
  module = SNDense(3)
  variables = module.init(jax.random.key(0), jnp.ones((2, 4)), update_stats=True)
  u, v = variables["spectral"]["u"], variables["spectral"]["v"]
  np.testing.assert_allclose(np.linalg.norm(u), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(v), 1.0, rtol=1e-6)
  # v is an independent draw, not normalize(Wᵀu) — as in torch.
  w = variables["params"]["kernel"]
  assert not np.allclose(np.abs(v), np.abs(np.asarray(w @ u) / np.linalg.norm(w @ u)), atol=1e-3)
