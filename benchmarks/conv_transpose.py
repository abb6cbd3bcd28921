"""Forward+backward time of the chapter's convolutions: ours vs PyTorch vs plain XLA.

For every ConvTranspose2d of the 64x64 generator (and, in a second table, every Conv2d
of the discriminator) at the chapter's batch size, times one jitted call that computes
``L = sum(y * r)`` and its gradients with respect to x and the kernel:

* ours: ``sagan_jax.ops`` with ``implementation='auto'`` (the GEMM path on CPU);
* torch: ``torch.nn.functional`` on NCHW tensors, ``autograd.grad`` of the same loss,
  in this process with torch's default thread count;
* xla: ``implementation='xla'``, one ``lax.conv_general_dilated`` per op, which is
  what ``flax.linen.ConvTranspose``/``Conv`` lower to (its kernel gradient is the slow
  dilated convolution on XLA:CPU; ``--no-xla`` skips it).

The three are timed interleaved (one call of each per round) so that load from other
processes hits them alike; the table shows the median over ``--repeats`` rounds after
one warm-up call, ``torch/ours`` (>= 1.0: ours is as fast or faster), and the largest
absolute differences of our y, dL/dx and dL/dkernel from torch's (max|dy|, max|dgx|,
max|dgk|; float32, x and r uniform in [-1, 1], kernels N(0, 0.02) as the chapter
initialises them), and the largest of the three relative to the reference's largest
entry (rel): the kernel gradient sums B*H*W terms, so its entries reach ~1e2.

Measured results and the choices they explain: benchmarks/README.md.

Usage:
  python benchmarks/conv_transpose.py [--repeats N] [--batch 64] [--no-xla]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from sagan_jax.ops import conv2d, conv_transpose2d  # noqa: E402  (after the path set-up)
from sagan_jax.ops.compiler_options import compiler_options  # noqa: E402
from timing import Conditions  # noqa: E402  # benchmarks/timing.py

try:
  import torch  # pylint: disable=g-import-not-at-top
except ImportError:  # The benchmark still times our side without torch.
  torch = None

# (H, Cin, Cout, kernel, stride, padding) of the input; the chapter's 64x64 SAGAN.
GENERATOR_CONV_TRANSPOSE = [
    (1, 20, 512, 4, 1, 0),
    (4, 512, 256, 4, 2, 1),
    (8, 256, 128, 4, 2, 1),
    (16, 128, 64, 4, 2, 1),
    (32, 64, 1, 4, 2, 1),
]
DISCRIMINATOR_CONV = [
    (64, 1, 64, 4, 2, 1),
    (32, 64, 128, 4, 2, 1),
    (16, 128, 256, 4, 2, 1),
    (8, 256, 512, 4, 2, 1),
    (4, 512, 1, 4, 1, 0),
]


def _jax_step(op, stride, padding, implementation):
  """Jitted (x, kernel, r) -> (y, (dL/dx, dL/dkernel)) for L = sum(y * r)."""
  fn = functools.partial(op, stride=stride, padding=padding,
                         implementation=implementation)

  @functools.partial(jax.jit, compiler_options=compiler_options())
  def step(x, kernel, r):
    y, vjp = jax.vjp(fn, x, kernel)
    return y, vjp(r)

  return step


def _torch_step(transposed, stride, padding):
  fn = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d

  def step(x, w, r):
    y = fn(x, w, stride=stride, padding=padding)
    return y, torch.autograd.grad((y * r).sum(), (x, w))

  return step


def _time_interleaved(calls, repeats):
  """Median milliseconds of each call, timed in rounds of one call each."""
  for call in calls.values():
    call()  # warm-up (and compilation)
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      call()
      times[name].append(1e3 * (time.perf_counter() - start))
  return {name: statistics.median(t) for name, t in times.items()}


def _run_size(size, batch, transposed, repeats, with_xla):
  h, cin, cout, k, stride, padding = size
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (batch, h, h, cin)).astype(np.float32)
  kernel = (0.02 * rng.standard_normal((k, k, cin, cout))).astype(np.float32)
  op = conv_transpose2d if transposed else conv2d
  y_shape = jax.eval_shape(
      functools.partial(op, stride=stride, padding=padding), x, kernel).shape
  r = rng.uniform(-1, 1, y_shape).astype(np.float32)
  xj, kj, rj = jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(r)

  ours = _jax_step(op, stride, padding, 'auto')
  calls = {'ours': lambda: jax.block_until_ready(ours(xj, kj, rj))}
  if with_xla:
    xla = _jax_step(op, stride, padding, 'xla')
    calls['xla'] = lambda: jax.block_until_ready(xla(xj, kj, rj))
  if torch is not None:
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    # torch layouts: ConvTranspose2d (I, O, kh, kw), Conv2d (O, I, kh, kw).
    wt = torch.tensor(kernel.transpose(2, 3, 0, 1) if transposed else
                      kernel.transpose(3, 2, 0, 1), requires_grad=True)
    rt = torch.tensor(r.transpose(0, 3, 1, 2))
    tstep = _torch_step(transposed, stride, padding)
    calls['torch'] = lambda: tstep(xt, wt, rt)
  ms = _time_interleaved(calls, repeats)

  diff = None
  if torch is not None:
    y, (gx, gk) = ours(xj, kj, rj)
    yt, (gxt, gwt) = tstep(xt, wt, rt)
    wt_to_hwio = (2, 3, 0, 1) if transposed else (2, 3, 1, 0)
    pairs = [(y, yt.detach().numpy().transpose(0, 2, 3, 1)),
             (gx, gxt.numpy().transpose(0, 2, 3, 1)),
             (gk, gwt.numpy().transpose(wt_to_hwio))]
    diff = [np.abs(np.asarray(a) - b).max() for a, b in pairs]
    # Relative to the largest reference entry: float32 sums of up to B*H*W terms.
    diff.append(max(d / np.abs(b).max() for d, (_, b) in zip(diff, pairs)))
  label = f'{h}x{h}x{cin} -> {y_shape[1]}x{y_shape[2]}x{cout} (k{k} s{stride} p{padding})'
  return label, ms, diff


def _print_table(title, rows, with_xla):
  print(f'\n{title}')
  header = (f'{"size":<38} {"torch ms":>9} {"ours ms":>9} {"xla ms":>9} {"torch/ours":>10}'
            f' {"max|dy|":>9} {"max|dgx|":>9} {"max|dgk|":>9} {"rel":>9}')
  print(header)
  print('-' * len(header))
  for label, ms, diff in rows:
    torch_ms = f'{ms["torch"]:9.1f}' if 'torch' in ms else f'{"-":>9}'
    xla_ms = f'{ms["xla"]:9.1f}' if with_xla else f'{"-":>9}'
    ratio = f'{ms["torch"] / ms["ours"]:10.2f}' if 'torch' in ms else f'{"-":>10}'
    diff_s = (' '.join(f'{d:9.1e}' for d in diff) if diff is not None else
              ' '.join(f'{"-":>9}' for _ in range(4)))
    print(f'{label:<38} {torch_ms} {ms["ours"]:9.1f} {xla_ms} {ratio} {diff_s}')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--repeats', type=int, default=5, help='timed rounds per size')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--no-xla', dest='xla', action='store_false',
                      help='skip the plain-XLA column (seconds per call on CPU)')
  args = parser.parse_args(argv)
  conditions = Conditions()
  print(conditions.start_line())
  print(f'jax {jax.__version__} on {jax.default_backend()}; batch {args.batch}; '
        f'median of {args.repeats} after 1 warm-up; forward + grad w.r.t. x and kernel.')
  if torch is None:
    print('torch is not installed: timing ours (and xla) only.')
  else:
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads.')
  for title, sizes, transposed in [
      ('conv_transpose2d (generator)', GENERATOR_CONV_TRANSPOSE, True),
      ('conv2d (discriminator)', DISCRIMINATOR_CONV, False)]:
    rows = [_run_size(size, args.batch, transposed, args.repeats, args.xla)
            for size in sizes]
    _print_table(title, rows, args.xla)
  print(conditions.end_line())


if __name__ == '__main__':
  main()
