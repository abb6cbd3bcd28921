"""What TensorBoard shows of a run that was interrupted and resumed.

Trains (evaluating as it goes), loses its newest checkpoint as a crash between
logging and saving would, resumes, trains on, and reads the event files back
with TensorBoard's own ``EventAccumulator``: every scalar, image and
evaluation of every step is there exactly once — those logged at the
checkpoint the run resumed from included (a purge at that step once dropped
them), those the interrupted run logged after it replaced by the rerun's.
"""

from __future__ import annotations

import shutil

import pytest

from sagan_jax.runs import training
from tests.compilation import one_device_and_compilation_cache
from tests.tiny_configs import tiny_config

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is a test dependency (pip install -e '.[test]')")


@pytest.fixture(scope="module", autouse=True)
def _one_device_and_compilation_cache(tmp_path_factory):
  with one_device_and_compilation_cache(tmp_path_factory):
    yield


def test_resumed_run_shows_every_step_once(tmp_path):
  cadence = dict(log_every=1, sample_every=2, checkpoint_every=2, eval__every=2,
                 eval__num_samples=16, eval__batch_size=8)
  training.train_and_evaluate(tiny_config(num_steps=3, **cadence), str(tmp_path))
  # The run logged, sampled and evaluated step 3 (its end), but "crashed" before
  # its step-3 checkpoint was complete: the rerun resumes from step 2.
  shutil.rmtree(tmp_path / "checkpoints" / "3")
  training.train_and_evaluate(tiny_config(num_steps=4, **cadence), str(tmp_path))

  accumulator = event_accumulator.EventAccumulator(
      str(tmp_path), size_guidance={event_accumulator.SCALARS: 0,
                                    event_accumulator.IMAGES: 0})
  accumulator.Reload()
  tags = accumulator.Tags()

  def steps(kind, tag):
    events = accumulator.Scalars(tag) if kind == "scalars" else accumulator.Images(tag)
    return [e.step for e in events]

  for tag in ("d_loss", "g_loss", "d_real", "d_fake"):
    assert steps("scalars", tag) == [1, 2, 3, 4], tag
  # The rate needs two updates of a run's tracker: each run's second logged step on.
  assert steps("scalars", "steps_per_sec") and all(
      e.value > 0 for e in accumulator.Scalars("steps_per_sec"))
  spectral = [t for t in tags["scalars"] if t.startswith("sigma/")]
  assert spectral and all(steps("scalars", t) == [1, 2, 3, 4] for t in spectral)
  evaluation = [t for t in tags["scalars"] if t.startswith("eval/")]
  assert "eval/fid" in evaluation and "eval/real/fid" in evaluation
  # Step 2's evaluation is the checkpoint's: kept. Step 3's was the lost run's: gone.
  assert all(steps("scalars", t) == [2, 4] for t in evaluation), {
      t: steps("scalars", t) for t in evaluation}
  for tag in ("samples", "attention"):
    assert steps("images", tag) == [2, 4], tag
