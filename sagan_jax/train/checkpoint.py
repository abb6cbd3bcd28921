"""Orbax checkpoints of the whole ``GANState``, plus the config that made it.

Orbax writes each step into a temporary directory and renames it only once
complete, so a process killed mid-write (even ``kill -9``) leaves either the
previous checkpoints or a leftover temporary directory that is ignored and
cleaned up — never a half-written step that looks complete. Old steps are
deleted the same way in reverse: first renamed into ``checkpoints/.trash``
(atomic), then removed there, so a kill during a deletion cannot leave a
half-deleted step that looks complete either.

The config is stored beside the state; resuming in a workdir whose checkpoint
was made by an incompatible config (another model shape, loss, data, …) is an
error rather than a silent mix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from typing import Any, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

# Fields that may change between a run and its resumption; everything else
# must match, or the restored state would mean something else.
RESUMABLE_FIELDS = ("num_epochs", "num_steps", "log_every", "sample_every",
                    "checkpoint_every", "keep_checkpoints", "num_samples", "batching.prefetch",
                    "data.path", "data.tfds_data_dir", "data.tfds_download",
                    "model.attention_chunk_size", "model.conv_implementation",
                    "model.compute_dtype", "steps_per_dispatch", "eval_every",
                    "eval_num_samples", "eval_batch_size", "ema.use_for_eval")


# Old steps are renamed into this subfolder, then removed (see module docstring).
# Its name is not a step number, so orbax never lists it as a checkpoint.
TRASH_DIR = ".trash"


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint made by a config this run cannot continue."""


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flat(value, name + "."))
    else:
      out[name] = list(value) if isinstance(value, tuple) else value
  return out


def config_fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as flat JSON-able fields, without those a resume may change."""
  flat = _flat(json.loads(config.to_json()))
  return {k: v for k, v in flat.items() if k not in RESUMABLE_FIELDS}


class Checkpointer:
  """Saves and restores ``GANState`` under ``<workdir>/checkpoints``.

  ``read_only=True`` (sampling, evaluation, the compatibility check before a
  resume) never writes or deletes anything, so it is safe beside a running
  trainer: a writable one would clean up the trainer's in-progress save.
  """

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.read_only = read_only
    if read_only:
      options = ocp.CheckpointManagerOptions(
          read_only=True, create=False, save_interval_steps=0, max_to_keep=None,
          cleanup_tmp_directories=False)
    else:
      options = ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=True, cleanup_tmp_directories=True,
          todelete_subdir=TRASH_DIR,
          # Saves overlap the next training steps; `wait` joins them.
          enable_async_checkpointing=True)
      self._empty_trash()  # left by a process killed while deleting
    with _quiet_absl():  # orbax warns that a read-only directory is read-only
      self._manager = ocp.CheckpointManager(self.directory, options=options,
                                            item_names=("state", "config"))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, config: ml_collections.ConfigDict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        config=ocp.args.JsonSave(config_fingerprint(config))), force=True)
    # `save` first waited for the previous save, whose clean-up moved old steps here.
    self._empty_trash()

  def check_compatible(self, config: ml_collections.ConfigDict, step: int) -> None:
    stored = self._manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))["config"]
    current = config_fingerprint(config)
    diffs = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if diffs:
      detail = ", ".join(f"{k}: checkpoint {stored.get(k)!r} vs now {current.get(k)!r}"
                         for k in diffs[:8])
      raise IncompatibleCheckpointError(
          f"{self.directory} holds step {step} of a run with another config ({detail}). "
          f"Use a new --workdir, or the original config; nothing was overwritten.")

  def restore(self, step: int, abstract_state: Any) -> Any:
    """The state saved at ``step``, laid out like ``abstract_state``
    (a pytree of ``jax.ShapeDtypeStruct`` with shardings)."""
    return self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))["state"]

  def restore_generator(self, step: int, abstract_variables: Any, ema: bool = False) -> Any:
    """Only the generator's eval-mode variables (``params`` and its other
    collections: spectral-norm vectors, BatchNorm statistics) of the state saved
    at ``step``, laid out like ``abstract_variables``: neither the
    discriminator nor an optimizer state is built or read. ``ema``: the
    generator's moving average (``GANState.ema``) instead of its weights."""
    if ema:
      target = {"ema": abstract_variables}
    else:
      params = abstract_variables["params"]
      collections = {k: v for k, v in abstract_variables.items() if k != "params"}
      target = {"generator": {"params": params, "collections": collections}}
    restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)))["state"]
    if ema:
      return dict(restored["ema"])
    return {"params": restored["generator"]["params"], **restored["generator"]["collections"]}

  def wait(self) -> None:
    self._manager.wait_until_finished()
    self._empty_trash()

  def close(self) -> None:
    self._manager.close()
    self._empty_trash()

  def _empty_trash(self) -> None:
    """Removes the steps orbax moved to the trash (one by one: a save running in
    the background may be moving another one in)."""
    if self.read_only:
      return
    trash = os.path.join(self.directory, TRASH_DIR)
    try:
      names = os.listdir(trash)
    except FileNotFoundError:
      return
    for name in names:
      shutil.rmtree(os.path.join(trash, name), ignore_errors=True)


@contextlib.contextmanager
def _quiet_absl():
  """Drops absl (orbax) log records below ERROR for the duration."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def abstract_like(state: Any, sharding: jax.sharding.Sharding) -> Any:
  """A restore target: ``state``'s shapes and dtypes, placed by ``sharding``.

  The sharding must be explicit: without one, orbax would restore onto the
  devices the checkpoint was *written* from, which breaks a resume on another
  device count.
  """
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      state)
