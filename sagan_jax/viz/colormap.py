"""Colour maps without matplotlib: viridis (the default of every figure), jet and grey."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COLORMAPS", "VIRIDIS_ANCHORS", "apply_colormap", "check_colormap"]

# Viridis sampled at 17 evenly spaced points (matplotlib's table, copied so
# matplotlib is not needed). Its luminance rises monotonically, so "brightest"
# means "most attended", which 'jet' (dark red at the top) does not give.
# The explorer page interpolates the same table in its script.
VIRIDIS_ANCHORS = np.array([
    [0.2670, 0.0049, 0.3294], [0.2823, 0.0950, 0.4173],
    [0.2788, 0.1755, 0.4834], [0.2590, 0.2515, 0.5247],
    [0.2297, 0.3224, 0.5457], [0.1994, 0.3876, 0.5546],
    [0.1727, 0.4488, 0.5579], [0.1490, 0.5081, 0.5572],
    [0.1276, 0.5669, 0.5506], [0.1206, 0.6258, 0.5335],
    [0.1579, 0.6838, 0.5017], [0.2461, 0.7389, 0.4520],
    [0.3692, 0.7889, 0.3829], [0.5160, 0.8312, 0.2943],
    [0.6785, 0.8637, 0.1895], [0.8456, 0.8873, 0.0997],
    [0.9932, 0.9062, 0.1439],
], dtype=np.float64)
COLORMAPS = ("viridis", "jet", "gray")


def check_colormap(name: str) -> None:
  """Raises ``ValueError`` for a name that is not one of `COLORMAPS`."""
  if name not in COLORMAPS:
    raise ValueError(f"unknown colormap {name!r}; expected 'viridis', 'jet' or 'gray'.")


def apply_colormap(values: Any, name: str = "viridis") -> np.ndarray:
  """Maps values in [0, 1] to RGB uint8 with a small built-in colour map.

  Args:
    values: array of any shape; clipped to [0, 1], NaN treated as 0.
    name: 'viridis' (perceptually uniform, brightness rises with value),
      'jet' (the classic rainbow) or 'gray'.

  Returns:
    uint8 array of shape ``values.shape + (3,)``.

  Raises:
    ValueError: for an unknown ``name``.
  """
  check_colormap(name)
  t = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
  if name == "viridis":
    pos = t * (len(VIRIDIS_ANCHORS) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(VIRIDIS_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = VIRIDIS_ANCHORS[lo] * (1.0 - frac) + VIRIDIS_ANCHORS[lo + 1] * frac
  elif name == "jet":
    # The usual piecewise-linear approximation of MATLAB's jet.
    rgb = np.stack([np.clip(1.5 - np.abs(4.0 * t - k), 0.0, 1.0)
                    for k in (3.0, 2.0, 1.0)], axis=-1)
  else:  # gray
    rgb = np.repeat(t[..., None], 3, axis=-1)
  return np.floor(rgb * 255.0 + 0.5).astype(np.uint8)
