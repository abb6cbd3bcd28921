"""Self-attention forward+backward: materialized N×N path vs the memory-efficient path.

For each N (a sqrt(N)×sqrt(N) feature map) with C = 64 channels as the seed's layer
has them (queries/keys C/8 = 8 wide, values C = 64 wide), one jitted call computes
``L = sum(attend(q, k, v) * r)`` and its gradients with respect to q, k and v:

* materialized: ``attend(..., chunk_size=None)``, softmax over the full (B, N, N) matrix;
* efficient: ``attend(..., chunk_size=--chunk-size)``, blocks (images × query rows) with a custom
  JVP whose transpose recomputes the scores in the backward (``sagan_jax.ops.attention``);
* remat (``--remat``): the same blocks as plain ``jax.checkpoint`` of the materialized math (the
  alternative the hand-written tangent is measured against; defined here, not in the library).

Peak memory is the compiled program's temp buffer size,
``jax.jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes``: what XLA
allocates beyond the arguments and outputs (which are the same for every path).
It is deterministic and does not depend on the load of this shared machine.
The materialized path is skipped where its temp + argument + output size would
exceed ``--max-gb``. Times are the median over ``--repeats`` interleaved rounds
(one call of each path per round) after one warm-up call, as wall clock and as
this process's CPU time (less sensitive to other processes on the machine).
``max|Δ|``: largest absolute differences of the efficient path's out, dq, dk, dv
from the materialized path's; ``(scaled)``: the largest |Δ| / max(1, |materialized|),
the parity tests' measure. ``err vs f64`` (N ≤ ``--f64-max-n``): each path's largest
error against a float64 NumPy reference, scaled the same way: the float32 rounding
both paths carry.

Measured results and the choices they explain: benchmarks/README.md.

Usage:
  python benchmarks/attention.py [--sizes 1024 4096 16384] [--batch 1] [--repeats 5]
      [--chunk-size 512] [--max-gb 8] [--remat] [--f64-max-n 4096]
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from sagan_jax.ops import attention as attention_lib  # noqa: E402  pylint: disable=g-import-not-at-top
from timing import Conditions  # noqa: E402  # benchmarks/timing.py

CHANNELS = 64
QK_DEPTH = CHANNELS // 8
MB = 2.0**20


def _step(fn):
  """Jitted (q, k, v, r) -> (out, (dq, dk, dv)) for L = sum(out * r)."""

  def run(q, k, v, r):
    out, vjp = jax.vjp(fn, q, k, v)
    return out, vjp(r)

  return jax.jit(run)


def _paths(chunk_size: int, remat: bool) -> dict:
  paths = {
      'materialized': functools.partial(attention_lib.attend, chunk_size=None),
      'efficient': functools.partial(attention_lib.attend, chunk_size=chunk_size),
  }
  if remat:
    paths['remat'] = functools.partial(_attend_remat, chunk_size=chunk_size)
  return paths


def _attend_remat(queries, keys, values, chunk_size):
  """The efficient path's blocks, each the materialized math under jax.checkpoint."""
  # pylint: disable=protected-access
  lib = attention_lib
  layout = lib._block_layout(queries.shape[0], queries.shape[1], keys.shape[1], chunk_size)

  @jax.checkpoint
  def one_chunk(q_chunk, keys, values):
    return lib._attend_materialized(q_chunk, keys, values)[0]

  def one_group(queries, keys, values):
    out = jax.lax.map(lambda q_chunk: one_chunk(q_chunk, keys, values),
                      lib._split_rows(queries, layout.num_chunks, layout.rows))
    return lib._merge_rows(out, queries.shape[1])

  return lib._map_groups(one_group, layout.group, queries, keys, values)


