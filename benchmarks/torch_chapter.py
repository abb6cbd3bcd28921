"""The chapter's whole recipe in PyTorch eager: wall clock, and a reference run to score.

    python benchmarks/torch_chapter.py [--epochs 300] [--device cuda]
    python benchmarks/torch_chapter.py --device cpu --save_dir runs/torch_mnist78 --save_every 300

Same data as ours (the packaged 200 sevens + 200 eights at 64×64), the chapter's
DataLoader (batch 64, shuffle, last partial batch kept: 7 steps per epoch, 2,100 in
all), models, init and loop body (tests/reference/torch_sagan.py). Prints the wall time
of the training loop (models built, data in device memory).

With ``--save_dir`` it also writes the generator's ``state_dict`` every ``--save_every``
steps and at the end (``generator_<step>.pt``, atomically), which
``python evaluate.py --torch_generator <file>`` scores with the same metrics as our runs.
Saving is outside the timed loop's steps but inside its wall time (a few ms each).
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from sagan_jax.atomic_file import atomic_write  # noqa: E402
from sagan_jax.data import make_source  # noqa: E402
from sagan_jax.train.config import base_config  # noqa: E402
from tests.reference import torch_sagan  # noqa: E402
from timing import Conditions  # noqa: E402  # benchmarks/timing.py


def save_generator(G: torch.nn.Module, save_dir: str, step: int) -> str:
  buffer = io.BytesIO()
  torch.save({k: v.detach().cpu() for k, v in G.state_dict().items()}, buffer)
  return atomic_write(os.path.join(save_dir, f"generator_{step:06d}.pt"), buffer.getvalue())


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=300)
  parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--save_dir", default=None, help="write generator_<step>.pt here")
  parser.add_argument("--save_every", type=int, default=300)
  parser.add_argument("--log_every", type=int, default=0, help="print losses every N steps")
  args = parser.parse_args()
  if args.save_every < 1 or args.epochs < 1:
    parser.error("--epochs and --save_every must be >= 1")
  conditions = Conditions()
  print(conditions.start_line(), flush=True)
  device = torch.device(args.device)
  source = make_source(base_config().data)
  images = torch.from_numpy(source.get(list(range(len(source))))).permute(0, 3, 1, 2)
  images = ((images.float() / 255.0) - 0.5) / 0.5  # ToTensor + Normalize(0.5, 0.5)
  torch.manual_seed(args.seed)
  loader = torch.utils.data.DataLoader(
      torch.utils.data.TensorDataset(images.to(device)), batch_size=64, shuffle=True)
  G, D = torch_sagan.init_chapter_models()
  G, D = G.to(device).train(), D.to(device).train()
  g_opt, d_opt = torch_sagan.make_optimizers(G, D)
  steps = 0
  if device.type == "cuda":
    torch.cuda.synchronize()
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(args.epochs):
    for (batch,) in loader:
      z1 = torch.randn(batch.shape[0], 20, 1, 1, device=device)
      z2 = torch.randn(batch.shape[0], 20, 1, 1, device=device)
      out = torch_sagan.chapter_train_step(G, D, g_opt, d_opt, batch, z1, z2)
      steps += 1
      if args.log_every and steps % args.log_every == 0:
        elapsed = time.perf_counter() - start
        print(f"step {steps} | d_loss {float(out['d_loss']):.3f} | g_loss "
              f"{float(out['g_loss']):.3f} | {elapsed / steps:.2f} s/step", flush=True)
      if args.save_dir and steps % args.save_every == 0:
        print(f"saved {save_generator(G, args.save_dir, steps)}", flush=True)
  if device.type == "cuda":
    torch.cuda.synchronize()
  wall = time.perf_counter() - start
  if args.save_dir and steps % args.save_every:
    print(f"saved {save_generator(G, args.save_dir, steps)}", flush=True)
  print(f"torch eager ({device}): {steps} steps in {wall:.1f} s ({steps / wall:.1f} steps/s); "
        f"final d_loss {float(out['d_loss']):.3f} g_loss {float(out['g_loss']):.3f}; "
        f"{time.process_time() - cpu_start:.1f} s process CPU")
  print(conditions.end_line())


if __name__ == "__main__":
  main()
