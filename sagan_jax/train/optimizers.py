"""Optimizers from the config: Adam with the two-timescale learning rates (TTUR)."""

from __future__ import annotations

import optax


def adam(learning_rate: float, b1: float, b2: float, eps: float = 1e-8
         ) -> optax.GradientTransformation:
  """``torch.optim.Adam`` with the same hyper-parameters (no weight decay)."""
  return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


def make_optimizers(config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """``(g_tx, d_tx)`` from ``config.optimizer`` (lr_g, lr_d, b1, b2, eps)."""
  opt = config.optimizer
  return (adam(opt.lr_g, opt.b1, opt.b2, opt.eps), adam(opt.lr_d, opt.b1, opt.b2, opt.eps))