def _reference_f64(q, k, v, r, block: int = 512):
  """float64 out, dq, dk, dv of L = sum(softmax(q kᵀ) v · r), in query blocks."""
  q, k, v, r = (np.asarray(t, np.float64) for t in (q, k, v, r))
  out, dq = np.empty_like(r), np.empty_like(q)
  dk, dv = np.zeros_like(k), np.zeros_like(v)
  for start in range(0, q.shape[1], block):
    rows = slice(start, start + block)
    s = np.einsum('bqd,bkd->bqk', q[:, rows], k)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out[:, rows] = p @ v
    dv += np.einsum('bqk,bqd->bkd', p, r[:, rows])
    dp = np.einsum('bqd,bkd->bqk', r[:, rows], v)
    ds = p * (dp - np.sum(p * dp, -1, keepdims=True))
    dq[:, rows] = ds @ k
    dk += np.einsum('bqk,bqd->bkd', ds, q[:, rows])
  return out, dq, dk, dv


def _flat(result):
  out, (dq, dk, dv) = result
  return out, dq, dk, dv


def _scaled_error(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.max(np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))))


def _bench_size(n: int, args) -> dict:
  side = math.isqrt(n)
  keys = jax.random.split(jax.random.key(n), 4)
  shapes = [(args.batch, n, QK_DEPTH), (args.batch, n, QK_DEPTH), (args.batch, n, CHANNELS),
            (args.batch, n, CHANNELS)]
  inputs = [jax.random.normal(key, shape, jnp.float32) for key, shape in zip(keys, shapes)]
  layout = attention_lib._block_layout(args.batch, n, n, args.chunk_size)  # pylint: disable=protected-access
  if attention_lib._is_one_block(layout, args.batch):  # pylint: disable=protected-access
    layout = None  # one block holds every score: attend materializes
  row = {'n': n, 'map': f'{side}x{side}' if side * side == n else f'N={n}', 'layout': layout}

  compiled, skipped = {}, {}
  for name, fn in _paths(args.chunk_size, args.remat).items():
    program = _step(fn).lower(*inputs).compile()
    memory = program.memory_analysis()
    total = (memory.temp_size_in_bytes + memory.argument_size_in_bytes
             + memory.output_size_in_bytes)
    row[f'{name}_temp'] = memory.temp_size_in_bytes
    if total > args.max_gb * 2**30:
      skipped[name] = total
      continue
    compiled[name] = program

  results = {name: program(*inputs) for name, program in compiled.items()}  # warm-up
  jax.block_until_ready(results)
  wall = {name: [] for name in compiled}
  cpu = {name: [] for name in compiled}
  for _ in range(args.repeats):
    for name, program in compiled.items():
      start_wall, start_cpu = time.perf_counter(), time.process_time()
      jax.block_until_ready(program(*inputs))
      cpu[name].append(time.process_time() - start_cpu)
      wall[name].append(time.perf_counter() - start_wall)
  for name in compiled:
    row[f'{name}_ms'] = 1e3 * statistics.median(wall[name])
    row[f'{name}_cpu_ms'] = 1e3 * statistics.median(cpu[name])
  row['skipped'] = skipped

  if 'materialized' in results:
    pairs = list(zip(_flat(results['efficient']), _flat(results['materialized'])))
    row['max_abs_diff'] = [float(jnp.max(jnp.abs(a - b))) for a, b in pairs]
    row['scaled_diff'] = max(_scaled_error(a, b) for a, b in pairs)
  if n <= args.f64_max_n:
    reference = _reference_f64(*inputs)
    row['f64_err'] = {
        name: max(_scaled_error(a, b) for a, b in zip(_flat(result), reference))
        for name, result in results.items()}
  return row


def _fmt(value, spec: str, width: int) -> str:
  return f'{value:{spec}}'.rjust(width) if value is not None else '-'.rjust(width)


