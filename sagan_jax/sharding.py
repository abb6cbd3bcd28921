"""Data-parallel sharding: one ``data`` mesh axis over every device of every host.

The state is replicated; batches are split along their first axis. Because
the train step is written for the *global* batch (means and BatchNorm
statistics over axis 0), ``jit`` inserts the cross-device reductions and the
result does not depend on the number of devices. Sampling and feature
extraction use the same helpers over a process's local devices.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh named ``data`` over ``devices`` (default: all, all hosts)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def stacked_batch_sharded(mesh: Mesh) -> NamedSharding:
  """K batches stacked on a leading (scan) axis: split the batch axis, axis 1."""
  return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def batch_sharded_at(mesh: Mesh, axis: int) -> NamedSharding:
  """Batches whose batch axis is ``axis`` (after ``axis`` stacking axes, e.g. K steps of
  d_steps D batches: axis 2), split over the mesh on that axis."""
  return NamedSharding(mesh, PartitionSpec(*(None,) * axis, DATA_AXIS))


def check_divisible(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
  """A global batch must split evenly over the devices; say so before compute."""
  devices = mesh.devices.size
  if batch_size % devices:
    raise ValueError(
        f"the {what} {batch_size} does not divide over {devices} devices; choose a multiple "
        f"of {devices} (or, for a final partial batch, set config.batching.drop_remainder=True).")


def padded_size(size: int, mesh: Mesh) -> int:
  """``size`` rounded up to a multiple of the mesh's device count."""
  devices = mesh.devices.size
  return -(-size // devices) * devices


def global_batch(local: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """This process's slice of a batch → one global array sharded over the mesh."""
  return jax.make_array_from_process_local_data(sharding, local)
