"""Orbax checkpoints of the whole ``GANState``, plus the config that made it.

Orbax writes each step into a temporary directory and renames it only once
complete, so a process killed mid-write (even ``kill -9``) leaves either the
previous checkpoints or a leftover temporary directory that is ignored and
cleaned up — never a half-written step that looks complete. Old steps are
deleted the same way in reverse: first renamed into ``checkpoints/.trash``
(atomic), then removed there, so a kill during a deletion cannot leave a
half-deleted step that looks complete either.

The config is stored beside the state, with the record of the data it trained
on (`sagan_jax.data.record`); resuming in a workdir whose checkpoint was made by
an incompatible config (another model shape, loss, data source, …) or on other
data (another folder's files, a changed count or labels) is an error rather than
a silent mix — other data only with ``config.resume_on_new_data``.

Damage (a truncated data file, a deleted ``_METADATA``, a missing item, an
empty step folder) is found by reading: `read_newest` tries the steps newest
first and reports each one that fails (step, what is wrong); the trainer
moves those into ``checkpoints/corrupt/`` (`move_aside`, never deleting) and
resumes from the newest intact one. Readers beside a running trainer use the
same walk: a step the trainer deletes while it is being read is not damage —
the walk starts again from the newest step then on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
from typing import Any, Callable, Optional, TypeVar

import jax
import ml_collections
import orbax.checkpoint as ocp

from sagan_jax.data.record import describe_record, record_differences
from sagan_jax.train.config import base_config

# Fields that may change between a run and its resumption; everything else
# must match, or the restored state would mean something else.
RESUMABLE_FIELDS = ("num_epochs", "num_steps", "log_every", "sample_every",
                    "checkpoint_every", "keep_checkpoints", "num_samples", "batching.prefetch",
                    "data.path", "data.tfds_data_dir", "data.tfds_download",
                    "model.attention_chunk_size", "model.conv_implementation",
                    "model.compute_dtype", "steps_per_dispatch", "ema.use_for_eval",
                    # The data itself is compared through its record (`check_compatible`).
                    "data.skip_bad_images", "resume_on_new_data")
# Whole sections a resume may change: where metrics go, how evaluation runs.
RESUMABLE_SECTIONS = ("logging.", "eval.")


# The key, beside the config's fields in a checkpoint's "config" item, of the record of
# the data the state was trained on (absent from checkpoints older than the record).
TRAINED_ON = "trained_on"

# Old steps are renamed into this subfolder, then removed (see module docstring).
# Its name is not a step number, so orbax never lists it as a checkpoint.
TRASH_DIR = ".trash"
# Steps that fail to restore are moved here (never deleted); not a step number either.
CORRUPT_DIR = "corrupt"
# A reader restarts its walk this often at most when the trainer keeps deleting
# the step it picked (each restart takes the newest step, which lives longest).
MAX_VANISHED_RETRIES = 20
# What every complete step holds: the first one missing names the damage.
_EXPECTED_FILES = ("_CHECKPOINT_METADATA", "state", "state/_METADATA", "state/manifest.ocdbt",
                   "config", "config/metadata")

T = TypeVar("T")
logger = logging.getLogger(__name__)


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint made by a config this run cannot continue."""


class CheckpointError(RuntimeError):
  """No intact checkpoint to read, or one could not be written (disk full, permissions)."""


@dataclasses.dataclass
class Damaged:
  """A step that failed to restore, and why (one line)."""
  step: int
  reason: str


def describe_error(error: BaseException, limit: int = 300) -> str:
  """``error`` as one short line: the root cause's type and first line.

  Orbax wraps the error that says what is wrong (tensorstore's ``OUT_OF_RANGE:
  … byte range … is not valid``, an ``OSError``'s ``No space left on
  device``) in generic ones; the innermost exception of the chain is kept,
  and of an operating-system error only its cause.
  """
  root = list(_chain(error))[-1]
  if isinstance(root, OSError) and root.strerror:
    return root.strerror + (f": {root.filename}" if root.filename else "")
  text = str(root).strip()
  # Tensorstore words an OSError as "…: No space left on device [os_error_code='28']",
  # sometimes with more bracketed details in between: the code is what is certain.
  os_error = re.search(r"os_error_code='?(\d+)", text)
  if os_error:
    code = int(os_error.group(1))
    return f"{os.strerror(code)} (OS error {code})"
  first = text.splitlines()[0] if text else ""
  line = f"{type(root).__name__}: {first}" if first else type(root).__name__
  return line if len(line) <= limit else line[:limit - 1] + "…"


