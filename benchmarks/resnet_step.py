"""One full ResNet SAGAN training step, ours vs the PyTorch reference of StudioGAN's SAGAN.

    python benchmarks/resnet_step.py [--cases 32 cifar10 128] [--repeats 5] [--device cpu|gpu]
        [--implementations auto gemm xla] [--compute_dtype float32|bfloat16] [--batch N]
        [--conv_table]

Cases (all class-conditional, hinge, Adam; EMA off):

* ``32``: configs/mnist_cond32.py's model — G width 8 (32 channels), D width 16
  (32 channels), attention at 16×16 in both, 10 classes, 1 channel — at batch 64, 1 D + 1 G;
* ``cifar10``: configs/cifar10.py's model and recipe — widths 64, attention at 16×16, RGB —
  at batch 64, 5 D updates (5 real batches) + 1 G update a step, as StudioGAN's;
* ``128``: the paper's official widths — gf_dim = df_dim = 64 (G 1024 → 64 channels, D 64 →
  1024), attention at 32×32 in both, 1000 classes, RGB — at batch 8 (``--batch 256`` on a
  GPU: the paper's), 1 D + 1 G.

Both sides run in this process, interleaved (one step of each side per round): ours the jitted
``train_step`` (buffers donated) once per ``--implementations`` (``auto`` is the default
``conv_implementation``), the reference ``tests/reference/torch_resnet_sagan.py`` (its
``train_step``, same call order) — on CPU timed with 1 thread and with its default, the faster
counting (on a loaded machine its OpenMP threads' spin-waits can make 2 threads several times
slower than 1). Printed per side: median wall and process-CPU ms per step, the ratio
torch/ours by wall time (> 1: ours faster), our compile time (first call minus a step) and, on a
GPU, the peak device memory; before and after, the machine's load (benchmarks/timing.py).
``--conv_table`` also times each distinct convolution of the case's models forward + backward
(both gradients) both ways: the per-layer choice.
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
import numpy as np  # noqa: E402

from sagan_jax.losses import get_loss  # noqa: E402
from summary import add_row  # noqa: E402  # benchmarks/summary.py
from timing import Conditions, import_torch, interleaved, median_time  # noqa: E402
from sagan_jax.models import build_gan  # noqa: E402
from sagan_jax.ops.compiler_options import compiler_options  # noqa: E402
from sagan_jax.ops.convolution import conv2d  # noqa: E402
from sagan_jax.train.config import base_config  # noqa: E402
from sagan_jax.train.optimizers import make_optimizers  # noqa: E402
from sagan_jax.train.state import init_gan_state  # noqa: E402
from sagan_jax.train.step import make_train_step  # noqa: E402

# name -> (resolution, channels, classes, G width, D width, attention, batch, D steps a step)
CASES = {
    "32": (32, 1, 10, 8, 16, 16, 64, 1),
    "cifar10": (32, 3, 10, 64, 64, 16, 64, 5),
    "128": (128, 3, 1000, 64, 64, 32, 8, 1),
}


def resnet_config(case: str, implementation: str, compute_dtype: str = "float32"):
  resolution, channels, classes, width, d_width, attention, _, d_steps = CASES[case]
  config = base_config()
  config.data.update(image_size=resolution, channels=channels)
  config.model.update(name="resnet", num_classes=classes, z_dim=128, width=width,
                      d_width=d_width, g_attention=(attention,), d_attention=(attention,),
                      weight_init="orthogonal", bn_style="studiogan", cbn_spectral_norm=True,
                      spectral_eps=1e-6, conv_implementation=implementation,
                      compute_dtype=compute_dtype)
  config.optimizer.update(lr_g=2e-4, lr_d=4e-4, b1=0.0, b2=0.999, eps=1e-6, d_steps=d_steps)
  return config


class Ours:
  def __init__(self, case: str, implementation: str, compute_dtype: str, batch: int,
               xla_defaults: bool = False):
    config = resnet_config(case, implementation, compute_dtype)
    # The library's programs compile with `compiler_options` (on CPU: convolutions on Eigen);
    # ``xla_defaults`` times the same step with XLA's own defaults instead.
    options = {} if xla_defaults else compiler_options()
    resolution, channels, classes, *_, d_steps = CASES[case]
    shape = (resolution, resolution, channels)
    generator, discriminator = build_gan(config.model, shape)
    g_tx, d_tx = make_optimizers(config)
    step = make_train_step(generator, discriminator, g_tx, d_tx, get_loss("hinge"), 128,
                           num_classes=classes, d_steps=d_steps)
    self.state = jax.jit(lambda: init_gan_state(
        generator, discriminator, seed=0, z_dim=128, image_shape=shape, g_tx=g_tx, d_tx=d_tx,
        conditional=True))()
    key = jax.random.key(1)
    lead = (batch,) if d_steps == 1 else (d_steps, batch)
    self.batch = {"image": jax.random.uniform(key, (*lead, *shape), minval=-1, maxval=1),
                  "label": jax.random.randint(key, lead, 0, classes)}
    self.step = jax.jit(step, donate_argnums=0, compiler_options=options)

  def __call__(self):
    self.state, metrics = self.step(self.state, self.batch)
    jax.block_until_ready(metrics)

  @staticmethod
  def peak_mb():
    """The device's peak memory in MB where the backend reports it (GPUs), else None."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2**20 if peak else None


