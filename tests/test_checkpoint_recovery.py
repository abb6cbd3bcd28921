"""Damaged checkpoints and readers beside a running trainer.

* The trainer tries its checkpoints newest first: each damaged one (a truncated
  data file, a deleted ``_METADATA``, a deleted item, garbage metadata, an
  empty step folder) is reported in one line and moved to
  ``checkpoints/corrupt/<step>`` — never deleted — and the run resumes from
  the newest intact one, bit-exactly. If none is intact, one error names the
  folder and nothing is moved.
* Readers (`restore_generator`, behind ``sample.py`` and ``evaluate.py``) skip a
  damaged checkpoint with a warning, and when the trainer deletes the step they
  are reading, read the newest one then on disk (an explicit ``--step`` that
  vanishes is a one-line error). test_run_failures_cli.py reads beside a real
  trainer that saves every step.

In-process on configs/tiny.py, like test_train_loop.py.
"""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from sagan_jax.runs import restore_generator
from sagan_jax.runs import training as loop
from sagan_jax.train.checkpoint import TRASH_DIR, Checkpointer, CheckpointError
from tests.run_checks import assert_all_checkpoints_restore, assert_states_identical, snapshot
from tests.tiny_configs import tiny_config

pytestmark = pytest.mark.usefixtures("one_device_with_compilation_cache")


