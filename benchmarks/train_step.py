"""One full chapter training step (D update + G update), ours vs the PyTorch chapter code.

    python benchmarks/train_step.py [--batch_sizes 16 64 256] [--repeats 5] [--width 64]
        [--k 4] [--skip_options] [--device cpu|gpu] [--torch_compile]

Both sides run in this process on the same device, interleaved (one step of each side per
round): the PyTorch reference is the chapter's own Generator/Discriminator/loop body
(tests/reference/torch_sagan.py; ``--torch_compile`` adds a row with its models
``torch.compile``d), ours the jitted `train_step` (buffers donated), plus two options a user can
turn on from the config: bfloat16 compute (`model.compute_dtype`) and K steps per dispatch
(`steps_per_dispatch`, per-step time shown). Printed per batch size and side: median wall and
process-CPU ms per step, the ratio torch/ours by wall time (> 1: ours faster), images/s, and
for ours the model's FLOPs per step (XLA's cost analysis of the loop-free program) and the
GFLOP/s they imply; before and after, the machine's load (benchmarks/timing.py).
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
from summary import add_row  # noqa: E402  # benchmarks/summary.py
from timing import Conditions, import_torch, interleaved  # noqa: E402  # benchmarks/timing.py
from sagan_jax.models import build_gan  # noqa: E402
from sagan_jax.ops.compiler_options import compiler_options  # noqa: E402
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

  def __init__(self, batch: int, width: int, compute_dtype: str = "float32", k: int = 1,
               xla_defaults: bool = False):
    config: ml_collections.ConfigDict = base_config()
    config.model.width = width
    config.model.compute_dtype = compute_dtype
    step, init_state = chapter_step(config)
    self.k = k
    self.state = jax.jit(init_state)()
    shape = (batch, 64, 64, 1) if k == 1 else (k, batch, 64, 64, 1)
    self.batch = {"image": jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1)}
    fn = step if k == 1 else make_multi_step(step)
    # As the trainer compiles it (`compiler_options`), or with XLA's defaults.
    self.step = jax.jit(fn, donate_argnums=0,
                        compiler_options={} if xla_defaults else compiler_options())
    self.flops = model_flops(config, batch) if k == 1 else None

  def __call__(self):
    self.state, metrics = self.step(self.state, self.batch)
    jax.block_until_ready(metrics)


class Torch:
  """The chapter's PyTorch step (same hyper-parameters, default threads)."""

  def __init__(self, batch: int, width: int, device: str = "cpu", compiled: bool = False):
    import torch

    from tests.reference import torch_sagan

    torch.manual_seed(0)
    self.torch, self.device = torch, device
    G, D = torch_sagan.init_chapter_models(z_dim=20, image_size=width)
    self.G, self.D = G.to(device), D.to(device)
    self.g_opt, self.d_opt = torch_sagan.make_optimizers(self.G, self.D)
    self.images = torch.rand(batch, 1, 64, 64, device=device) * 2 - 1
    self.batch = batch
    # torch.compile of the models (the loop body stays eager: optimizer steps, losses).
    self.models = ((torch.compile(self.G), torch.compile(self.D)) if compiled
                   else (self.G, self.D))
    self.step_fn = torch_sagan.chapter_train_step

  def __call__(self):
    z1 = self.torch.randn(self.batch, 20, 1, 1, device=self.device)
    z2 = self.torch.randn(self.batch, 20, 1, 1, device=self.device)
    self.step_fn(*self.models, self.g_opt, self.d_opt, self.images, z1, z2)
    if self.device == "cuda":
      self.torch.cuda.synchronize()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_sizes", type=int, nargs="+", default=[16, 64, 256])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--width", type=int, default=64)
  parser.add_argument("--k", type=int, default=4, help="steps per dispatch for the scan option")
  parser.add_argument("--skip_options", action="store_true", help="only float32, K=1")
  parser.add_argument("--xla_defaults", action="store_true",
                      help="also time the step compiled with XLA's default options (on CPU: "
                      "convolutions on YNNPACK), side 'ours xla-def'")
  parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
  parser.add_argument("--torch_compile", action="store_true",
                      help="also time the PyTorch step with torch.compile'd models")
  parser.add_argument("--summary", default=None, help="append rows to this table file "
                      "(benchmarks/summary.py)")
  args = parser.parse_args()
  conditions = Conditions()
  jax.config.update("jax_platforms", "cuda" if args.device == "gpu" else "cpu")
  torch_device = "cuda" if args.device == "gpu" else "cpu"
  torch, torch_note = import_torch()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.device_count()} "
        f"device(s)); {torch_note}; {os.cpu_count()} CPUs; width {args.width}; medians of "
        f"{args.repeats} interleaved rounds")
  print(conditions.start_line(), flush=True)
  header = (f"{'batch':>5} | {'side':>14} | {'wall ms':>8} | {'CPU ms':>8} | "
            f"{'torch/ours':>10} | {'img/s':>7} | {'GFLOP/s':>8}")
  print(header)
  print("-" * len(header))
  for batch in args.batch_sizes:
    ours = Ours(batch, args.width)
    sides = {"ours": ours}
    if args.xla_defaults:
      sides["ours xla-def"] = Ours(batch, args.width, xla_defaults=True)
    if not args.skip_options:
      sides["ours bf16"] = Ours(batch, args.width, "bfloat16")
      sides[f"ours scan{args.k}"] = Ours(batch, args.width, k=args.k)
    if torch:
      sides["torch"] = Torch(batch, args.width, torch_device)
      if args.torch_compile:
        sides["torch.compile"] = Torch(batch, args.width, torch_device, compiled=True)
    timings = interleaved(sides, args.repeats)
    gflop = ours.flops / 1e9 if ours.flops else float("nan")
    torch_s = timings["torch"].wall if "torch" in timings else None
    for name, t in timings.items():
      steps = sides[name].k if name.startswith("ours") else 1
      wall, cpu = t.wall / steps, t.cpu / steps  # per training step
      ratio = (f"{torch_s / wall:10.2f}" if torch_s and name.startswith("ours")
               else f"{'-':>10}")
      rate = f"{gflop / wall:8.1f}" if name == "ours" else f"{'-':>8}"
      print(f"{batch:5d} | {name:>14} | {wall * 1e3:8.0f} | {cpu * 1e3:8.0f} | {ratio} | "
            f"{batch / wall:7.1f} | {rate}", flush=True)
    for reference in ("torch", "torch.compile"):
      if args.summary and reference in timings:
        add_row(args.summary, f"chapter step, batch {batch}, vs {reference}",
                ours.k / timings["ours"].wall, 1 / timings[reference].wall, "steps/s", "higher")
    scan = timings.get(f"ours scan{args.k}")
    if args.summary and scan and "torch" in timings:
      add_row(args.summary, f"chapter step, batch {batch}, scan{args.k}, vs torch",
              args.k / scan.wall, 1 / timings["torch"].wall, "steps/s", "higher")
    print(f"{batch:5d} | model FLOPs a step: {gflop:.1f} GFLOP (XLA's cost analysis)")
  print(conditions.end_line())


if __name__ == "__main__":
  main()
