"""Data-parallel training on 1, 2 and 4 (simulated CPU) devices gives the same
result (≤ 1e-5), and checkpoints move between device counts.

tests/conftest.py starts the test process with four CPU devices.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from sagan_jax import sharding
from sagan_jax.train.checkpoint import Checkpointer, abstract_like
from sagan_jax.runs import Trainer
from tests.parity import (ILL_CONDITIONED_GRAD, assert_close, assert_params_close_under_adam,
                          assert_tree_close, tiny_gradient_mask)
from tests.tiny_configs import tiny_config, tiny_resnet_config

STEPS = 3


def _trainer(num_devices: int, config=None) -> Trainer:
  if jax.device_count() < num_devices:
    pytest.skip(f"needs {num_devices} devices (XLA_FLAGS=--xla_force_host_platform_device_count)")
  return Trainer(config or tiny_config(), mesh=sharding.make_mesh(jax.devices()[:num_devices]))


def _train(trainer: Trainer, steps: int = STEPS, threshold: float = ILL_CONDITIONED_GRAD):
  """Final state and metrics, and the weights whose gradient was ever below ``threshold``."""
  state = trainer.init_state()
  tiny = None
  for step in range(steps):
    state, metrics = trainer.train_step(state, trainer.batch(step))
    # With β₁ = 0, Adam's first moment is this step's (last D update's) gradient.
    grads = {"g": state.generator.opt_state[0].mu, "d": state.discriminator.opt_state[0].mu}
    tiny = tiny_gradient_mask(jax.device_get(grads), tiny, threshold)
  return jax.device_get(state), jax.device_get(metrics), tiny


@pytest.fixture(scope="module")
def one_device_result():
  return _train(_trainer(1))


@pytest.mark.parametrize("num_devices", [2, 4])
def test_training_on_several_devices_equals_one(num_devices, one_device_result):
  trainer = _trainer(num_devices)
  state, metrics, _ = _train(trainer)
  # The batch really is split: each device holds batch_size / num_devices images.
  batch = trainer.batch(0)["image"]
  assert {s.data.shape[0] for s in batch.addressable_shards} == {8 // num_devices}
  ref_state, ref_metrics, tiny = one_device_result
  assert_tree_close(metrics, ref_metrics, what=f"{num_devices}-device metrics")
  for label, net, ref_net, lr in (("g", state.generator, ref_state.generator, 1e-4),
                                  ("d", state.discriminator, ref_state.discriminator, 4e-4)):
    assert_tree_close(net.collections, ref_net.collections, what=f"{label} spectral/BN")
    assert_tree_close(net.opt_state, ref_net.opt_state, what=f"{label} Adam state")
    assert_params_close_under_adam(net.params, ref_net.params, tiny[label], lr, STEPS,
                                   what=f"{num_devices}-device {label} params")
  assert int(state.step) == STEPS


def test_checkpoint_from_two_devices_restores_on_one(tmp_path, one_device_result):
  config = tiny_config()
  two = _trainer(2, config)
  state, _, _ = _train(two, steps=2)
  checkpointer = Checkpointer(str(tmp_path))
  checkpointer.save(2, jax.device_put(state, sharding.replicated(two.mesh)), config)
  checkpointer.wait()
  one = _trainer(1, config)
  restored = checkpointer.restore(2, abstract_like(one.abstract_state(),
                                                    sharding.replicated(one.mesh)))
  checkpointer.close()
  assert {d for leaf in jax.tree.leaves(restored) for d in leaf.devices()} == {jax.devices()[0]}
  restored, _ = one.train_step(restored, one.batch(2))  # and it trains on one device
  ref_state, _, tiny = one_device_result
  assert_params_close_under_adam(jax.device_get(restored.generator.params),
                                 ref_state.generator.params, tiny["g"], 1e-4, STEPS,
                                 what="2→1-device resume")


def test_batch_that_does_not_divide_over_devices_is_an_error():
  with pytest.raises(ValueError, match="does not divide over 4 devices"):
    _trainer(4, tiny_config(batching__batch_size=6))


def test_partial_last_batch_must_divide_too():
  # 16 images at batch 6 leave a last batch of 4: 6 divides over 3 devices, 4 does not.
  config = tiny_config(batching__batch_size=6)
  config.data.per_digit = 8  # 16 images: batches of 6, 6, 4
  with pytest.raises(ValueError, match="final partial batch"):
    _trainer(3, config) if jax.device_count() >= 3 else pytest.skip("needs 3 devices")


# Conv biases before a BatchNorm have a gradient that is 0 up to float32 noise of
# ~√(B·H·W)·ε·|δ| (test_resnet_parity.py): below 1e-5 Adam's sign is noise there.
RESNET_ILL_CONDITIONED_GRAD = 1e-5
# Such biases (linear → block1's BN, every block's three convs → a BN) are ~1.1% of this
# tiny G's 72,834 weights; any of them may end off after sign flips.
RESNET_MAX_OFF = 0.02


def adam_step_bound(updates: int, b2: float = 0.9) -> float:
  """The most Adam (β₁ = 0) can move a weight in ``updates`` steps, in units of lr: step t is
  lr·g_t/√v̂_t, at most lr·√((1 − β₂ᵗ)/(1 − β₂)) when the earlier gradients were ~0 (1.38·lr
  at t = 2, 1.65·lr at t = 3 for β₂ = 0.9): the ill-conditioned weights' allowance."""
  return sum(((1 - b2 ** t) / (1 - b2)) ** 0.5 for t in range(1, updates + 1))


