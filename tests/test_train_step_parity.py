"""Whole training steps against the chapter's PyTorch loop, from identical weights,
images and noise: losses, D outputs, gradients (Adam's first moment: with β₁ = 0
it *is* the step's gradient), updated weights, u/v and BatchNorm running stats.

Tolerances: losses, outputs and gradients as tests/parity.py; u/v and BN
state ≤ 1e-4; updated weights ≤ 1e-4 wherever the weight's gradient is at
least 1e-6 in magnitude. Below that Adam's step ``lr·g/(|g|+ε)`` (ε = 1e-8)
is ill-conditioned: float32 noise of ~1e-8 in a gradient that is truly ~0 —
e.g. the bias of a conv feeding BatchNorm, whose exact gradient is 0 — flips
the step's sign in either framework. There the weights must still agree to
within the two frameworks' largest possible disagreement, 2·lr per step, and
weights that need this allowance must be rare (≤ 0.1%; 8 of ~70k here).
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
from tests.parity import SOURCES, assert_close, assert_tree_close, load_case, nhwc, sub

WIDTH = 8
STATE_ATOL = 1e-4
ILL_CONDITIONED_GRAD = 1e-6
LEARNING_RATES = {"G": 1e-4, "D": 4e-4}


def _assert_params_close(ours, torch_params, torch_grads, lr, steps, tiny_so_far, what):
  """Weights ≤ STATE_ATOL where Adam's steps were well-conditioned; ≤ 2·lr·steps elsewhere.

  ``tiny_so_far`` (path → mask) accumulates, over the steps, the weights that
  ever had a near-zero gradient: a step-1 sign flip persists in the weight.
  """
  flat_ours = jax.tree_util.tree_leaves_with_path(ours)
  flat_torch = dict(jax.tree_util.tree_leaves_with_path(torch_params))
  flat_grads = dict(jax.tree_util.tree_leaves_with_path(torch_grads))
  ill_conditioned = total = 0
  for path, value in flat_ours:
    name = f"{what}{jax.tree_util.keystr(path)}"
    diff = np.abs(np.asarray(value, np.float64) - np.asarray(flat_torch[path], np.float64))
    tiny = np.abs(np.asarray(flat_grads[path])) < ILL_CONDITIONED_GRAD
    tiny = tiny_so_far[path] = tiny | tiny_so_far.get(path, False)
    well = diff[~tiny]
    assert well.size == 0 or well.max() <= STATE_ATOL, f"{name}: {well.max():.3g}"
    assert diff.max() <= 2 * lr * steps + 1e-6, f"{name}: {diff.max():.3g} beyond Adam's bound"
    ill_conditioned += int((diff > STATE_ATOL).sum())
    total += diff.size
  assert ill_conditioned <= 1e-3 * total, f"{what}: {ill_conditioned}/{total} weights off"


def _network(module, state_dict, tx) -> NetworkState:
  variables = from_torch(module, state_dict)
  params = variables.pop("params")
  return NetworkState(params=params, collections=variables, opt_state=tx.init(params))


def _without_sigma(collections):
  """σ is stored for logging (from the last call's weights); torch keeps only u, v."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: None if path[-1].key == "sigma" else x, collections)


def _first_moment(opt_state):
  """optax.adam's ``mu`` (its ScaleByAdamState is the chain's first element)."""
  return opt_state[0].mu


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
  tiny_so_far = {"G": {}, "D": {}}
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
      assert_tree_close(_first_moment(net.opt_state), grads,
                        atol=1e-5 if t == 1 else STATE_ATOL, what=f"step {t} {label} grads")
      expected = from_torch(module, sub(case, f"{p}{label}/state/"))
      _assert_params_close(net.params, expected["params"], grads, LEARNING_RATES[label], t,
                           tiny_so_far[label], what=f"step {t} {label} params")
      collections = {k: expected[k] for k in net.collections}
      assert_tree_close(_without_sigma(net.collections), _without_sigma(collections),
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
      assert_tree_close(_without_sigma(net.collections), _without_sigma(collections),
                        atol=STATE_ATOL, what=f"ns step {t} {label} buffers")