def _print_tables(rows, args) -> None:
  print(f'\nfwd+bwd of sum(attend(q, k, v) * r), B={args.batch}, C={CHANNELS} '
        f'(q/k {QK_DEPTH} wide, v {CHANNELS}), float32, efficient chunk_size={args.chunk_size}; '
        f'temp = compiled temp buffers (memory_analysis); ms = median of {args.repeats} '
        f'(wall | process CPU)')
  header = (f'{"N":>6} {"map":>8} {"blocks":>8} | {"temp MB mat":>11} {"eff":>7} {"saving":>8} | '
            f'{"ms mat":>8} {"eff":>8} {"eff/mat":>7} | {"cpu mat":>8} {"eff":>8} {"eff/mat":>7} | '
            f'max|Δ| out, dq, dk, dv  (scaled)')
  print(header)
  print('-' * len(header))
  for row in rows:
    mat_temp, eff_temp = row['materialized_temp'], row['efficient_temp']
    mat_ms, eff_ms = row.get('materialized_ms'), row['efficient_ms']
    mat_cpu, eff_cpu = row.get('materialized_cpu_ms'), row['efficient_cpu_ms']
    layout = '{}x{}x{}'.format(*row['layout']) if row['layout'] else 'none'  # images x chunks x rows
    line = (f'{row["n"]:>6} {row["map"]:>8} {layout:>8} | '
            f'{mat_temp / MB:>11.1f} {eff_temp / MB:>7.1f} {mat_temp / eff_temp:>7.1f}x | ')
    if 'materialized' in row['skipped']:
      gb = row['skipped']['materialized'] / 2**30
      line += f'materialized skipped (would need {gb:.1f} GB) '.ljust(57) + '|'
      line += f' eff {eff_ms:.0f} ms, cpu {eff_cpu:.0f} ms'
    else:
      line += (f'{mat_ms:>8.1f} {eff_ms:>8.1f} {eff_ms / mat_ms:>6.2f}x | '
               f'{mat_cpu:>8.1f} {eff_cpu:>8.1f} {eff_cpu / mat_cpu:>6.2f}x | '
               + ', '.join(f'{d:.1e}' for d in row['max_abs_diff'])
               + f'  ({row["scaled_diff"]:.1e})')
    print(line)
  if args.remat:
    print('\nremat fallback (jax.checkpoint over query chunks):')
    for row in rows:
      print(f'{row["n"]:>6}: temp {row["remat_temp"] / MB:.1f} MB, {row["remat_ms"]:.1f} ms '
            f'(cpu {row["remat_cpu_ms"]:.1f} ms) vs efficient {row["efficient_temp"] / MB:.1f} MB, '
            f'{row["efficient_ms"]:.1f} ms (cpu {row["efficient_cpu_ms"]:.1f} ms)')
  checked = [row for row in rows if 'f64_err' in row]
  if checked:
    print('\nlargest error against float64, |Δ| / max(1, |ref|) over out, dq, dk, dv:')
    for row in checked:
      print(f'{row["n"]:>6}: ' + ', '.join(
          f'{name} {err:.1e}' for name, err in row['f64_err'].items()))
  print(f'\n(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; '
        f'{jax.devices()[0].platform}, jax {jax.__version__})')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--sizes', type=int, nargs='+', default=[1024, 4096, 16384],
                      help='N = H·W of the feature map')
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=5, help='timed rounds per size')
  parser.add_argument('--chunk-size', type=int, default=512,
                      help="attend's chunk_size for the efficient path (rows per chunk cap)")
  parser.add_argument('--max-gb', type=float, default=8.0,
                      help='skip a path whose compiled temp+args+outputs exceed this')
  parser.add_argument('--remat', action='store_true',
                      help='also time the jax.checkpoint fallback of the efficient path')
  parser.add_argument('--f64-max-n', type=int, default=4096,
                      help='compare with a float64 reference up to this N (0: never)')
  args = parser.parse_args(argv)
  conditions = Conditions()
  print(conditions.start_line(), flush=True)
  rows = []
  for n in args.sizes:
    rows.append(_bench_size(n, args))
    print(f'N={n} done', file=sys.stderr, flush=True)
  _print_tables(rows, args)
  print(conditions.end_line())


if __name__ == '__main__':
  main()
