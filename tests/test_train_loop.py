"""The training loop's promises: exact resume, no broken or diverged checkpoint,
config and data errors before compute, an incompatible workdir left untouched,
and the outputs a run leaves behind (TensorBoard events, PNGs, config.json,
whole-state checkpoints).

Runs `train_and_evaluate` in this process on configs/tiny.py (width 8, 16
images, a few steps) on one device (several devices: test_multi_device.py).
Compiled programs go to a persistent compilation cache, so each distinct
program is compiled once per test session, not once per `Trainer`.
"""

from __future__ import annotations

import json
import logging
import os
import types

import jax
import numpy as np
import pytest
from PIL import Image

from sagan_jax.data import DataError
from sagan_jax.ops.compiler_options import compiler_options
from sagan_jax import sharding
from sagan_jax.runs import training as loop
from sagan_jax.runs.cadence import Cadence
from sagan_jax.train.checkpoint import IncompatibleCheckpointError
from sagan_jax.train.config import ConfigError, image_shape
from sagan_jax.runs import NonFiniteLossError, load_config, restore_generator
from tests.run_checks import (assert_all_checkpoints_restore, assert_states_identical,
                              checkpoint_steps, poisoned_make_train_step, read_events, restore,
                              scalars, snapshot)
from tests.tiny_configs import tiny_config

pytestmark = pytest.mark.usefixtures("one_device_with_compilation_cache")


# --------------------------------------------------------------------------- resume


def test_resume_is_bit_exact(finished_run, tmp_path):
  """4 steps in one go == 2 steps, a restart, then `num_steps` raised to 4."""
  workdir, config, one_go = finished_run
  first = jax.device_get(loop.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path)))
  assert int(first.step) == 2 and checkpoint_steps(tmp_path) == [2]
  resumed = loop.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  assert int(resumed.step) == 4
  assert_states_identical(resumed, one_go, "resumed vs one-go state")
  # What was saved is the same too, and so is every logged scalar.
  assert checkpoint_steps(tmp_path) == [2, 4]
  assert_states_identical(restore(tmp_path, 4), restore(workdir, 4), "step-4 checkpoint")
  # (steps_per_sec and data_wait are wall-clock measures: they differ between any two runs)
  untimed = lambda logged: {k: v for k, v in logged.items()
                            if k[1] not in ("steps_per_sec", "data_wait")}
  assert untimed(scalars(tmp_path)) == untimed(scalars(workdir))


def test_rerun_of_finished_run_does_nothing(finished_copy):
  workdir, config, state = finished_copy
  before = snapshot(workdir)
  again = loop.train_and_evaluate(tiny_config(), str(workdir))
  assert_states_identical(again, state, "state returned by the rerun")
  after = snapshot(workdir)
  # trainer.lock is taken and released (empty again); nothing else is touched — no new
  # events, config.json and its history as they were (a run with nothing to do is no start).
  before.pop("trainer.lock"), after.pop("trainer.lock")
  assert after == before
  assert (workdir / "trainer.lock").read_text() == ""
  assert json.loads((workdir / "config.json").read_text()) == json.loads(config.to_json())


# --------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("log_every", [1, 4])
def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch, log_every):
  """G params turn NaN at step 3 (its losses still finite), so step 4's loss is NaN."""
  monkeypatch.setattr(loop, "make_train_step", poisoned_make_train_step(loop.make_train_step))
  config = tiny_config(log_every=log_every)  # checkpoints at 2 and 4
  with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 4: d_loss=nan") as e:
    loop.train_and_evaluate(config, str(tmp_path))
  assert "last checkpoint (step 2) is intact" in str(e.value)
  assert assert_all_checkpoints_restore(tmp_path) == [2]
  logged = {step for step, _ in scalars(tmp_path)}
  assert logged == ({1, 2, 3} if log_every == 1 else set())
  assert not (tmp_path / "samples" / "samples_000004.png").exists()


