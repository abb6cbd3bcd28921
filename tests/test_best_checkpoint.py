"""With eval.every set, the best evaluated step is kept in best_checkpoint/ whatever
keep_checkpoints deletes, survives a resume, and restore_generator(best=True) reads it."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from configs import tiny
from sagan_jax import runs
from sagan_jax.runs import best_checkpoint


def test_best_checkpoint_is_kept_apart(tmp_path, monkeypatch):
  config = tiny.get_config()
  config.num_steps = 6
  config.eval.every = 2
  config.eval.num_samples = 16
  config.eval.batch_size = 16
  config.checkpoint_every = 2
  config.keep_checkpoints = 1
  config.sample_every = 6
  # A scripted FID: best at step 2, worse after — the rolling checkpoints (keep 1) then
  # hold only step 6, and the best must still be there.
  fids = iter([1.0, 3.0, 2.0])
  real_update = best_checkpoint.BestCheckpoint.update

  def scripted(self, step, result, state, cfg):
    return real_update(self, step, {**result, "fid": next(fids)}, state, cfg)

  monkeypatch.setattr(best_checkpoint.BestCheckpoint, "update", scripted)
  workdir = str(tmp_path / "run")
  state = runs.train_and_evaluate(config, workdir)
  assert int(state.step) == 6
  assert sorted(n for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit()) == ["6"]
  with open(os.path.join(workdir, "best_checkpoint", "best.json")) as f:
    assert json.load(f) == {"step": 2, "fid": 1.0}
  best = runs.restore_generator(workdir, best=True)
  latest = runs.restore_generator(workdir)
  assert (best.step, latest.step) == (2, 6)
  differs = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(best.variables),
                                                       jax.tree.leaves(latest.variables))]
  assert any(differs)
  # A resumed run keeps comparing against the recorded best.
  assert best_checkpoint.BestCheckpoint(workdir).best == {"step": 2, "fid": 1.0}


class _FakeCheckpointer:
  """Stands in for orbax: records the steps saved (one kept, as ``keep=1``)."""

  def __init__(self, workdir, keep, subdir):
    self.directory = os.path.join(workdir, subdir)
    self.keep = keep

  def save(self, step, state, config):
    del state, config
    os.makedirs(os.path.join(self.directory, str(step)))

  def wait(self):
    pass

  def close(self):
    pass


def test_best_by_a_higher_is_better_metric_and_a_changed_metric(tmp_path, monkeypatch):
  monkeypatch.setattr(best_checkpoint, "Checkpointer", _FakeCheckpointer)
  workdir = str(tmp_path)
  by_fid = best_checkpoint.BestCheckpoint(workdir)  # default: FID, lower is better
  assert by_fid.update(2, {"fid": 5.0}, None, None)
  assert not by_fid.update(4, {"fid": 6.0}, None, None)
  assert not by_fid.update(5, {"fid": float("nan")}, None, None)
  assert by_fid.update(6, {"fid": 4.0}, None, None)
  assert best_checkpoint.read_best(workdir) == {"step": 6, "fid": 4.0}

  # A resume that selects by the Inception score keeps the FID record's checkpoint aside.
  by_is = best_checkpoint.BestCheckpoint(workdir, "inception_score")
  assert by_is.best is None
  kept = tmp_path / "best_checkpoint.by_fid.step_6"
  assert (kept / "best.json").exists() and (kept / "6").is_dir()
  assert by_is.update(8, {"inception_score": 2.0}, None, None)
  assert not by_is.update(10, {"inception_score": 1.5}, None, None)
  assert by_is.update(12, {"inception_score": 2.5}, None, None)
  assert best_checkpoint.read_best(workdir) == {"step": 12, "inception_score": 2.5}
  with pytest.raises(ValueError, match="best metric must be one of"):
    best_checkpoint.BestCheckpoint(workdir, "accuracy")
