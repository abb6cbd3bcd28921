"""The errors a user can cause (bad config, data, workdir, checkpoint, evaluation, diverged run).

Command-line entry points report these as one clear line instead of a traceback.
``OSError`` is among them: a full disk, a read-only folder or a missing file is
the environment's doing, and its message names the path and the cause.
"""

from sagan_jax.data.errors import DataError
from sagan_jax.eval.errors import EvalError
from sagan_jax.runtime.workdir_lock import WorkdirLockedError
from sagan_jax.train.checkpoint import CheckpointError, IncompatibleCheckpointError
from sagan_jax.train.config import ConfigError


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or infinite; training stopped before saving it."""


class SamplingError(ValueError):
  """A sampling request the run cannot serve (a class it lacks, labels for an
  unconditional generator, no attention layer to draw)."""


class ArgumentError(ValueError):
  """A bad argument to a run-level function (a count, a seed, a step)."""


USER_ERRORS = (ConfigError, DataError, EvalError, IncompatibleCheckpointError, CheckpointError,
               NonFiniteLossError, SamplingError, ArgumentError, WorkdirLockedError, OSError)
