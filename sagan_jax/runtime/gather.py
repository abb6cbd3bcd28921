"""Every process's Python object, on every process: a multi-host all-gather of anything.

`jax.experimental.multihost_utils.process_allgather` moves arrays, through the
devices, in the dtypes JAX allows — with x64 off a float64 would arrive as a
float32. `allgather_objects` moves bytes instead: each process pickles its
object, the bytes travel as uint32 words (padded to a multiple of 4 and to the
longest process's length), and each process unpickles every process's bytes —
bit-exact for any NumPy dtype (an evaluation's float64 moments,
`sagan_jax.runs.shared_evaluation`). Pickle is safe here: the bytes come from
the run's own processes.

A collective: every process must call it, in the same order as its other
collectives.
"""

from __future__ import annotations

import pickle
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["allgather_objects"]

_WORD = np.dtype(np.uint32).itemsize


def _words(payload: bytes, length: int) -> np.ndarray:
  """``payload`` zero-padded to ``length`` uint32 words."""
  padded = payload + b"\0" * (length * _WORD - len(payload))
  return np.frombuffer(padded, np.uint32)


def allgather_objects(obj: Any) -> list[Any]:
  """``[object of process 0, object of process 1, …]`` on every process (one process:
  ``[obj]``, nothing pickled)."""
  if jax.process_count() == 1:
    return [obj]
  payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
  sizes = np.asarray(multihost_utils.process_allgather(np.asarray([len(payload)], np.int32)))
  sizes = sizes.reshape(-1).astype(np.int64)
  length = int(-(-sizes.max() // _WORD))  # words of the longest payload
  gathered = np.asarray(multihost_utils.process_allgather(_words(payload, length)))
  return [pickle.loads(gathered[i].tobytes()[:int(size)]) for i, size in enumerate(sizes)]
