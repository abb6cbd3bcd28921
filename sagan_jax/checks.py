"""Argument checks shared by every floor, each raising the caller's error type.

Configs raise ``ConfigError``, data ``DataError``, evaluation ``EvalError``:
one helper, so "a positive integer" means the same thing everywhere (bools
are not integers; NumPy integers are).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def require_int(value: Any, name: str, minimum: int = 1, error: type[Exception] = ValueError
                ) -> int:
  """``value`` as an int if it is an integer ≥ ``minimum``, else raises ``error``."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    raise error(f"{name} must be {what}, got {value!r}")
  return int(value)
