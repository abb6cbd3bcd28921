"""What the in-process and subprocess run tests check in a workdir, and a poisoned step.

Checkpoints (restore, list, every one intact), bit-for-bit state equality, a
workdir's file snapshot, the TensorBoard scalars a run logged, and a train step
that turns the generator NaN (test_train_loop.py in process, test_cli.py in a
subprocess).
"""

from __future__ import annotations

import os
import pathlib
import struct

import jax
import jax.numpy as jnp
import numpy as np

from sagan_jax import sharding
from sagan_jax.runs import load_config
from sagan_jax.runs import training as loop
from sagan_jax.train.checkpoint import Checkpointer, abstract_like

POISON_STEP = 3  # see poisoned_make_train_step


def restore(workdir, step: int, config=None):
  """The state checkpointed at ``step`` in ``workdir`` (read-only)."""
  config = config or load_config(str(workdir))
  trainer = loop.Trainer(config)
  abstract = abstract_like(jax.eval_shape(trainer.init_state), sharding.replicated(trainer.mesh))
  checkpointer = Checkpointer(str(workdir), read_only=True)
  try:
    return jax.device_get(checkpointer.restore(step, abstract))
  finally:
    checkpointer.close()


def checkpoint_steps(workdir) -> list[int]:
  checkpointer = Checkpointer(str(workdir), read_only=True)
  try:
    return sorted(checkpointer.all_steps())
  finally:
    checkpointer.close()


def assert_all_checkpoints_restore(workdir, config=None) -> list[int]:
  """Every checkpoint orbax lists restores, holds its own step and only finite floats."""
  steps = checkpoint_steps(workdir)
  for step in steps:
    state = restore(workdir, step, config)
    assert int(state.step) == step
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
      if np.issubdtype(np.asarray(leaf).dtype, np.floating):
        assert np.all(np.isfinite(leaf)), f"step {step}: non-finite {jax.tree_util.keystr(path)}"
  return steps


def assert_states_identical(a, b, what: str = "state") -> None:
  """Bit-for-bit equality of two pytrees (structure, dtypes, shapes, bytes)."""
  a, b = jax.device_get(a), jax.device_get(b)
  flat_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
  flat_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
  assert tree_a == tree_b, f"{what}: different structure"
  for (path, x), (_, y) in zip(flat_a, flat_b):
    x, y = np.asarray(x), np.asarray(y)
    name = f"{what}{jax.tree_util.keystr(path)}"
    assert x.dtype == y.dtype and x.shape == y.shape, name
    assert x.tobytes() == y.tobytes(), f"{name} differs (max |Δ| {np.max(np.abs(x - y))})"


def snapshot(root) -> dict[str, tuple[int, int]]:
  """``{relative path: (size, mtime_ns)}`` of every file and folder under ``root``."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      path = os.path.join(dirpath, name)
      stat = os.stat(path)
      out[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
  return out


def read_events(workdir) -> list:
  """Every TensorBoard event in ``workdir`` (TFRecord framing parsed by hand)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel

  events = []
  for name in sorted(os.listdir(workdir)):
    if not name.startswith("events.out.tfevents"):
      continue
    data = pathlib.Path(workdir, name).read_bytes()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      events.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + length]))
      pos += 16 + length
  return events


def scalars(workdir) -> dict[tuple[int, str], float]:
  return {(e.step, v.tag): v.simple_value for e in read_events(workdir)
          if e.HasField("summary") for v in e.summary.value if v.HasField("simple_value")}


def poisoned_make_train_step(make_train_step):
  """``make_train_step`` whose generator params turn NaN from step POISON_STEP on,
  while that step's own losses stay finite — as after an overflowing gradient. The
  next step's losses are then NaN. (test_cli.py runs it in a subprocess too.)"""

  def make(*args, **kwargs):
    train_step = make_train_step(*args, **kwargs)

    def poisoned_train_step(state, batch):
      state, metrics = train_step(state, batch)
      bad = state.step >= POISON_STEP
      params = jax.tree.map(lambda x: jnp.where(bad, jnp.nan, x), state.generator.params)
      return state.replace(generator=state.generator.replace(params=params)), metrics

    return poisoned_train_step

  return make
