"""The errors a user can cause (bad config, data, workdir, checkpoint, evaluation, diverged run).

Command-line entry points report these as one clear line instead of a traceback.
"""

from sagan_jax.data.errors import DataError
from sagan_jax.eval.errors import EvalError
from sagan_jax.train.checkpoint import IncompatibleCheckpointError
from sagan_jax.train.config import ConfigError


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or infinite; training stopped before saving it."""


class SamplingError(ValueError):
  """A sampling request the run cannot serve (a class it lacks, labels for an
  unconditional generator, no attention layer to draw)."""


USER_ERRORS = (ConfigError, DataError, EvalError, IncompatibleCheckpointError,
               NonFiniteLossError, SamplingError, FileNotFoundError)
