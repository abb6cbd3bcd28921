"""Multi-host start-up.

``jax.distributed.initialize()`` must run before anything touches a device.
It is called when the environment says this is one process of several:
``SAGAN_DISTRIBUTED=1`` (arguments then come from the cluster environment that
JAX auto-detects: SLURM, Open MPI, Cloud TPU, Kubernetes), or an explicit
``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.
"""

from __future__ import annotations

import os

import jax


def maybe_initialize() -> bool:
  """Initialises ``jax.distributed`` when configured; returns whether it did."""
  address = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if address:
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]))
    return True
  if os.environ.get("SAGAN_DISTRIBUTED") == "1":
    jax.distributed.initialize()
    return True
  return False