@pytest.fixture(scope="module")
def one_device_resnet_result():
  return _train(_trainer(1, tiny_resnet_config()), threshold=RESNET_ILL_CONDITIONED_GRAD)


@pytest.mark.parametrize("num_devices", [2, 4])
def test_resnet_training_on_several_devices_equals_one(num_devices, one_device_resnet_result):
  trainer = _trainer(num_devices, tiny_resnet_config())
  state, metrics, _ = _train(trainer)
  batch = trainer.batch(0)
  # (d_steps, B, …): each D update's batch and labels split over the devices.
  assert batch["image"].shape == (2, 8, 32, 32, 1) and batch["label"].shape == (2, 8)
  assert {s.data.shape[1] for s in batch["image"].addressable_shards} == {8 // num_devices}
  ref_state, ref_metrics, tiny = one_device_resnet_result
  assert_tree_close(metrics, ref_metrics, what=f"{num_devices}-device ResNet metrics")
  # Weights and state after several updates: 1e-4 (the state tolerance of the parity
  # tests), except where Adam's step was ill-conditioned (see above). The conv biases
  # there shift BatchNorm inputs, which BN cancels but its running *means* record: those
  # inherit the biases' allowance (2·lr·adam_step_bound).
  running_mean_atol = 2 * 1e-4 * adam_step_bound(STEPS)
  for label, net, ref_net, lr in (("g", state.generator, ref_state.generator, 1e-4),
                                  ("d", state.discriminator, ref_state.discriminator, 4e-4)):
    assert_tree_close(net.collections["spectral"], ref_net.collections["spectral"], atol=1e-4,
                      what=f"{num_devices}-device {label} u, v")
    assert_params_close_under_adam(net.params, ref_net.params, tiny[label], lr,
                                   adam_step_bound(STEPS * (2 if label == "d" else 1)),
                                   atol=1e-4, what=f"{num_devices}-device ResNet {label} params",
                                   max_off_fraction=RESNET_MAX_OFF)
  for what, ours, ref in (("G", state.generator.collections["batch_stats"],
                           ref_state.generator.collections["batch_stats"]),
                          ("EMA", state.ema["batch_stats"], ref_state.ema["batch_stats"])):
    flat, ref_flat = jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(ref)
    for (path, value), expected in zip(flat, ref_flat):
      atol = running_mean_atol if path[-1].key == "mean" else 1e-4
      assert_close(value, expected, atol=atol,
                   what=f"{num_devices}-device {what} {jax.tree_util.keystr(path)}")
  assert_params_close_under_adam(state.ema["params"], ref_state.ema["params"], tiny["g"], 1e-4,
                                 adam_step_bound(STEPS), atol=1e-4,
                                 what=f"{num_devices}-device EMA params",
                                 max_off_fraction=RESNET_MAX_OFF)
