"""FID Inception feature extraction: images/s of sagan-jax vs pytorch-fid 0.3.0, in one run.

Both sides run the FID Inception with the same random weights (the real file's keys and
shapes, `tests/reference/inception_reference.py`: speed does not depend on the weights'
values, so the 91 MiB file is not needed) on the same batches of ``--batch_size`` images of
``--image_size`` pixels, resized to 299×299 inside the network:

* sagan-jax: ``FIDInception.__call__`` on uint8 NumPy batches (as image files arrive),
  once per convolution op in ``--implementations`` (``xla``: ``lax.conv_general_dilated``;
  ``gemm``: sagan-jax's im2col GEMM path, `sagan_jax.ops.convolution`). A call includes the
  host→device copy, the sharding over the devices, resize, network, softmax and the copy
  back: what ``extract`` pays per batch. ``--xla_defaults`` adds a side per implementation
  compiled with XLA's default options instead of `sagan_jax.ops.compiler_options`' (on CPU:
  convolutions on YNNPACK instead of Eigen).
* pytorch-fid: ``InceptionV3([3])`` under ``torch.no_grad()`` on the same images as a
  (B, 3, H, W) float tensor in [0, 1] (what its ``ToTensor`` makes), moved to the device and
  back as its ``get_activations`` does (image decoding, on both sides, is not timed).

Rounds are interleaved (one batch of each side per round) after one warm-up call each;
the medians of wall time (images/s) and of this process's CPU time per batch (less
sensitive to other processes on a shared machine) are printed, with the ratio ours /
pytorch-fid. Compile time: tracing and XLA compilation of the batch's shape, timed ahead of
time (``lower().compile()``) — paid once per image size and process.

Usage:
  python benchmarks/inception.py [--batch_size 50] [--image_size 32] [--repeats 5]
      [--implementations xla gemm] [--device cpu|gpu] [--xla_defaults]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sagan_jax import sharding  # noqa: E402  pylint: disable=g-import-not-at-top
from sagan_jax.eval import FIDInception  # noqa: E402  pylint: disable=g-import-not-at-top
from sagan_jax.eval import inception as inception_lib  # noqa: E402
from tests.reference.inception_reference import images, random_state_dict  # noqa: E402
from tests.reference.pytorch_fid_reference import pytorch_fid_models  # noqa: E402  (torch lazily)
from summary import add_row  # noqa: E402  # benchmarks/summary.py
from timing import Conditions  # noqa: E402  # benchmarks/timing.py


def _torch_side(state_dict, device: str):
  """A callable running pytorch-fid on a uint8 NHWC batch, or None (with why) if unavailable."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    wrapper, _ = pytorch_fid_models(state_dict)
  except ImportError as error:
    return None, f"pytorch-fid not importable ({error})"
  torch_device = "cuda" if device == "gpu" else "cpu"
  if torch_device == "cuda" and not torch.cuda.is_available():
    return None, "this torch has no CUDA"
  wrapper = wrapper.to(torch_device)

  def run(batch: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255)
    with torch.no_grad():
      pool3 = wrapper(x.to(torch_device))[0]
    return pool3.squeeze(3).squeeze(2).cpu().numpy()

  return run, f"{torch.get_num_threads()} threads"


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch_size", type=int, default=50)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--implementations", nargs="+", default=["xla", "gemm"],
                      choices=["xla", "gemm", "auto"])
  parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
  parser.add_argument("--no_torch", action="store_true", help="time sagan-jax only")
  parser.add_argument("--xla_defaults", action="store_true",
                      help="also time each implementation compiled with XLA's default options "
                      "(on CPU: convolutions on YNNPACK), as '<impl> xla-defaults'")
  parser.add_argument("--summary", default=None, help="append rows to this table file "
                      "(benchmarks/summary.py)")
  args = parser.parse_args()

  conditions = Conditions()
  print(conditions.start_line(), flush=True)
  devices = jax.devices(args.device)
  state_dict = random_state_dict(0)
  batch = images(1, args.batch_size, args.image_size)
  ours = {}
  forwards = {"": inception_lib._compiled_forward(devices[0].platform)}  # the library's
  if args.xla_defaults:
    forwards[" xla-defaults"] = jax.jit(inception_lib._forward,
                                        static_argnames=("implementation", "groups"))
  for impl in args.implementations:
    extractor = FIDInception(state_dict=state_dict, devices=devices, implementation=impl)
    padded = np.zeros((sharding.padded_size(len(batch), extractor.mesh),) + batch.shape[1:],
                      batch.dtype)
    groups = extractor.groups(len(padded))
    for suffix, forward in forwards.items():
      placed = jax.device_put(padded, sharding.batch_sharded(extractor.mesh))
      lowered = forward.lower(extractor.params, placed, impl, groups)
      start = time.perf_counter()
      lowered.compile()
      compile_s = time.perf_counter() - start

      def through(batch, extractor=extractor, forward=forward, impl=impl, on=placed.sharding):
        # What FIDInception.__call__ does with a full uint8 batch, through this `forward`.
        out = forward(extractor.params, jax.device_put(batch, on), impl, groups)
        return {k: np.asarray(v) for k, v in out.items()}

      run = through if suffix else extractor  # the library's side: FIDInception.__call__

      run(padded)  # warm-up: the jitted call compiles too
      ours[impl + suffix] = (run, compile_s)
  torch_run, torch_note = (None, "skipped") if args.no_torch else _torch_side(state_dict,
                                                                            args.device)
  if torch_run is not None:
    torch_run(batch)  # warm-up (oneDNN/cuDNN algorithm choice)

  times: dict[str, list[tuple[float, float]]] = {name: [] for name in [*ours, "pytorch-fid"]}

  def timed(name, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn(batch)
    times[name].append((time.perf_counter() - wall, time.process_time() - cpu))

  for _ in range(args.repeats):
    for name, (run, _) in ours.items():
      timed(name, run)
    if torch_run is not None:
      timed("pytorch-fid", torch_run)

  cores = os.cpu_count()
  print(f"FID Inception, batch {args.batch_size} of {args.image_size}x{args.image_size} → "
        f"299x299, {args.device} ({devices[0].device_kind}, {len(devices)} device(s), "
        f"{cores} cores), median of {args.repeats} interleaved rounds:")
  rates, cpu_times = {}, {}
  for name, values in times.items():
    if not values:
      print(f"  {name:<28} {torch_note}")
      continue
    wall = statistics.median(v[0] for v in values)
    cpu_times[name] = statistics.median(v[1] for v in values)
    rates[name] = args.batch_size / wall
    extra = (f", compile {ours[name][1]:.1f} s" if name in ours else f" ({torch_note})")
    print(f"  {'sagan-jax ' + name if name in ours else name:<28} {rates[name]:7.1f} images/s "
          f"({wall:.2f} s a batch, {cpu_times[name]:.2f} s CPU){extra}")
  if "pytorch-fid" in rates:
    for impl in ours:
      if args.summary:
        add_row(args.summary, f"FID Inception {args.device}, {impl}, batch {args.batch_size}",
                rates[impl], rates["pytorch-fid"], "images/s", "higher",
                f"50,000 images: {50_000 / rates[impl]:.0f} s ours, "
                f"{50_000 / rates['pytorch-fid']:.0f} s pytorch-fid")
      print(f"  ratio sagan-jax {impl} / pytorch-fid: {rates[impl] / rates['pytorch-fid']:.2f}x "
            f"images/s, {cpu_times['pytorch-fid'] / cpu_times[impl]:.2f}x by CPU time")
  print(conditions.end_line())
  return 0


if __name__ == "__main__":
  sys.exit(main())
