"""Test set-up.

* Four simulated CPU devices (unless XLA_FLAGS says otherwise), so the
  multi-device tests can build 1-, 2- and 4-device meshes in one process. This
  must happen before jax is imported.
* float32 matmuls at full precision, so parity is not at the mercy of a
  backend's default (TF32/bf16 passes on some accelerators).
"""

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402  (after XLA_FLAGS)

jax.config.update("jax_default_matmul_precision", "highest")
