"""Does the input pipeline keep up with the GPU step? Images/s of each data source.

    python benchmarks/input_pipeline.py [--repeats 5] [--steps 4] [--smoke] [--summary FILE]

Issue 19, item 4. On one H200 the CIFAR-10 recipe step (5 D updates on batches of 64 + 1 G
update) eats 320 images per ~28 ms, ~11,000 images/s; the paper's 128 px model at batch 256,
~4,700 images/s. Each source is read the way the trainer reads it: ``Trainer.host_batch``'s
work (the `Batcher`'s batch, uint8 → float32 in [-1, 1]; with d_steps > 1, d_steps batches
stacked) called on the `Prefetcher`'s background thread, drained by this thread as fast as it
can. Sources, at both shapes (32 px RGB, 64 × 5 a step; 128 px RGB, 256 a step):

* ``memory``: an `ArraySource` (what ``mnist``/``tfds`` hold), random uint8 arrays;
* ``tfds_stream, N threads``: `TfdsStreamSource` over a JPEG ArrayRecord split this script
  writes into a temporary folder (a TFDS builder whose examples are JPEG bytes made with PIL:
  no TensorFlow), with 1 decoding thread, this machine's core count, and the default (16);
* ``image_folder``: `ImageFolderSource` over PNG files (32 px, as CIFAR's) or JPEG files
  (128 px), decoded one by one on the prefetch thread.

Stored images are already at the training size (a smooth random field plus noise, so they
compress like photographs, not like white noise); a dataset stored larger (ImageNet's ~500 px
JPEGs) also pays the bicubic resize and is slower than the 128 px rows here.

Printed: images/s (median over ``--repeats`` runs of ``--steps`` steps through a fresh
`Prefetcher`), the process CPU seconds a step, and the ratio against the rate the GPU step
needs (≥ 1: the source keeps up); before and after, the machine's load (benchmarks/timing.py).
On a machine with fewer cores than the GPU machine's 16, the decoding rows are a floor.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import sys
import tempfile
from typing import Any, Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from sagan_jax import data  # noqa: E402
from sagan_jax.data.image_folder import ImageFolderSource  # noqa: E402
from sagan_jax.data.source import ArraySource  # noqa: E402
from sagan_jax.data.tfds_source import quiet_tfds  # noqa: E402
from summary import add_row  # noqa: E402  # benchmarks/summary.py
from timing import Conditions, median_time  # noqa: E402

GPU_MACHINE_CORES = 16
DEFAULT_DECODE_THREADS = 16  # TfdsStreamSource's default `workers`
# (name, image size, batch size, d_steps, images/s the H200 step eats: issue 19's numbers).
SHAPES = (("32 px, batch 64 x 5", 32, 64, 5, 11_000),
          ("128 px, batch 256", 128, 256, 1, 4_700))
PREFETCH = 2  # config.batching.prefetch's default
JPEG_QUALITY = 90


def tfds_missing() -> str:
  """Why the tfds_stream rows cannot run here ('' when they can)."""
  try:
    import array_record  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
    import tensorflow_datasets  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as error:
    return f"{error.name} not installed (pip install tensorflow-datasets array-record)"
  return ""


def natural_images(count: int, size: int, seed: int = 0) -> np.ndarray:
  """uint8 (count, size, size, 3): a bicubically upsampled 8×8 random field plus noise."""
  rng = np.random.default_rng(seed)
  images = np.empty((count, size, size, 3), np.uint8)
  for i in range(count):
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((size, size), Image.BICUBIC), np.float32)
    images[i] = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
  return images


def encoded(image: np.ndarray, fmt: str) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG"
                                               else {}))
  return buffer.getvalue()


def write_array_record(images: np.ndarray, data_dir: str) -> str:
  """Prepares a TFDS dataset of JPEG ``images`` (labels i % 10) in ArrayRecord under
  ``data_dir``; returns its name."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  size = images.shape[1]

  class JpegImages(tfds.core.GeneratorBasedBuilder):
    """JPEG images of one size and labels, written without TensorFlow (bytes in)."""
    name = f"input_pipeline_bench{size}"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(size, size, 3), encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(num_classes=10)}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      for i, image in enumerate(images):  # a file object: TFDS stores its bytes as they are
        yield i, {"image": io.BytesIO(encoded(image, "JPEG")), "label": i % 10}

  tfds.disable_progress_bar()
  with quiet_tfds():
    JpegImages(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return JpegImages.name


def write_folder(images: np.ndarray, folder: pathlib.Path, fmt: str) -> pathlib.Path:
  """``images`` as files ``folder/class<i % 10>/<i>.png|jpg`` (torchvision's ImageFolder
  layout, so the source has labels as the tfds one)."""
  suffix = {"PNG": ".png", "JPEG": ".jpg"}[fmt]
  for i, image in enumerate(images):
    path = folder / f"class{i % 10}" / f"{i:06d}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded(image, fmt))
  return folder


def host_batch_fn(batcher: data.Batcher, d_steps: int) -> Callable[[int], dict[str, Any]]:
  """``Trainer.host_batch`` (sagan_jax/runs/training.py) for a labelled source."""
  keys = ("image", "label")
  if d_steps == 1:
    return lambda step: {key: batcher.batch(step)[key] for key in keys}

  def stacked(step: int) -> dict[str, Any]:
    parts = [batcher.batch(step * d_steps + i) for i in range(d_steps)]
    return {key: np.stack([part[key] for part in parts]) for key in keys}
  return stacked


def images_per_second(source, batch_size: int, d_steps: int, steps: int, repeats: int):
  """(images/s, CPU s a step): median over ``repeats`` drains of ``steps`` steps each through
  a fresh Prefetcher (the first drain, which fills caches, is not in the median)."""
  batcher = data.Batcher(source, batch_size, seed=0, drop_remainder=True)
  fn = host_batch_fn(batcher, d_steps)
  start = [0]

  def drain():
    with data.Prefetcher(fn, start_step=start[0], stop_step=start[0] + steps,
                         buffer_size=PREFETCH) as batches:
      for batch in batches:
        assert batch["image"].shape[-4] == batch_size
    start[0] += steps  # fresh steps each time: new orders and epochs, as a run sees them
  timing = median_time(drain, repeats)
  return steps * batch_size * d_steps / timing.wall, timing.cpu / steps


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=5, help="timed drains per row (median)")
  parser.add_argument("--steps", type=int, default=4, help="training steps a drain")
  parser.add_argument("--smoke", action="store_true",
                      help="a few seconds: tiny datasets, 1 step, 1 repeat")
  parser.add_argument("--summary", default=None, help="append rows to this table file "
                      "(benchmarks/summary.py)")
  args = parser.parse_args(argv)
  steps, repeats = (1, 1) if args.smoke else (args.steps, args.repeats)
  cores = os.cpu_count() or 1
  threads = sorted({1, cores, DEFAULT_DECODE_THREADS})
  missing = tfds_missing()

  conditions = Conditions()
  print(conditions.start_line())
  if cores < GPU_MACHINE_CORES:
    print(f"note: {cores} cores here; the GPU machine has {GPU_MACHINE_CORES}, so the decoding "
          "rows (tfds_stream, image_folder) are a floor there")
  if missing:
    print(f"tfds_stream rows skipped: {missing}")
  print(f"{'source':<33} | {'shape':<19} | {'images/s':>9} | {'CPU s/step':>10} | "
        f"{'needs':>6} | ratio")
  with tempfile.TemporaryDirectory(prefix="input_pipeline_") as tmp:
    for shape, size, batch_size, d_steps, needed in SHAPES:
      per_step = batch_size * d_steps
      # A few steps an epoch: each drain reads fresh steps, across epochs as a run does.
      count = per_step * (2 if args.smoke else 3)
      images = natural_images(count, size)
      labels = (np.arange(count) % 10).astype(np.int32)
      folder_fmt = "PNG" if size <= 32 else "JPEG"
      folder = write_folder(images, pathlib.Path(tmp, f"folder{size}"), folder_fmt)
      sources = [("memory (ArraySource)",
                  lambda: ArraySource(images, "memory", labels))]
      name = "" if missing else write_array_record(images, os.path.join(tmp, "tfds"))
      for n in ([] if missing else threads):
        label = f"tfds_stream, {n} thread{'s' * (n > 1)}"
        label += " (default)" if n == DEFAULT_DECODE_THREADS else ""
        sources.append((label, lambda n=n: data.TfdsStreamSource(
            name, "train", size, 3, data_dir=os.path.join(tmp, "tfds"), workers=n)))
      sources.append((f"image_folder ({folder_fmt})",
                      lambda: ImageFolderSource(folder, size, 3, class_folders=True,
                                                check_files=False)))
      for label, build in sources:
        rate, cpu = images_per_second(build(), batch_size, d_steps, steps, repeats)
        print(f"{label:<33} | {shape:<19} | {rate:9.0f} | {cpu:10.3f} | {needed:6d} | "
              f"{rate / needed:5.2f}x", flush=True)
        if args.summary:
          add_row(args.summary, f"input {label}, {shape}", rate, needed, "images/s", "higher",
                  f"reference: the H200 step's rate; {cores} cores")
  print(conditions.end_line())
  return 0


if __name__ == "__main__":
  sys.exit(main())
