"""One full ResNet SAGAN training step, ours vs the PyTorch reference of StudioGAN's SAGAN.

    python benchmarks/resnet_step.py [--cases 32 128] [--repeats 5] [--conv_table]

Cases (both class-conditional, hinge, one D and one G update, Adam; EMA off):

* ``32``: configs/mnist_cond32.py's model — G width 8 (32 channels), D width 16
  (32 channels), attention at 16×16 in both, 10 classes, 1 channel — at batch 64;
* ``128``: the paper's official widths — gf_dim = df_dim = 64 (G 1024 → 64 channels, D 64 →
  1024), attention at 32×32 in both, 1000 classes, RGB — at batch 8.

Both sides run in this process: ours the jitted ``train_step`` (buffers donated), the
reference ``tests/reference/torch_resnet_sagan.py`` (its ``train_step``, same call order,
timed with 1 thread and with its default, the faster counting: on a loaded machine its OpenMP
threads' spin-waits can make 2 threads several times slower than 1). Printed per case:
median ms per step after warm-up, the ratio torch/ours (> 1: ours faster), and our compile
time (first call minus a step), for our convolutions through the GEMM path
(``conv_implementation='gemm'``) and through XLA's convolution (``'xla'``). ``--conv_table`` also times each distinct convolution of the
case's models forward + backward (both gradients) both ways: the per-layer choice.
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
from timing import import_torch, median_time  # noqa: E402  # benchmarks/timing.py
from sagan_jax.models import build_gan  # noqa: E402
from sagan_jax.ops.convolution import conv2d  # noqa: E402
from sagan_jax.train.config import base_config  # noqa: E402
from sagan_jax.train.optimizers import make_optimizers  # noqa: E402
from sagan_jax.train.state import init_gan_state  # noqa: E402
from sagan_jax.train.step import make_train_step  # noqa: E402

# name -> (resolution, channels, classes, G width, D width, attention, batch)
CASES = {
    "32": (32, 1, 10, 8, 16, 16, 64),
    "128": (128, 3, 1000, 64, 64, 32, 8),
}


def resnet_config(case: str, implementation: str):
  resolution, channels, classes, width, d_width, attention, _ = CASES[case]
  config = base_config()
  config.data.update(image_size=resolution, channels=channels)
  config.model.update(name="resnet", num_classes=classes, z_dim=128, width=width,
                      d_width=d_width, g_attention=(attention,), d_attention=(attention,),
                      weight_init="orthogonal", bn_style="studiogan", cbn_spectral_norm=True,
                      spectral_eps=1e-6, conv_implementation=implementation)
  config.optimizer.update(lr_g=2e-4, lr_d=4e-4, b1=0.0, b2=0.999, eps=1e-6)
  return config


class Ours:
  def __init__(self, case: str, implementation: str):
    config = resnet_config(case, implementation)
    resolution, channels, classes, *_, batch = CASES[case]
    shape = (resolution, resolution, channels)
    generator, discriminator = build_gan(config.model, shape)
    g_tx, d_tx = make_optimizers(config)
    step = make_train_step(generator, discriminator, g_tx, d_tx, get_loss("hinge"), 128,
                           num_classes=classes)
    self.state = jax.jit(lambda: init_gan_state(
        generator, discriminator, seed=0, z_dim=128, image_shape=shape, g_tx=g_tx, d_tx=d_tx,
        conditional=True))()
    key = jax.random.key(1)
    self.batch = {"image": jax.random.uniform(key, (batch, *shape), minval=-1, maxval=1),
                  "label": jax.random.randint(key, (batch,), 0, classes)}
    self.step = jax.jit(step, donate_argnums=0)

  def __call__(self):
    self.state, metrics = self.step(self.state, self.batch)
    jax.block_until_ready(metrics)


class Torch:
  def __init__(self, case: str):
    import torch

    from tests.reference import torch_resnet_sagan as tr

    resolution, channels, classes, width, d_width, attention, batch = CASES[case]
    torch.manual_seed(0)
    g_loc = int(np.log2(attention // 4))  # after G's block k the features are 4·2^k
    d_loc = 1 if attention == resolution // 2 else int(np.log2(resolution // attention))
    self.torch, self.tr = torch, tr
    self.G = tr.Generator(resolution, 128, width, classes, (g_loc,), channels)
    self.D = tr.Discriminator(resolution, d_width, classes, (d_loc,), channels)
    self.g_opt, self.d_opt = tr.make_optimizers(self.G, self.D)
    self.images = torch.rand(batch, channels, resolution, resolution) * 2 - 1
    self.labels = torch.randint(0, classes, (batch,))
    self.batch, self.classes = batch, classes

  def __call__(self):
    t, b = self.torch, self.batch
    reals = [(self.images, self.labels, t.randn(b, 128), t.randint(0, self.classes, (b,)))]
    self.tr.train_step(self.G, self.D, self.g_opt, self.d_opt, reals, t.randn(b, 128),
                       t.randint(0, self.classes, (b,)))


def conv_shapes(case: str) -> list[tuple[str, tuple[int, int, int, int], int, int]]:
  """The distinct 3×3 / 1×1 stride-1 convolutions of a case's G and D:
  ``(where, input NHWC shape, kernel size, output channels)``."""
  resolution, channels, _, width, d_width, _, batch = CASES[case]
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
      fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
      row[implementation], _ = median_time(lambda: jax.block_until_ready(fn(x, w)), repeats)
    faster = min(row, key=row.get)
    print(f"{name:<34} {row['gemm'] * 1e3:8.1f} {row['xla'] * 1e3:8.1f}  {faster}", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--implementations", nargs="+", default=["gemm", "xla"])
  parser.add_argument("--conv_table", action="store_true")
  args = parser.parse_args()
  torch, torch_note = import_torch()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {torch_note}; "
        f"{os.cpu_count()} CPUs; median of {args.repeats}")
  print(f"{'case':>4} | {'batch':>5} | {'convs':>5} | {'torch ms':>9} | {'ours ms':>9} | "
        f"{'torch/ours':>10} | {'compile s':>9}")
  for case in args.cases:
    batch = CASES[case][-1]
    torch_s = None
    if torch:
      default_threads = torch.get_num_threads()
      times = {}
      for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        times[threads] = median_time(Torch(case), args.repeats)[0]
      torch.set_num_threads(default_threads)
      print("torch ms by threads: " + ", ".join(f"{k}: {v * 1e3:.0f}" for k, v in times.items()))
      torch_s = min(times.values())
    for implementation in args.implementations:
      ours_s, first = median_time(Ours(case, implementation), args.repeats)
      ratio = f"{torch_s / ours_s:10.2f}" if torch_s else f"{'-':>10}"
      torch_ms = f"{torch_s * 1e3:9.0f}" if torch_s else f"{'-':>9}"
      print(f"{case:>4} | {batch:5d} | {implementation:>5} | {torch_ms} | {ours_s * 1e3:9.0f} | "
            f"{ratio} | {first - ours_s:9.1f}", flush=True)
    if args.conv_table:
      conv_table(case, args.repeats)


if __name__ == "__main__":
  main()
