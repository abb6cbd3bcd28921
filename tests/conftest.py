"""Test set-up: float32 matmuls at full precision, so parity is not at the mercy
of a backend's default (TF32/bf16 passes on some accelerators)."""

import jax

jax.config.update("jax_default_matmul_precision", "highest")