class Torch:
  def __init__(self, case: str, device: str, batch: int):
    import torch

    from tests.reference import torch_resnet_sagan as tr

    resolution, channels, classes, width, d_width, attention, _, d_steps = CASES[case]
    torch.manual_seed(0)
    g_loc = int(np.log2(attention // 4))  # after G's block k the features are 4·2^k
    d_loc = 1 if attention == resolution // 2 else int(np.log2(resolution // attention))
    self.torch, self.tr, self.device = torch, tr, device
    self.G = tr.Generator(resolution, 128, width, classes, (g_loc,), channels).to(device)
    self.D = tr.Discriminator(resolution, d_width, classes, (d_loc,), channels).to(device)
    self.g_opt, self.d_opt = tr.make_optimizers(self.G, self.D)
    self.images = [torch.rand(batch, channels, resolution, resolution, device=device) * 2 - 1
                   for _ in range(d_steps)]
    self.labels = torch.randint(0, classes, (batch,), device=device)
    self.batch, self.classes = batch, classes

  def __call__(self):
    t, b, dev = self.torch, self.batch, self.device
    reals = [(x, self.labels, t.randn(b, 128, device=dev),
              t.randint(0, self.classes, (b,), device=dev)) for x in self.images]
    self.tr.train_step(self.G, self.D, self.g_opt, self.d_opt, reals, t.randn(b, 128, device=dev),
                       t.randint(0, self.classes, (b,), device=dev))
    if dev == "cuda":
      t.cuda.synchronize()


def conv_shapes(case: str) -> list[tuple[str, tuple[int, int, int, int], int, int]]:
  """The distinct 3×3 / 1×1 stride-1 convolutions of a case's G and D:
  ``(where, input NHWC shape, kernel size, output channels)``."""
  resolution, channels, _, width, d_width, _, batch, _ = CASES[case]
  from sagan_jax.models.resnet import GENERATOR_CHANNELS, discriminator_stages, generator_stages

  shapes = {}
  c_in = GENERATOR_CHANNELS[resolution][0] * width
  for stage in generator_stages(resolution, ()):
    c_out, s = stage.multiple * width, stage.size
    shapes[f"G {s}² {c_in}→{c_out} 3×3 (conv1)"] = ((batch, s, s, c_in), 3, c_out)
    shapes[f"G {s}² {c_out}→{c_out} 3×3 (conv2)"] = ((batch, s, s, c_out), 3, c_out)
    c_in = c_out
  shapes[f"G {resolution}² {c_in}→{channels} 3×3 (out)"] = ((batch, resolution, resolution,
                                                              c_in), 3, channels)
  c_in, size = channels, resolution
  for stage in discriminator_stages(resolution, ()):
    c_out = stage.multiple * d_width
    shapes[f"D {size}² {c_in}→{c_out} 3×3 (conv1)"] = ((batch, size, size, c_in), 3, c_out)
    shapes[f"D {size}² {c_out}→{c_out} 3×3 (conv2)"] = ((batch, size, size, c_out), 3, c_out)
    c_in, size = c_out, stage.size
  return [(name, shape, k, c) for name, (shape, k, c) in shapes.items()]


def conv_table(case: str, repeats: int) -> None:
  print(f"\nconvolutions of case {case}, fwd + both gradients, ms (median of {repeats}):")
  print(f"{'layer':<34} {'gemm':>8} {'xla':>8}  faster")
  for name, shape, k, c_out in conv_shapes(case):
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (k, k, shape[-1], c_out)) * 0.05
    row = {}
    for implementation in ("gemm", "xla"):
      loss = lambda x, w: jnp.sum(conv2d(x, w, padding=k // 2,  # noqa: E731
                                         implementation=implementation) ** 2)
      fn = jax.jit(jax.grad(loss, argnums=(0, 1)), compiler_options=compiler_options())
      row[implementation] = median_time(lambda: jax.block_until_ready(fn(x, w)), repeats).wall
    faster = min(row, key=row.get)
    print(f"{name:<34} {row['gemm'] * 1e3:8.1f} {row['xla'] * 1e3:8.1f}  {faster}", flush=True)


def _torch_sides(torch, case: str, device: str, batch: int, threads=None) -> dict:
  """The PyTorch step, on CPU once with 1 thread and once with its default (the faster
  counts), on a GPU once."""
  if device == "gpu":
    return {"torch": Torch(case, "cuda", batch)}
  default_threads = torch.get_num_threads()
  model = Torch(case, "cpu", batch)

  def with_threads(threads):
    def run():
      torch.set_num_threads(threads)
      try:
        model()
      finally:
        torch.set_num_threads(default_threads)
    return run

  counts = sorted(set(threads or (1, default_threads)))
  return {f"torch {t}t": with_threads(t) for t in counts}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--implementations", nargs="+", default=["auto", "gemm", "xla"],
                      choices=["auto", "gemm", "xla"])
  parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
  parser.add_argument("--compute_dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--batch", type=int, default=None, help="override the case's batch")
  parser.add_argument("--conv_table", action="store_true")
  parser.add_argument("--xla_defaults", action="store_true",
                      help="also time each implementation compiled with XLA's default options "
                      "(on CPU: convolutions on YNNPACK), side 'ours <impl> xla-defaults'")
  parser.add_argument("--torch_threads", type=int, nargs="+", default=None,
                      help="CPU thread counts to time torch with (default: 1 and its own)")
  parser.add_argument("--summary", default=None, help="append rows to this table file "
                      "(benchmarks/summary.py)")
  args = parser.parse_args()
  conditions = Conditions()
  jax.config.update("jax_platforms", "cuda" if args.device == "gpu" else "cpu")
  torch, torch_note = import_torch()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {torch_note}; "
        f"{os.cpu_count()} CPUs; {args.compute_dtype}; medians of {args.repeats} interleaved "
        f"rounds")
  print(conditions.start_line(), flush=True)
  print(f"{'case':>4} | {'batch':>5} | {'side':>24} | {'wall ms':>8} | {'CPU ms':>8} | "
        f"{'torch/ours':>10} | {'compile s':>9} | {'peak MB':>8}")
  for case in args.cases:
    batch = args.batch or CASES[case][6]
    sides = {f"ours {impl}": Ours(case, impl, args.compute_dtype, batch)
             for impl in args.implementations}
    if args.xla_defaults:
      sides.update({f"ours {impl} xla-defaults": Ours(case, impl, args.compute_dtype, batch, True)
                    for impl in args.implementations})
    if torch:
      sides.update(_torch_sides(torch, case, args.device, batch, args.torch_threads))
    timings = interleaved(sides, args.repeats)
    torch_s = min((t.wall for n, t in timings.items() if n.startswith("torch")), default=None)
    for name, t in timings.items():
      ours = name.startswith("ours")
      ratio = f"{torch_s / t.wall:10.2f}" if torch_s and ours else f"{'-':>10}"
      compile_s = f"{t.first - t.wall:9.1f}" if ours else f"{'-':>9}"
      peak = sides[name].peak_mb() if ours else None
      peak = f"{peak:8.0f}" if peak else f"{'-':>8}"
      print(f"{case:>4} | {batch:5d} | {name:>24} | {t.wall * 1e3:8.0f} | {t.cpu * 1e3:8.0f} | "
            f"{ratio} | {compile_s} | {peak}", flush=True)
      if args.summary and ours:
        add_row(args.summary, f"ResNet {case} step, {args.compute_dtype}, {name}", t.wall * 1e3,
                torch_s * 1e3 if torch_s else None, "ms", "lower",
                f"batch {batch}; torch fp32 eager"
                + (f"; peak {peak.strip()} MB" if peak.strip() != "-" else ""))
    del sides
    if args.conv_table:
      conv_table(case, args.repeats)
  print(conditions.end_line())


if __name__ == "__main__":
  main()
