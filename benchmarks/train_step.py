"""One full chapter training step (D update + G update), ours vs the PyTorch chapter code.

    python benchmarks/train_step.py [--batch_sizes 16 64 256] [--repeats 5] [--width 64]

Both sides run in this process on the same machine: the PyTorch reference is the chapter's
own Generator/Discriminator/loop body (tests/reference/torch_sagan.py), ours the jitted
`train_step` (buffers donated). Each timing is the median of `--repeats` steps after warm-up.
Printed per batch size: ms/step, images/s, the ratio torch/ours (> 1: ours faster), the
model's FLOPs per step (XLA's cost analysis of the loop-free program) and the GFLOP/s they imply, and two options a user
can turn on from the config: bfloat16 compute (`model.compute_dtype`) and K steps per
dispatch (`steps_per_dispatch`, per-step time shown).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

from sagan_jax.losses import get_loss  # noqa: E402
from timing import import_torch, median_time  # noqa: E402  # benchmarks/timing.py
from sagan_jax.models import build_gan  # noqa: E402
from sagan_jax.train.config import base_config  # noqa: E402
from sagan_jax.train.optimizers import make_optimizers  # noqa: E402
from sagan_jax.train.state import init_gan_state  # noqa: E402
from sagan_jax.train.step import make_multi_step, make_train_step  # noqa: E402


def chapter_step(config: ml_collections.ConfigDict):
  """(train_step, init_state): the chapter's step and a state initializer for ``config``."""
  generator, discriminator = build_gan(config.model, (64, 64, 1))
  g_tx, d_tx = make_optimizers(config)
  step = make_train_step(generator, discriminator, g_tx, d_tx, get_loss("hinge"), 20)
  init_state = lambda: init_gan_state(  # noqa: E731
      generator, discriminator, seed=0, z_dim=20, image_shape=(64, 64, 1), g_tx=g_tx,
      d_tx=d_tx)
  return step, init_state


def model_flops(config: ml_collections.ConfigDict, batch: int) -> float:
  """FLOPs of one step as XLA's cost analysis counts them for the loop-free program.

  The step that runs has loops (batch-sliced conv GEMMs, attention blocks), and
  cost analysis counts a loop body once; the same step with plain XLA
  convolutions and materialized attention has none, so its count is the
  model's FLOPs (without the attention backward's recomputation).
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.conv_implementation = "xla"
  config.model.attention_chunk_size = None
  step, init_state = chapter_step(config)
  images = {"image": jax.ShapeDtypeStruct((batch, 64, 64, 1), jnp.float32)}
  cost = jax.jit(step).lower(jax.eval_shape(init_state), images).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)) if cost else float("nan")


class Ours:
  """The jitted step for one batch size and option set."""

  def __init__(self, batch: int, width: int, compute_dtype: str = "float32", k: int = 1):
    config: ml_collections.ConfigDict = base_config()
    config.model.width = width
    config.model.compute_dtype = compute_dtype
    step, init_state = chapter_step(config)
    self.k = k
    self.state = jax.jit(init_state)()
    shape = (batch, 64, 64, 1) if k == 1 else (k, batch, 64, 64, 1)
    self.batch = {"image": jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1)}
    fn = step if k == 1 else make_multi_step(step)
    self.step = jax.jit(fn, donate_argnums=0)
    self.flops = model_flops(config, batch) if k == 1 else None

  def __call__(self):
    self.state, metrics = self.step(self.state, self.batch)
    jax.block_until_ready(metrics)


class Torch:
  """The chapter's PyTorch step (same hyper-parameters, CPU, default threads)."""

  def __init__(self, batch: int, width: int):
    import torch

    from tests.reference import torch_sagan

    torch.manual_seed(0)
    self.torch = torch
    self.G, self.D = torch_sagan.init_chapter_models(z_dim=20, image_size=width)
    self.g_opt, self.d_opt = torch_sagan.make_optimizers(self.G, self.D)
    self.images = torch.rand(batch, 1, 64, 64) * 2 - 1
    self.batch = batch
    self.step_fn = torch_sagan.chapter_train_step

  def __call__(self):
    z1 = self.torch.randn(self.batch, 20, 1, 1)
    z2 = self.torch.randn(self.batch, 20, 1, 1)
    self.step_fn(self.G, self.D, self.g_opt, self.d_opt, self.images, z1, z2)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_sizes", type=int, nargs="+", default=[16, 64, 256])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--width", type=int, default=64)
  parser.add_argument("--k", type=int, default=4, help="steps per dispatch for the scan option")
  parser.add_argument("--skip_options", action="store_true", help="only float32, K=1")
  args = parser.parse_args()

  torch, torch_note = import_torch()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)); "
        f"{torch_note}; {os.cpu_count()} CPUs; width {args.width}; median of {args.repeats}")
  header = (f"{'batch':>5} | {'torch ms':>9} | {'ours ms':>9} | {'torch/ours':>10} | "
            f"{'ours img/s':>10} | {'GFLOP/step':>10} | {'GFLOP/s':>8} | "
            f"{'bf16 ms':>8} | {f'scan{args.k} ms/step':>15}")
  print(header)
  print("-" * len(header))
  for batch in args.batch_sizes:
    ours = Ours(batch, args.width)
    ours_s = median_time(ours, args.repeats)[0]
    torch_s = median_time(Torch(batch, args.width), args.repeats)[0] if torch else None
    bf16_s = scan_s = None
    if not args.skip_options:
      bf16_s = median_time(Ours(batch, args.width, "bfloat16"), args.repeats)[0]
      scan = Ours(batch, args.width, k=args.k)
      scan_s = median_time(scan, max(1, args.repeats // 2))[0] / args.k
    gflop = ours.flops / 1e9 if ours.flops else float("nan")
    fmt = lambda s: f"{s * 1e3:9.0f}" if s is not None else f"{'-':>9}"  # noqa: E731
    ratio = f"{torch_s / ours_s:10.2f}" if torch_s else f"{'-':>10}"
    print(f"{batch:5d} | {fmt(torch_s)} | {fmt(ours_s)} | {ratio} | {batch / ours_s:10.1f} | "
          f"{gflop:10.1f} | {gflop / ours_s:8.1f} | "
          f"{(f'{bf16_s * 1e3:8.0f}' if bf16_s else f'{chr(45):>8}')} | "
          f"{(f'{scan_s * 1e3:15.0f}' if scan_s else f'{chr(45):>15}')}", flush=True)


if __name__ == "__main__":
  main()