def truncate_data_file(step_dir):
  """Cuts the largest array data file to a fraction: reads hit OUT_OF_RANGE."""
  files = [os.path.join(d, f) for d, _, names in os.walk(step_dir / "state") for f in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(os.path.getsize(largest) // 3)


DAMAGES = {
    "truncated data file": (truncate_data_file, "OUT_OF_RANGE"),
    "deleted _METADATA": (lambda d: os.remove(d / "state" / "_METADATA"),
                          "state/_METADATA is missing"),
    "deleted state item": (lambda d: shutil.rmtree(d / "state"), "(state is missing)"),
    "garbage config metadata": (lambda d: (d / "config" / "metadata").write_text("garbage{"),
                                "JSONDecodeError"),
}


def damage_messages(caplog) -> list[str]:
  return [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()
          or "does not restore" in r.getMessage()]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_newest_checkpoint_is_moved_aside_and_the_run_resumes(finished_copy, damage,
                                                                      caplog):
  workdir, _, one_go = finished_copy
  make_damage, reason = DAMAGES[damage]
  make_damage(workdir / "checkpoints" / "4")
  caplog.set_level(logging.INFO)
  state = loop.train_and_evaluate(tiny_config(), str(workdir))
  # One line for the damaged step (what is wrong, where it went), then a resume from step 2
  # that retrains steps 3-4 exactly as the first time.
  (message,) = damage_messages(caplog)
  corrupt = workdir / "checkpoints" / "corrupt" / "4"
  assert message.startswith("Checkpoint step 4 is damaged (") and reason in message
  assert message.endswith(f"): moved to {corrupt}.") and "\n" not in message
  assert f"Resumed from {workdir / 'checkpoints'} at step 2." in caplog.text
  assert corrupt.is_dir()  # kept, not deleted
  assert assert_all_checkpoints_restore(workdir) == [2, 4]
  assert_states_identical(state, one_go, "resumed past the damage vs one go")


def test_an_empty_step_folder_is_moved_aside(finished_copy, caplog):
  """An empty ``checkpoints/8/`` (orbax lists it as a step) used to block every rerun."""
  workdir, _, one_go = finished_copy
  (workdir / "checkpoints" / "8").mkdir()
  caplog.set_level(logging.INFO)
  state = loop.train_and_evaluate(tiny_config(), str(workdir))
  assert damage_messages(caplog) == [
      f"Checkpoint step 8 is damaged (its folder is empty): moved to "
      f"{workdir / 'checkpoints' / 'corrupt' / '8'}."]
  assert "Nothing to do: the checkpoint is at step 4 of 4." in caplog.text
  assert_states_identical(state, one_go, "state of step 4")


def test_a_second_damaged_step_of_one_number_is_kept_too(finished_copy):
  workdir, _, _ = finished_copy
  corrupt = workdir / "checkpoints" / "corrupt"
  (corrupt / "4").mkdir(parents=True)  # an earlier step 4, moved aside before
  os.remove(workdir / "checkpoints" / "4" / "state" / "_METADATA")
  loop.train_and_evaluate(tiny_config(), str(workdir))
  assert sorted(os.listdir(corrupt)) == ["4", "4.1"]


def test_no_intact_checkpoint_is_one_error_and_moves_nothing(finished_copy):
  workdir, _, _ = finished_copy
  for step in (2, 4):
    os.remove(workdir / "checkpoints" / str(step) / "state" / "_METADATA")
  before = snapshot(workdir)
  with pytest.raises(CheckpointError) as error:
    loop.train_and_evaluate(tiny_config(), str(workdir))
  assert str(error.value) == (
      f"no checkpoint in {workdir / 'checkpoints'} restores (step 4: state/_METADATA is "
      "missing; step 2: state/_METADATA is missing); nothing was moved or deleted. Move the "
      "folder away to start afresh.")
  after = snapshot(workdir)
  before.pop("trainer.lock"), after.pop("trainer.lock")
  assert after == before


# --------------------------------------------------------------------------- readers


def test_reader_skips_a_damaged_checkpoint_and_changes_nothing(finished_copy, caplog):
  workdir, _, _ = finished_copy
  # (The generator alone restores without state/_METADATA: its tree is given. Not without data.)
  shutil.rmtree(workdir / "checkpoints" / "4" / "state")
  before = snapshot(workdir)
  run = restore_generator(str(workdir))
  assert run.step == 2
  assert_states_identical(run.variables, restore_generator(str(workdir), step=2).variables)
  assert damage_messages(caplog) == [
      f"Checkpoint step 4 in {workdir / 'checkpoints'} does not restore (state is missing); "
      "reading an older one."]
  assert snapshot(workdir) == before  # readers never move or delete anything
  with pytest.raises(CheckpointError, match=r"checkpoint step 4 in .* does not restore: "
                                            r"state is missing$"):
    restore_generator(str(workdir), step=4)


def _deleting_during_read(monkeypatch, workdir, new_step=None):
  """Makes the first read of the newest step behave as if the trainer deleted it
  meanwhile (orbax renames it into .trash), optionally after saving ``new_step``."""
  read = Checkpointer.restore_generator
  deleted = []

  def restore_generator_racing(self, step, abstract_variables, ema=False):
    if not deleted:
      checkpoints = workdir / "checkpoints"
      if new_step is not None:
        shutil.copytree(checkpoints / str(step), checkpoints / str(new_step))
      (checkpoints / TRASH_DIR).mkdir(exist_ok=True)
      os.rename(checkpoints / str(step), checkpoints / TRASH_DIR / str(step))
      deleted.append(step)
    return read(self, step, abstract_variables, ema)

  monkeypatch.setattr(Checkpointer, "restore_generator", restore_generator_racing)
  return deleted


def test_reader_retries_the_newest_when_the_trainer_deletes_its_checkpoint(
    finished_copy, monkeypatch, caplog):
  workdir, _, _ = finished_copy
  deleted = _deleting_during_read(monkeypatch, workdir, new_step=6)
  run = restore_generator(str(workdir))
  # Step 4 vanished mid-read; the walk restarted from the newest step then on disk.
  assert deleted == [4] and run.step == 6
  assert damage_messages(caplog) == []  # a deleted step is not damage


def test_reader_of_an_explicit_step_that_vanishes_says_so(finished_copy, monkeypatch):
  workdir, _, _ = finished_copy
  _deleting_during_read(monkeypatch, workdir)
  with pytest.raises(FileNotFoundError, match=r"^checkpoint step 4 was deleted while being "
                                              r"read \(by the running trainer\?\); .* now "
                                              r"holds 2$"):
    restore_generator(str(workdir), step=4)