def _chain(error: BaseException):
  """``error``, then what caused it, and so on, as a traceback shows them (a
  context suppressed by ``raise … from None`` is not a cause)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)


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
  return {k: v for k, v in flat.items()
          if k not in RESUMABLE_FIELDS and not k.startswith(RESUMABLE_SECTIONS)}


class Checkpointer:
  """Saves and restores ``GANState`` under ``<workdir>/checkpoints``.

  ``subdir``: ``best_checkpoint`` holds the best evaluated step (`sagan_jax.runs.best_checkpoint`).
  ``read_only=True`` (sampling, evaluation, the compatibility check before a
  resume) never writes or deletes anything, so it is safe beside a running
  trainer: a writable one would clean up the trainer's in-progress save.
  ``data_record``: what the run trains on (`sagan_jax.data.data_record`), kept
  with every checkpoint this checkpointer saves.
  """

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False,
               subdir: str = "checkpoints", data_record: Optional[dict] = None):
    self.directory = os.path.abspath(os.path.join(workdir, subdir))
    self.read_only = read_only
    self.data_record = data_record
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
      self._manager = _listing(lambda: ocp.CheckpointManager(
          self.directory, options=options, item_names=("state", "config")))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps orbax lists. A listing that races a trainer's rotation
    (``keep_checkpoints``: the new step renamed into place, then the old one moved
    to the trash) can see neither; when it shows no step but a step's folder is on
    disk, the folder is listed again."""
    steps = list(self._manager.all_steps())
    for _ in range(MAX_VANISHED_RETRIES):
      if steps or not self._step_folder_on_disk():
        break
      self.reload()
      steps = list(self._manager.all_steps())
    return steps

  def _step_folder_on_disk(self) -> bool:
    try:
      return any(name.isdigit() for name in os.listdir(self.directory))
    except OSError:
      return False

  def step_directory(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _damage(self, step: int, error: BaseException) -> str:
    """What is wrong with ``step`` (one line): a missing file, else the error."""
    folder = self.step_directory(step)
    if os.path.isdir(folder):
      if not os.listdir(folder):
        return "its folder is empty"
      for name in _EXPECTED_FILES:
        if not os.path.exists(os.path.join(folder, name)):
          return f"{name} is missing"
    return describe_error(error).replace(folder + os.sep, "")

  def read_newest(self, read: Callable[[int], T], *, propagate: tuple[type, ...] = ()
                  ) -> tuple[Optional[int], Optional[T], list[Damaged]]:
    """``read(step)`` of the newest step that reads, trying the steps newest first.

    A step that fails is damaged (reported back, left in place) — unless it
    vanished meanwhile (a running trainer deleted it), in which case the walk
    starts again from the newest step now on disk. Errors of the types in
    ``propagate`` (e.g. `IncompatibleCheckpointError`) are not damage and are
    raised.

    Returns:
      ``(step, read(step), damaged)``: ``step`` None if no step reads;
      ``damaged`` lists the newer steps that failed, newest first.
    """
    damaged: dict[int, Damaged] = {}
    for _ in range(MAX_VANISHED_RETRIES):
      self.reload()
      steps = sorted(self.all_steps(), reverse=True)
      vanished = False
      for step in steps:
        if step in damaged:
          continue
        try:
          return step, read(step), list(damaged.values())
        except propagate:
          raise
        except Exception as error:  # pylint: disable=broad-except  # any damage shows as some error
          if not os.path.isdir(self.step_directory(step)):
            # Deleted under us (a trainer's keep_checkpoints): not damage; start again
            # from the newest step, which the trainer keeps longest.
            logger.debug("Checkpoint step %d was deleted while being read; reading the "
                         "newest one.", step)  # a reader prints nothing but its result
            vanished = True
            break
          damaged[step] = Damaged(step, self._damage(step, error))
      if not vanished:
        return None, None, list(damaged.values())
    raise CheckpointError(f"the checkpoints in {self.directory} kept being deleted while being "
                          f"read ({MAX_VANISHED_RETRIES} tries); is a trainer with "
                          "keep_checkpoints=1 saving every step?")

  def read_step(self, step: int, read: Callable[[int], T]) -> T:
    """``read(step)``, with a one-line error if the step is gone or damaged."""
    try:
      return read(step)
    except IncompatibleCheckpointError:
      raise
    except Exception as error:  # pylint: disable=broad-except
      if not os.path.isdir(self.step_directory(step)):
        self.reload()
        raise FileNotFoundError(
            f"checkpoint step {step} was deleted while being read (by the running trainer?); "
            f"{self.directory} now holds {_list(self.all_steps())}") from None
      raise CheckpointError(f"checkpoint step {step} in {self.directory} does not restore: "
                            f"{self._damage(step, error)}") from None

  def move_aside(self, step: int) -> str:
    """Moves a damaged ``step`` into ``checkpoints/corrupt/`` (never deleting it);
    returns where it went. A step of the same number already there is kept:
    the newcomer gets a ``.1``, ``.2``… suffix."""
    if self.read_only:
      raise ValueError("a read-only Checkpointer moves nothing")
    corrupt = os.path.join(self.directory, CORRUPT_DIR)
    os.makedirs(corrupt, exist_ok=True)
    target, n = os.path.join(corrupt, str(step)), 0
    while os.path.exists(target):
      n += 1
      target = os.path.join(corrupt, f"{step}.{n}")
    os.rename(self.step_directory(step), target)
    self.reload()
    return target

  def save(self, step: int, state: Any, config: ml_collections.ConfigDict) -> None:
    """Starts saving ``state`` as ``step`` in the background (`wait` joins it).

    Raises:
      CheckpointError: this save or the previous one failed (its cause in one line).
    """
    stored = config_fingerprint(config)
    if self.data_record is not None:
      stored[TRAINED_ON] = self.data_record
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          config=ocp.args.JsonSave(stored)), force=True)
    except Exception as error:  # pylint: disable=broad-except
      self._save_failed(error)
    # `save` first waited for the previous save, whose clean-up moved old steps here.
    self._empty_trash()

  def check_compatible(self, config: ml_collections.ConfigDict, step: int,
                       data_record: Optional[dict] = None) -> None:
    """Raises `IncompatibleCheckpointError` if ``step`` was saved by another config (a
    field outside `RESUMABLE_FIELDS` differs) or, given ``data_record``, on other data
    (unless ``config.resume_on_new_data``, which logs the change instead)."""
    stored = dict(self._manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))["config"])
    trained_on = stored.pop(TRAINED_ON, None)
    current = config_fingerprint(config)
    # A field added since the checkpoint was saved held its default then (e.g.
    # data.random_flip): a checkpoint of an earlier release stays resumable.
    for field, default in config_fingerprint(base_config()).items():
      stored.setdefault(field, default)
    diffs = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if diffs:
      detail = ", ".join(f"{k}: checkpoint {stored.get(k)!r} vs now {current.get(k)!r}"
                         for k in diffs[:8])
      raise IncompatibleCheckpointError(
          f"{self.directory} holds step {step} of a run with another config ({detail}). "
          f"Use a new --workdir, or the original config; nothing was overwritten.")
    if data_record is None or trained_on is None:  # (a checkpoint older than data records)
      return
    changed = record_differences(trained_on, data_record)
    if not changed:
      return
    if config.get("resume_on_new_data", False):
      logger.warning("Resuming step %d, trained on %s, on %s (config.resume_on_new_data).",
                     step, describe_record(trained_on), describe_record(data_record))
      return
    raise IncompatibleCheckpointError(
        f"{self.directory} holds step {step} trained on {describe_record(trained_on)}, but "
        f"this run's data is {describe_record(data_record)} ({', '.join(changed)} differ). "
        "To continue on the new data on purpose: --config.resume_on_new_data=True; "
        "else use a new --workdir or the original data. Nothing was overwritten.")

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

  def check_for_errors(self) -> None:
    """Raises `CheckpointError` (one line, with the cause) if a background save
    failed; removes that save's temporary folder (intact steps stay)."""
    try:  # non-blocking: it reads what a finished background save left
      self._manager.check_for_errors()
    except Exception as error:  # pylint: disable=broad-except
      self._save_failed(error)

  def _save_failed(self, error: BaseException):
    if self.read_only:  # a reader never saves, and must never clean up the trainer's saves
      raise error
    self._remove_temporary_steps()
    self.reload()
    raise CheckpointError(
        f"saving a checkpoint in {self.directory} failed: {describe_error(error)}; training "
        f"stopped. Intact checkpoints: {_list(self.all_steps())}. Free space or fix "
        "permissions, then rerun the same command.") from error

  def _remove_temporary_steps(self) -> None:
    """Unfinished saves' folders (never listed as steps). Only a writer that holds
    the workdir lock calls this, so no other save is in progress."""
    if jax.process_index() != 0:
      return  # the primary process owns the folder's layout, as in orbax
    try:
      names = os.listdir(self.directory)
    except OSError:
      return
    for name in names:
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def wait(self) -> None:
    try:
      self._manager.wait_until_finished()
      self._manager.check_for_errors()
    except Exception as error:  # pylint: disable=broad-except
      self._save_failed(error)
    self._empty_trash()

  def close(self) -> None:
    """Waits for a save in progress, then releases orbax's resources.

    Raises:
      CheckpointError: that save failed.
    """
    try:
      self._manager.close()
    except Exception as error:  # pylint: disable=broad-except
      self._save_failed(error)
    self._empty_trash()

  def reload(self) -> None:
    """Lists the steps on disk again (another process changed the folder)."""
    _listing(self._manager.reload)

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


def _listing(make: Callable[[], T]) -> T:
  """``make()``, which lists the step folders (orbax reads each one's metadata),
  tried again when a step vanishes between being listed and being read — a
  running trainer deleting an old step while a reader lists them."""
  for _ in range(MAX_VANISHED_RETRIES - 1):
    try:
      return make()
    except FileNotFoundError:
      pass
  return make()


def _list(steps) -> str:
  return ", ".join(map(str, sorted(steps))) or "none"


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
