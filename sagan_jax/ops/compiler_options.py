"""XLA compiler options for the programs that run these ops: on CPU, convolutions on Eigen.

XLA:CPU (jax 0.10) hands every convolution, matrix product and reduction of a program to
YNNPACK by default (`xla_cpu_experimental_ynn_fusion_type`: individual dots, individual
convolutions, reductions). For the convolutions that is the slower library on the shapes
these models have: YNNPACK's convolution keeps ~1.5 of 2 cores busy where Eigen's (XLA's own
emitter) keeps both. Measured on the 2-core development machine, per call (benchmarks/
README.md, "XLA:CPU's convolution library"): the FID Inception's batch of 50, 3.61 → 2.80 s;
the 32-px ResNet SAGAN step, 488 → 344 ms; the chapter's step (GEMM-path convolutions:
matrix products) unchanged. YNNPACK stays for the matrix products and the reductions, which
are faster there (without its reductions the 32-px step took 459 ms).

`compiler_options(platform)` is what ``jax.jit(..., compiler_options=...)`` takes; the
trainer, the samplers and the feature networks pass it, and a researcher's own ``jax.jit``
can too. It is empty off CPU, where no such choice exists; when the user set the same flag
in ``XLA_FLAGS`` (theirs wins); and when the installed XLA does not accept the option (a
one-time probe compile, ~20 ms: a renamed flag costs speed, never a crash).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import jax
import jax.numpy as jnp

__all__ = ['YNN_FUSION_OPTION', 'compiler_options']

YNN_FUSION_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
# XLA's default list (individual dots, individual convolutions, reductions) without the
# convolutions. Given in full: an option passed to a compilation replaces the list.
_CPU_OPTIONS = {YNN_FUSION_OPTION: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'}


def compiler_options(platform: Optional[str] = None) -> dict[str, str]:
  """The compiler options for a program that runs on ``platform`` (default: JAX's
  default backend): on CPU, convolutions on Eigen and matrix products on YNNPACK; else
  none. A new dict each call (callers may add to it)."""
  platform = platform or jax.default_backend()
  if platform != 'cpu' or YNN_FUSION_OPTION in os.environ.get('XLA_FLAGS', ''):
    return {}
  return dict(_CPU_OPTIONS) if _cpu_accepts_options() else {}


@functools.cache
def _cpu_accepts_options() -> bool:
  """Whether this XLA:CPU compiles with `_CPU_OPTIONS` (the flag is experimental: a
  jaxlib that renamed or dropped it rejects the program)."""
  probe = jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS)
  on_cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend='cpu')[0])
  try:
    probe.lower(jax.ShapeDtypeStruct((1,), jnp.float32, sharding=on_cpu)).compile()
  except jax.errors.JaxRuntimeError:
    return False
  return True