def test_non_finite_state_is_never_checkpointed(tmp_path, monkeypatch):
  """A finite loss with a NaN state (overflowing gradients) must not be saved."""
  monkeypatch.setattr(loop, "make_train_step", poisoned_make_train_step(loop.make_train_step))
  config = tiny_config(checkpoint_every=1)
  with pytest.raises(NonFiniteLossError,
                     match=r"non-finite values in the training state after step 3") as e:
    loop.train_and_evaluate(config, str(tmp_path))
  assert "last checkpoint (step 2) is intact" in str(e.value)
  assert assert_all_checkpoints_restore(tmp_path) == [1, 2]
  # Rerunning resumes from step 2 (and diverges again, naming the step).
  with pytest.raises(NonFiniteLossError, match="after step 3"):
    loop.train_and_evaluate(config, str(tmp_path))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("overrides, message", [
    ({"batching__batch_size": 0}, r"config\.batching\.batch_size must be a positive integer, got 0"),
    ({"num_steps": -1}, r"config\.num_steps must be a positive integer"),
    ({"data__image_size": 32}, r"makes 64×64 images; config\.data\.image_size is 32"),
    ({"model__width": 12}, r"config\.model\.width must be a multiple of 8.*got 12"),
    ({"model__width": 0}, r"config\.model\.width must be a positive integer"),
    ({"loss": "hinj"}, r"config\.loss must be one of \['hinge', .*got 'hinj'"),
    ({"data__source": "mnist10"}, r"config\.data\.source must be one of .*got 'mnist10'"),
    ({"data__channels": 2}, r"config\.data\.channels must be one of \[1, 3\]"),
    ({"optimizer__lr_d": float("inf")}, r"config\.optimizer\.lr_d must be finite and > 0"),
    ({"optimizer__b2": 1.0}, r"config\.optimizer\.b2 must be in \[0, 1\)"),
])
def test_config_errors_before_any_compute(tmp_path, no_compute, overrides, message):
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=message):
    loop.train_and_evaluate(tiny_config(**overrides), str(workdir))
  assert not workdir.exists()


