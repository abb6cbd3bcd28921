"""The cost of running a dispatch cut short (fewer than K steps) as single steps, as the
trainer does, against the alternative: one scan over K stacked batches whose step count
is data (a ``fori_loop`` over the first n, the rest padding), also one program whatever n.

    python benchmarks/dispatch_cut_short.py [--config configs/tiny.py] [--k 6] [--n 3]

Prints ms per step of: the K-step scan (the steady state), n single steps, and the
dynamic-count loop at n and at K; the ratios are against the K-step scan in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

import jax
import numpy as np

sys.path.insert(0, ".")
from benchmarks.timing import median_time  # noqa: E402
from sagan_jax.runs import training  # noqa: E402


def load_config(path):
  spec = importlib.util.spec_from_file_location("config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def make_dynamic_count_step(step_fn):
  """``(state, batches, n) -> state``: ``step_fn`` over the first ``n`` of K stacked
  batches, ``n`` traced (one program for every n ≤ K)."""

  def run(state, batches, n):
    def body(i, state):
      return step_fn(state, jax.tree.map(lambda x: x[i], batches))[0]
    return jax.lax.fori_loop(0, n, body, state)

  return run


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/tiny.py")
  parser.add_argument("--k", type=int, default=6)
  parser.add_argument("--n", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  config = load_config(args.config)
  config.steps_per_dispatch = args.k
  trainer = training.Trainer(config)
  step_fn = training.make_train_step(
      trainer.generator, trainer.discriminator, trainer.g_tx, trainer.d_tx,
      training.get_loss(config.loss), config.model.z_dim, num_classes=trainer.num_classes,
      d_steps=trainer.d_steps, ema=trainer.ema)
  dynamic = jax.jit(make_dynamic_count_step(step_fn), donate_argnums=0)
  host = [trainer.host_batch(i % trainer.batcher.batches_per_epoch) for i in range(args.k)]
  host = [b for b in host if len(b["image"]) == trainer.batcher.batch_size][:args.k]
  while len(host) < args.k:
    host.append(host[0])
  state = [trainer.init_state()]

  def run(fn):
    def call():
      state[0] = fn(state[0])
      jax.block_until_ready(state[0])
    return call

  scan = run(lambda s: trainer.dispatch(s, host)[0])
  singles = run(lambda s: trainer.dispatch(s, host[:args.n])[0])
  stacked = trainer.stacked_device_batch(host)
  dyn_n = run(lambda s: dynamic(s, stacked, np.int32(args.n)))
  dyn_k = run(lambda s: dynamic(s, stacked, np.int32(args.k)))
  rows = [("K-step scan", args.k, scan), (f"{args.n} single steps (the trainer)", args.n, singles),
          (f"dynamic count, n={args.n} of K", args.n, dyn_n),
          (f"dynamic count, n={args.k}", args.k, dyn_k)]
  results = [(name, median_time(fn, args.repeats)[0] / steps) for name, steps, fn in rows]
  base = results[0][1]
  print(f"{jax.devices()[0].platform}, {args.config}, K={args.k}, n={args.n}")
  for name, per_step in results:
    print(f"{name:34s} {1e3 * per_step:8.2f} ms/step  {per_step / base:5.2f}x the scan")


if __name__ == "__main__":
  main()
