"""Multi-host start-up, and failing fast when one process of several fails.

``jax.distributed.initialize()`` must run before anything touches a device.
It is called when the environment says this is one process of several:
``SAGAN_DISTRIBUTED=1`` (arguments then come from the cluster environment that
JAX auto-detects: SLURM, Open MPI, Cloud TPU, Kubernetes), or an explicit
``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.
On CPUs the processes also need ``JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo``.

A process that dies (``kill -9``, out of memory, a lost host) is noticed by
the others either in their next collective — on CPUs gloo's TCP connection to
it breaks, and `fail_fast` turns that error into one line — or by JAX's
coordination service, which terminates every other process with "Terminating
process because the JAX distributed service detected fatal errors. This most
likely indicates that another task died" once it has missed
``SAGAN_HEARTBEAT_TIMEOUT_S`` seconds of heartbeats (JAX's default, 100, when
unset), at once when the dead one was process 0, which hosts the service. A
process that fails with a Python error must therefore not linger either: at
exit JAX waits in a shutdown barrier (up to 5 minutes) for peers that are
themselves blocked in a collective waiting for it. `fail_fast` ends it at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback

import jax

HEARTBEAT_TIMEOUT_ENV = "SAGAN_HEARTBEAT_TIMEOUT_S"


def maybe_initialize() -> bool:
  """Initialises ``jax.distributed`` when configured; returns whether it did."""
  options = {}
  if os.environ.get(HEARTBEAT_TIMEOUT_ENV):
    options["heartbeat_timeout_seconds"] = int(os.environ[HEARTBEAT_TIMEOUT_ENV])
  address = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if address:
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]), **options)
    return True
  if os.environ.get("SAGAN_DISTRIBUTED") == "1":
    jax.distributed.initialize(**options)
    return True
  return False


@contextlib.contextmanager
def fail_fast():
  """In a run of several processes, ends this one at once on any error (its
  message or traceback printed first), skipping JAX's shutdown barrier, so the
  others learn of it within the heartbeat timeout. One process: no effect."""
  try:
    yield
  except BaseException as error:  # pylint: disable=broad-except
    if jax.process_count() == 1:
      raise
    if isinstance(error, SystemExit):
      code = error.code
      if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    elif isinstance(error, jax.errors.JaxRuntimeError):  # a collective with a peer gone
      first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
      print(f"error: process {jax.process_index()}: {first} — another process of this run "
            "failed or died; see its log.", file=sys.stderr)
      code = 1
    else:
      traceback.print_exc()
      code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