def test_empty_image_folder_is_a_clear_error(tmp_path, no_compute):
  folder = tmp_path / "images"
  folder.mkdir()
  (folder / "notes.txt").write_text("not an image")
  config = tiny_config(data__source="image_folder", data__path=str(folder))
  with pytest.raises(DataError, match=f"image folder {folder} holds no image files"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_corrupt_image_is_a_clear_error_naming_the_file(tmp_path):
  folder = tmp_path / "images"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(7):
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
  (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
  # 8 images, batch 8: the first batch holds the broken one.
  config = tiny_config(data__source="image_folder", data__path=str(folder))
  with pytest.raises(DataError, match=r"image file .*broken\.png cannot be read"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert checkpoint_steps(tmp_path / "run") == []


def test_incompatible_checkpoint_leaves_workdir_untouched(finished_copy, no_compute):
  workdir, _, _ = finished_copy
  # A temporary folder as a run killed mid-save leaves: must survive too.
  leftover = workdir / "checkpoints" / "6.orbax-checkpoint-tmp"
  leftover.mkdir()
  (leftover / "partial").write_bytes(b"x")
  before = snapshot(workdir)
  with pytest.raises(IncompatibleCheckpointError,
                     match=r"holds step 4 of a run with another config "
                           r"\(model\.width: checkpoint 8 vs now 16\)"):
    loop.train_and_evaluate(tiny_config(model__width=16), str(workdir))
  after = snapshot(workdir)
  before.pop("trainer.lock"), after.pop("trainer.lock")  # taken and released, nothing else
  assert after == before


def fake_mesh(num_devices: int):
  """Stands in for a mesh of ``num_devices`` (the checks read only ``.devices.size``)."""
  return types.SimpleNamespace(devices=np.empty(num_devices, object))


def test_batch_that_does_not_split_over_devices(no_compute):
  with pytest.raises(ValueError, match="the batch size 8 does not divide over 3 devices"):
    sharding.check_divisible(8, fake_mesh(3))
  sharding.check_divisible(8, fake_mesh(4))
  # The trainer checks before building anything, and reports a config error.
  with pytest.raises(ConfigError, match="the batch size 8 does not divide over 3 devices"):
    loop.Trainer(tiny_config(), mesh=fake_mesh(3))
  # 16 images at batch 6: the last batch of each epoch has 4, which 3 devices cannot split.
  with pytest.raises(ConfigError, match="the final partial batch of each epoch 4 does not "
                                        "divide over 3 devices"):
    loop.Trainer(tiny_config(batching__batch_size=6), mesh=fake_mesh(3))


# --------------------------------------------------------------------------- outputs


def test_run_outputs(finished_run):
  workdir, config, state = finished_run
  # TensorBoard: losses every step, σ and γ of every SN / attention layer, images.
  logged = scalars(workdir)
  for step in range(1, 5):
    tags = {tag for s, tag in logged if s == step}
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= tags
    for prefix in ("sigma/G/", "sigma/D/", "gamma/G/", "gamma/D/"):
      assert any(t.startswith(prefix) for t in tags), f"step {step}: no {prefix}* scalar"
  assert {"sigma/G/layer1/conv", "sigma/D/layer4/conv", "gamma/G/self_attention2",
          "gamma/D/self_attention1"} <= {t for _, t in logged}
  images = {(e.step, v.tag) for e in read_events(workdir) if e.HasField("summary")
            for v in e.summary.value if v.HasField("image")}
  assert images == {(s, t) for s in (3, 4) for t in ("samples", "attention")}
  # The fraction of each logging interval spent waiting for data, with the losses.
  assert all(0 <= logged[step, "data_wait"] <= 1 for step in range(1, 5))
  # PNGs: sample grids and attention figures at sample_every (3) and at the end.
  for step in (3, 4):
    for kind in ("samples", "attention"):
      with Image.open(workdir / "samples" / f"{kind}_{step:06d}.png") as png:
        assert png.format == "PNG" and min(png.size) >= 64
  # config.json: the whole config, as sampling rebuilds it.
  assert json.loads(load_config(str(workdir)).to_json()) == json.loads(config.to_json())
  # Checkpoints of the whole state under <workdir>/checkpoints.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  saved = restore(workdir, 4)
  assert_states_identical(saved, state, "checkpointed state")
  assert set(saved.generator.collections) == {"spectral", "batch_stats"}
  assert set(saved.discriminator.collections) == {"spectral"}
  assert jax.tree.leaves(saved.generator.opt_state) and jax.tree.leaves(
      saved.discriminator.opt_state)


def test_sampling_never_modifies_the_workdir(finished_copy):
  """Sampling beside a running trainer must not clean up its in-progress save."""
  workdir, config, state = finished_copy
  in_progress = workdir / "checkpoints" / "6.orbax-checkpoint-tmp"
  in_progress.mkdir()
  (in_progress / "partial").write_bytes(b"x")
  before = snapshot(workdir)
  run = restore_generator(str(workdir))
  assert run.step == 4
  # Just the generator's eval-mode variables: no discriminator, no optimizer state.
  assert_states_identical(run.variables, state.generator.variables(), "restored G")
  assert snapshot(workdir) == before
  with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 3 .*holds 2, 4"):
    restore_generator(str(workdir), step=3)


# --------------------------------------------------------------------------- options


def test_steps_per_dispatch_gives_the_same_run(finished_run, tmp_path):
  """K steps per jitted call (a lax.scan) is the same computation as K calls; the
  groups end where the loop logs/checkpoints and before the epoch's partial batch."""
  _, _, one_by_one = finished_run
  config = tiny_config(steps_per_dispatch=3, log_every=4, sample_every=4, checkpoint_every=4)
  calls = []
  dispatch = loop.Trainer.dispatch

  def counting_dispatch(self, state, host_batches):
    calls.append(len(host_batches))
    return dispatch(self, state, host_batches)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(loop.Trainer, "dispatch", counting_dispatch)
    state = loop.train_and_evaluate(config, str(tmp_path))
  assert calls == [3, 1]  # 3 steps scanned, then step 4 alone (a log/checkpoint step)
  assert int(state.step) == 4 and checkpoint_steps(tmp_path) == [4]
  assert_states_identical(state, one_by_one, "K=3 vs K=1 state")


def test_eval_every_writes_reports_during_training(tmp_path):
  config = tiny_config(num_steps=2, eval__every=2, eval__num_samples=16, eval__batch_size=8,
                       log_every=2, sample_every=2, checkpoint_every=2)
  loop.train_and_evaluate(config, str(tmp_path))
  report = json.loads((tmp_path / "eval" / "eval_000002_mnist_heldout_n16.json").read_text())
  assert report["step"] == 2
  for key in ("fid", "kid", "precision", "recall", "classifier_score", "confident_fraction"):
    assert key in report and key in report["real"]
  assert np.isfinite(report["fid"]) and report["fid"] >= 0


def test_dispatch_groups_end_before_a_partial_batch():
  """16 images at batch 6: batches of 6, 6, 4 per epoch; a scan needs equal shapes."""
  config = tiny_config(batching__batch_size=6, steps_per_dispatch=10, log_every=100,
                       sample_every=100, checkpoint_every=100, num_steps=9)
  batcher = loop.data_lib.Batcher(loop.data_lib.make_source(config.data), 6, 0)
  sizes = [len(batcher.global_indices(i)) for i in range(9)]
  assert sizes == [6, 6, 4] * 3
  cadence = Cadence.of(config, 9, batcher)
  ends = [step for step in range(1, 10) if cadence.ends_dispatch(step, group_size=1)]
  # A group ends where the next batch has another size, and at the end of the run.
  assert ends == [step for step in range(1, 9) if sizes[step] != sizes[step - 1]] + [9]


class BackendCompilations:
  """Counts XLA compilations by jitted function, with JAX's own monitoring hook.

  ``/jax/core/compile/backend_compile_duration`` is recorded around
  ``compiler.compile_or_get_cached``, so it counts every compilation a program
  needs, also those the persistent compilation cache (on in this module) answers
  without running XLA: a cache hit skips XLA's work but not the request. (Its
  ``/jax/compilation_cache/cache_hits`` and ``…/compile_requests_use_cache`` events
  would count only the hits, or only with the cache on.)
  """

  EVENT = "/jax/core/compile/backend_compile_duration"

  def __init__(self):
    self.counts: dict[str, int] = {}

  def _listen(self, event, duration, **kwargs):
    del duration
    if event == self.EVENT:
      name = kwargs.get("fun_name", "?")
      self.counts[name] = self.counts.get(name, 0) + 1

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def __exit__(self, *exc_info):
    jax.monitoring.unregister_event_duration_listener(self._listen)


def test_a_run_compiles_a_bounded_set_of_programs(tmp_path, caplog):
  """The chapter's data layout (7 steps per epoch, the last batch partial, K = 6) with
  cadences that do not divide K: the dispatches cut short (steps 8–9, 10, 11–13) run
  as single steps, so the run compiles the initial state, one 6-step scan, one step of
  the full batch and one of the partial batch — not a scan per length (before: scans
  of 6, 2 and 3 steps)."""
  config = tiny_config(data__per_digit=26, steps_per_dispatch=6, num_steps=14, log_every=7,
                       checkpoint_every=9, sample_every=10)  # 52 images: 6 batches of 8, then 4
  with BackendCompilations() as compiled, caplog.at_level(logging.INFO):
    loop.train_and_evaluate(config, str(tmp_path))
  train_programs = {name: compiled.counts.get(name, 0)
                    for name in ("jit(init_gan_state)", "jit(multi_step)", "jit(train_step)")}
  assert train_programs == {"jit(init_gan_state)": 1, "jit(multi_step)": 1,
                            "jit(train_step)": 2}
  # The log names each program it compiles, once.
  lines = [r.getMessage() for r in caplog.records if r.name.startswith("sagan_jax")]
  assert sorted(line for line in lines if line.startswith("Compiling ")) == [
      f"Compiling {what} ({'cached in ' + jax.config.jax_compilation_cache_dir})..."
      for what in ("the initial state", "the train step",
                   "the train step on each epoch's last, partial batch (4 images)",
                   "the train step scanned over 6 batches")]
  # A progress line after the first dispatch (step 6), though log_every is 7, and a
  # final line with absolute paths.
  assert any(line.startswith("step 6/14 | d_loss ") for line in lines)
  assert lines[-1] == (f"done: 14 steps, checkpoints in {tmp_path / 'checkpoints'}, samples in "
                       f"{tmp_path / 'samples'}; `tensorboard --logdir {tmp_path}`")


def test_the_trainers_programs_compile_with_the_library_options(monkeypatch):
  # `build_steps` (init, step, K-step scan) and `build_samplers` (two jits each) pass
  # `compiler_options` for their devices' platform: on CPU, XLA's convolutions on Eigen
  # (tests/test_compiler_options.py checks what the option does to a program).
  expected = compiler_options(jax.default_backend())  # before recording: its one-time probe
  assert expected or jax.default_backend() != "cpu"  # on CPU the option is there to pass
  recorded = []
  real_jit = jax.jit

  def recording_jit(fun, **kwargs):
    recorded.append(kwargs.get("compiler_options"))
    return real_jit(fun, **kwargs)

  monkeypatch.setattr(jax, "jit", recording_jit)
  config = tiny_config()
  shape = image_shape(config)
  generator, discriminator, g_tx, d_tx = loop.build_models_and_optimizers(config, shape)
  loop.build_steps(config, generator, discriminator, g_tx, d_tx, shape)
  loop.build_samplers(config, generator)
  assert recorded == [expected] * 7
