"""The chapter's whole recipe in PyTorch eager, for wall-clock comparison.

    python benchmarks/torch_chapter.py [--epochs 300] [--device cuda]

Same data as ours (the packaged 200 sevens + 200 eights at 64×64), the chapter's
DataLoader (batch 64, shuffle, last partial batch kept: 7 steps per epoch, 2,100 in
all), models, init and loop body (tests/reference/torch_sagan.py). Prints the wall time
of the training loop (models built, data in device memory; no checkpoints or samples).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from sagan_jax.data import mnist_digits  # noqa: E402
from tests.reference import torch_sagan  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=300)
  parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
  args = parser.parse_args()
  device = torch.device(args.device)
  source = mnist_digits()
  images = torch.from_numpy(source.get(list(range(len(source))))).permute(0, 3, 1, 2)
  images = ((images.float() / 255.0) - 0.5) / 0.5  # ToTensor + Normalize(0.5, 0.5)
  loader = torch.utils.data.DataLoader(
      torch.utils.data.TensorDataset(images.to(device)), batch_size=64, shuffle=True)
  torch.manual_seed(0)
  G, D = torch_sagan.init_chapter_models()
  G, D = G.to(device).train(), D.to(device).train()
  g_opt, d_opt = torch_sagan.make_optimizers(G, D)
  steps = 0
  if device.type == "cuda":
    torch.cuda.synchronize()
  start = time.perf_counter()
  for _ in range(args.epochs):
    for (batch,) in loader:
      z1 = torch.randn(batch.shape[0], 20, 1, 1, device=device)
      z2 = torch.randn(batch.shape[0], 20, 1, 1, device=device)
      out = torch_sagan.chapter_train_step(G, D, g_opt, d_opt, batch, z1, z2)
      steps += 1
  if device.type == "cuda":
    torch.cuda.synchronize()
  wall = time.perf_counter() - start
  print(f"torch eager ({device}): {steps} steps in {wall:.1f} s ({steps / wall:.1f} steps/s); "
        f"final d_loss {float(out['d_loss']):.3f} g_loss {float(out['g_loss']):.3f}")


if __name__ == "__main__":
  main()
