"""A class-conditional ResNet SAGAN run end to end, on one device: labels flow from the
data through the step, the generator's EMA is checkpointed and is what sampling and
evaluation read by default, sample grids have a row per class, ``sample.py``'s
``--labels``/``--class_grid``/``--interpolate`` and the evaluation's conditional accuracy
and intra-FID work on the checkpoint."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from sagan_jax.runs import (SamplingError, evaluate_run, format_table, restore_generator,
                            train_and_evaluate, write_sample_files)
from sagan_jax.runs import training as loop
from tests.compilation import one_device_and_compilation_cache
from tests.run_checks import restore
from tests.tiny_configs import tiny_resnet_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A 2-step run of the tiny conditional ResNet (2 D steps a step, EMA decay 0.5)."""
  with one_device_and_compilation_cache(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resnet_run")
    config = tiny_resnet_config()
    config.update(num_steps=2, log_every=1, sample_every=2, checkpoint_every=1,
                  num_samples=20)
    state = train_and_evaluate(config, str(workdir))
    yield str(workdir), config, jax.device_get(state)


def test_checkpoint_holds_the_ema_and_sampling_reads_it(run):
  workdir, config, state = run
  restored = restore(workdir, 2)
  # EMA after step 2 = 0.5 · (G after step 1) + 0.5 · (G after step 2): neither of them.
  ema, weights = restored.ema["params"], restored.generator.params
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ema),
                                                      jax.tree.leaves(weights)))
  for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(state.ema["params"])):
    np.testing.assert_array_equal(a, b)
  by_default = restore_generator(workdir)
  assert by_default.ema and by_default.num_classes == 10
  for a, b in zip(jax.tree.leaves(by_default.variables), jax.tree.leaves(restored.ema)):
    np.testing.assert_array_equal(a, b)
  trained = restore_generator(workdir, use_ema=False)
  assert not trained.ema
  for a, b in zip(jax.tree.leaves(trained.variables["params"]), jax.tree.leaves(weights)):
    np.testing.assert_array_equal(a, b)


def test_sample_grid_has_a_row_per_class(run):
  workdir, _, _ = run
  grid = np.asarray(Image.open(os.path.join(workdir, "samples", "samples_000002.png")))
  # 20 samples over 10 classes: 10 rows of 2 (32-px images, 2-px padding).
  assert grid.shape[:2] == (10 * 34 + 2, 2 * 34 + 2)
  assert os.path.exists(os.path.join(workdir, "samples", "attention_000002.png"))


def test_sampling_by_label_class_grid_and_interpolation(run, tmp_path):
  workdir, _, _ = run
  labelled = write_sample_files(workdir, labels=[3, 3, 7], out=str(tmp_path / "l.png"),
                                attention=True)
  grid = write_sample_files(workdir, class_grid=True, per_class=3, out=str(tmp_path / "g.png"))
  line = write_sample_files(workdir, interpolate=5, labels=[2], out=str(tmp_path / "i.png"))
  assert [os.path.basename(p) for p in labelled] == ["l.png", "l_attention.png"]
  assert np.asarray(Image.open(grid[0])).shape[:2] == (10 * 34 + 2, 3 * 34 + 2)
  strip = np.asarray(Image.open(line[0]))
  assert strip.shape[:2] == (34 + 2, 5 * 34 + 2)
  # The ends differ (two latents), the class is held: a real interpolation.
  first, last = strip[2:34, 2:34], strip[2:34, 4 * 34 + 2:5 * 34]
  assert not np.array_equal(first, last)
  with pytest.raises(SamplingError, match=r"classes in \[0, 10\), got 3, 12"):
    write_sample_files(workdir, labels=[3, 12], out=str(tmp_path / "bad.png"))


def test_evaluation_reports_conditional_accuracy_and_intra_fid(run):
  workdir, _, _ = run
  result = evaluate_run(workdir, num_samples=200, batch_size=100, kid_subset_size=50)
  assert 0 <= result["conditional_accuracy"] <= 1
  assert {f"conditional_accuracy/{d}" for d in range(10)} <= set(result)
  assert {f"intra_fid/{d}" for d in range(10)} <= set(result) and result["intra_fid"] > 0
  real = result["real"]
  assert real["conditional_accuracy"] > 0.9  # the classifier on real held-out digits
  assert real["intra_fid"] < result["intra_fid"]
  with open(result["path"]) as f:
    assert json.load(f)["intra_fid/3"] == pytest.approx(result["intra_fid/3"])
  table = format_table(result)
  assert "conditional accuracy" in table and "class 9: intra-FID" in table


def test_trainer_batches_labels_for_each_d_step():
  config = tiny_resnet_config()
  trainer = loop.Trainer(config)
  batch = trainer.host_batch(3)
  assert batch["image"].shape == (2, 8, 32, 32, 1) and batch["label"].shape == (2, 8)
  # D step i of training step 3 reads the batcher's batch 3·2 + i.
  np.testing.assert_array_equal(batch["label"][1], trainer.batcher.batch(7)["label"])
  assert trainer.total_steps == config.num_steps


def test_bfloat16_and_k_steps_per_dispatch():
  """The ResNet step in bfloat16, two steps in one dispatch (a scan over (K, d_steps, B, …)
  batches): finite losses, float32 state."""
  config = tiny_resnet_config()
  config.model.compute_dtype = "bfloat16"
  config.steps_per_dispatch = 2  # the scan: a dispatch of exactly K batches
  trainer = loop.Trainer(config)
  state, metrics = trainer.dispatch(trainer.init_state(),
                                    [trainer.host_batch(0), trainer.host_batch(1)])
  assert int(state.step) == 2 and metrics["all_d_loss"].shape == (2,)
  assert np.all(np.isfinite(np.asarray(metrics["all_d_loss"])))
  assert np.all(np.isfinite(np.asarray(metrics["all_g_loss"])))
  assert {x.dtype for x in jax.tree.leaves(state.generator.params)} == {np.dtype("float32")}
