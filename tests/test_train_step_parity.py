"""Whole training steps against the chapter's PyTorch loop, from identical weights,
images and noise: losses, D outputs, gradients (Adam's first moment: with β₁ = 0
it *is* the step's gradient), updated weights, u/v and BatchNorm running stats.

Tolerances: losses, outputs and gradients as tests/parity.py; u/v and BN
state ≤ 1e-4; updated weights ≤ 1e-4 wherever the weight's gradient was at
least 1e-6 in magnitude, and within Adam's 2·lr-per-step bound elsewhere (see
``tests.parity.assert_params_close_under_adam``: 8 of ~70k weights here).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from sagan_jax.interop.torch import from_torch
from sagan_jax.losses import get_loss
from sagan_jax.models import Discriminator64, Generator64
from sagan_jax.train.optimizers import adam
from sagan_jax.train.state import GANState, NetworkState
from sagan_jax.train.step import make_gan_update
from tests.parity import (SOURCES, STATE_ATOL, assert_close, assert_params_close_under_adam,
                          assert_tree_close, first_moment, load_case, nhwc, sub,
                          tiny_gradient_mask, without_sigma)

WIDTH = 8
LEARNING_RATES = {"G": 1e-4, "D": 4e-4}


def _network(module, state_dict, tx) -> NetworkState:
  variables = from_torch(module, state_dict)
  params = variables.pop("params")
  return NetworkState(params=params, collections=variables, opt_state=tx.init(params))


def _torch_grads_as_ours(module, case, prefix, params_template):
  """Torch's ``exp_avg`` (= the gradient, β₁ = 0) converted to our params layout."""
  grads = sub(case, prefix)
  # Reuse the state_dict converter: gradients of weight_orig land where kernels go.
  state = sub(case, prefix.replace("adam/exp_avg/", "state/"))
  state.update(grads)
  converted = from_torch(module, state)["params"]
  assert jax.tree.structure(converted) == jax.tree.structure(params_template)
  return converted


def _run(loss_name: str, source: str):
  name = "chapter_train_step" if loss_name == "hinge" else "chapter_train_step_non_saturating"
  case = load_case(name, source)
  generator, discriminator = Generator64(width=WIDTH), Discriminator64(width=WIDTH)
  g_tx, d_tx = adam(1e-4, 0.0, 0.9), adam(4e-4, 0.0, 0.9)
  state = GANState(step=np.int32(0), rng=jax.random.PRNGKey(0),
                   generator=_network(generator, sub(case, "G/state/"), g_tx),
                   discriminator=_network(discriminator, sub(case, "D/state/"), d_tx))
  update = jax.jit(make_gan_update(generator, discriminator, g_tx, d_tx, get_loss(loss_name)))
  return case, generator, discriminator, state, update


@pytest.mark.parametrize("source", SOURCES)
def test_two_chapter_steps_match_torch(source):
  case, generator, discriminator, state, update = _run("hinge", source)
  tiny = {"G": None, "D": None}
  for t in (1, 2):
    p = f"step{t}/"
    state, metrics = update(state, nhwc(case[p + "input/images"]),
                            case[p + "input/z1"].reshape(-1, 20),
                            case[p + "input/z2"].reshape(-1, 20))
    assert_close(metrics["d_loss"], case[p + "d_loss"], what=f"step {t} d_loss")
    assert_close(metrics["g_loss"], case[p + "g_loss"], what=f"step {t} g_loss")
    assert_close(metrics["d_real"], case[p + "d_out_real_mean"], what=f"step {t} D(real)")
    assert_close(metrics["d_fake"], case[p + "d_out_fake_mean"], what=f"step {t} D(fake)")

    for label, module, net in (("G", generator, state.generator),
                               ("D", discriminator, state.discriminator)):
      grads = _torch_grads_as_ours(module, case, f"{p}{label}/adam/exp_avg/", net.params)
      # Step 2 starts from weights that differ by the step-1 allowance below, so
      # its gradients get the state tolerance.
      assert_tree_close(first_moment(net.opt_state), grads,
                        atol=1e-5 if t == 1 else STATE_ATOL, what=f"step {t} {label} grads")
      expected = from_torch(module, sub(case, f"{p}{label}/state/"))
      tiny[label] = tiny_gradient_mask(grads, tiny[label])
      assert_params_close_under_adam(net.params, expected["params"], tiny[label],
                                     LEARNING_RATES[label], t, atol=STATE_ATOL,
                                     what=f"step {t} {label} params")
      collections = {k: expected[k] for k in net.collections}
      assert_tree_close(without_sigma(net.collections), without_sigma(collections),
                        atol=STATE_ATOL, what=f"step {t} {label} spectral/BN state")
  assert int(state.step) == 2


@pytest.mark.parametrize("source", SOURCES)
def test_non_saturating_losses_match_torch(source):
  case, generator, discriminator, state, update = _run("non_saturating", source)
  for t in (1, 2):
    p = f"step{t}/"
    state, metrics = update(state, nhwc(case[p + "input/images"]),
                            case[p + "input/z1"].reshape(-1, 20),
                            case[p + "input/z2"].reshape(-1, 20))
    assert_close(metrics["d_loss"], case[p + "d_loss"], what=f"ns step {t} d_loss")
    assert_close(metrics["g_loss"], case[p + "g_loss"], what=f"ns step {t} g_loss")
    for label, module, net in (("G", generator, state.generator),
                               ("D", discriminator, state.discriminator)):
      buffers = {**sub(case, f"{label}/state/"), **sub(case, f"{p}{label}/state/")}
      expected = from_torch(module, buffers)
      collections = {k: expected[k] for k in net.collections}
      assert_tree_close(without_sigma(net.collections), without_sigma(collections),
                        atol=STATE_ATOL, what=f"ns step {t} {label} buffers")
