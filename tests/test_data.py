"""Tests for sagan_jax.data: the MNIST asset, sources, batcher, prefetcher."""

from __future__ import annotations

import gc
import hashlib
import sys
import threading
import traceback
import types

import ml_collections
import numpy as np
import pytest
from PIL import Image

from sagan_jax import data
from sagan_jax.data import mnist, transforms
from sagan_jax.train.config import ConfigError, base_config, validate

# sha256 of images.tobytes() + labels.tobytes(); see sagan_jax/data/assets/README.md.
ASSET_CONTENT_SHA256 = "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"


@pytest.fixture(scope="module")
def mnist78():
  return data.mnist_digits((7, 8), 200)  # the chapter's data: 200 sevens + 200 eights, 64x64


def _first_of_each(labels, digits, start, stop):
  return np.concatenate([np.flatnonzero(labels == d)[start:stop] for d in digits])


# --- the packaged asset and the MNIST source ----------------------------------


def test_asset_contents_and_provenance_hash():
  images, labels = data.load_mnist_5k()
  assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
  assert labels.shape == (5000,) and labels.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), [500] * 10)
  digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
  assert digest == ASSET_CONTENT_SHA256
  assert not images.flags.writeable  # the cached copy cannot be corrupted


def test_mnist78_train_split(mnist78):
  assert len(mnist78) == 400
  assert mnist78.image_shape == (64, 64, 1)
  np.testing.assert_array_equal(np.bincount(mnist78.labels, minlength=10)[[7, 8]], [200, 200])
  images = mnist78.get(np.arange(400))
  assert images.shape == (400, 64, 64, 1) and images.dtype == np.uint8
  assert images.min() == 0 and images.max() >= 250  # real digits on black
  assert "400 images" in mnist78.description
  np.testing.assert_array_equal(images, data.mnist_digits((7, 8), 200).get(np.arange(400)))


def test_mnist_splits_are_the_asset_rows_and_disjoint():
  images, labels = data.load_mnist_5k()
  train = data.mnist_digits((7, 8), 200, image_size=28, split="train")
  heldout = data.mnist_digits((7, 8), 200, image_size=28, split="heldout")
  np.testing.assert_array_equal(
      train.get(np.arange(400))[..., 0], images[_first_of_each(labels, (7, 8), 0, 200)])
  np.testing.assert_array_equal(
      heldout.get(np.arange(600))[..., 0], images[_first_of_each(labels, (7, 8), 200, 500)])
  train_bytes = {x.tobytes() for x in train.get(np.arange(len(train)))}
  held_bytes = {x.tobytes() for x in heldout.get(np.arange(len(heldout)))}
  assert not train_bytes & held_bytes

  all_heldout = data.mnist_digits(range(10), 200, split="heldout", image_size=28)
  np.testing.assert_array_equal(np.bincount(all_heldout.labels), [300] * 10)


def test_mnist_resize_is_pil_bicubic_on_uint8(mnist78):
  images, labels = data.load_mnist_5k()
  rows = _first_of_each(labels, (7, 8), 0, 200)
  for i in (0, 1, 199, 200, 399):
    expected = np.asarray(Image.fromarray(images[rows[i]]).resize((64, 64), Image.BICUBIC))
    np.testing.assert_array_equal(mnist78.get([i])[0, ..., 0], expected)


def test_mnist_rgb_and_argument_errors():
  rgb = data.mnist_digits((3,), per_digit=4, image_size=32, channels=3)
  x = rgb.get([0, 1, 2, 3])
  assert x.shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(x[..., 0], x[..., 2])
  for kwargs in ({"digits": (7, 7)}, {"digits": (10,)}, {"digits": ()},
                 {"per_digit": 0}, {"per_digit": 501}, {"split": "test"},
                 {"per_digit": 500, "split": "heldout"}, {"image_size": 0},
                 {"channels": 2}):
    with pytest.raises(data.DataError):
      data.mnist_digits(**{"digits": (7, 8), "per_digit": 200, **kwargs})


# --- batcher ------------------------------------------------------------------


def test_batch_sizes_per_epoch_match_the_chapter(mnist78):
  batcher = data.Batcher(mnist78, batch_size=64, seed=0)
  assert batcher.batches_per_epoch == 7 and batcher.num_steps(300) == 2100
  sizes = [batcher.batch(k)["image"].shape[0] for k in range(9)]
  assert sizes == [64] * 6 + [16] + [64] * 2
  dropped = data.Batcher(mnist78, batch_size=64, seed=0, drop_remainder=True)
  assert dropped.batches_per_epoch == 6
  assert dropped.batch(6)["epoch"] == 1


def test_batch_contents_and_normalization(mnist78):
  batcher = data.Batcher(mnist78, batch_size=64, seed=3)
  b = batcher.batch(9)
  assert (b["step"], b["epoch"]) == (9, 1)
  assert b["image"].dtype == np.float32 and b["image"].shape == (64, 64, 64, 1)
  assert b["image"].min() >= -1.0 and b["image"].max() <= 1.0
  idx = batcher.local_indices(9)
  raw = mnist78.get(idx).astype(np.float32)
  np.testing.assert_array_equal(b["image"], (raw / np.float32(255) - 0.5) / 0.5)
  np.testing.assert_array_equal(b["label"], mnist78.labels[idx])
  assert b["label"].dtype == np.int32


def test_each_example_once_per_epoch_and_epochs_differ(mnist78):
  batcher = data.Batcher(mnist78, batch_size=64, seed=0)
  epochs = []
  for epoch in range(2):
    steps = range(epoch * 7, (epoch + 1) * 7)
    seen = np.concatenate([batcher.global_indices(k) for k in steps])
    np.testing.assert_array_equal(np.sort(seen), np.arange(400))
    epochs.append(seen)
  assert not np.array_equal(epochs[0], epochs[1])
  # The documented rule, so other tools can reproduce the order.
  np.testing.assert_array_equal(epochs[1], np.random.default_rng([0, 1]).permutation(400))


def test_resume_reproduces_batches_without_iterator_state(mnist78):
  run = data.Batcher(mnist78, batch_size=64, seed=42)
  history = {k: run.batch(k)["image"] for k in range(16)}
  for k in (0, 6, 7, 13, 15):  # a fresh batcher, as after a restart at step k
    np.testing.assert_array_equal(
        data.Batcher(mnist78, batch_size=64, seed=42).batch(k)["image"], history[k])
  other_seed = data.Batcher(mnist78, batch_size=64, seed=43).batch(0)["image"]
  assert not np.array_equal(other_seed, history[0])


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_reassemble_the_global_batch(mnist78, process_count):
  whole = data.Batcher(mnist78, batch_size=64, seed=1)
  parts = [data.Batcher(mnist78, batch_size=64, seed=1, process_index=i,
                        process_count=process_count) for i in range(process_count)]
  assert parts[0].local_batch_size == 64 // process_count
  for step in (0, 6, 8):  # full, last partial (16), next epoch
    np.testing.assert_array_equal(
        np.concatenate([p.batch(step)["image"] for p in parts]), whole.batch(step)["image"])



# --- augmentation: random horizontal flips ----------------------------------------------


def _two_pixel_images(n: int) -> data.ArraySource:
  """``n`` 1×2 images [[i % 200, i % 200 + 50]]: flipped iff the left pixel is the larger,
  and each image's index is readable from it (up to 200)."""
  left = (np.arange(n) % 200).astype(np.uint8)
  images = np.stack([left, left + 50], axis=-1).reshape(n, 1, 2, 1)
  return data.ArraySource(images, "two-pixel images")


def _flipped(batch) -> np.ndarray:
  return batch["image"][:, 0, 0, 0] > batch["image"][:, 0, 1, 0]


def test_random_flip_mirrors_the_images_drawn_from_seed_epoch_and_index(mnist78):
  plain = data.Batcher(mnist78, batch_size=64, seed=5)
  flipping = data.Batcher(mnist78, batch_size=64, seed=5, random_flip=True)
  assert not data.Batcher(mnist78, batch_size=64).random_flip  # off unless asked
  for step in (0, 6, 9):  # full, the epoch's last partial batch, the next epoch
    indices = plain.global_indices(step)
    flips = np.random.default_rng([5, step // 7, 1]).random(400)[indices] < 0.5  # the rule
    expected = plain.batch(step)["image"]
    expected[flips] = expected[flips, :, ::-1]
    got = flipping.batch(step)
    np.testing.assert_array_equal(got["image"], expected)
    np.testing.assert_array_equal(flipping.global_indices(step), indices)  # order unchanged
    assert 0 < flips.sum() < len(flips)


def test_random_flip_batches_are_a_function_of_the_step():
  """Resume (a fresh batcher at step k), several processes and another batch size all see
  each image flipped the same way."""
  source = _two_pixel_images(200)
  run = data.Batcher(source, batch_size=8, seed=7, random_flip=True)
  history = {k: run.batch(k)["image"] for k in range(60)}  # 25 steps an epoch
  for k in (0, 24, 25, 59):
    np.testing.assert_array_equal(
        data.Batcher(source, batch_size=8, seed=7, random_flip=True).batch(k)["image"],
        history[k])
  parts = [data.Batcher(source, batch_size=8, seed=7, random_flip=True, process_index=i,
                        process_count=2) for i in range(2)]
  np.testing.assert_array_equal(np.concatenate([p.batch(30)["image"] for p in parts]),
                                history[30])

  def epoch_images(batcher, epoch):  # image index -> what the epoch showed of it
    steps = range(epoch * batcher.batches_per_epoch, (epoch + 1) * batcher.batches_per_epoch)
    return {int(i): image.tobytes() for k in steps
            for i, image in zip(batcher.global_indices(k), batcher.batch(k)["image"])}

  other_batch_size = data.Batcher(source, batch_size=40, seed=7, random_flip=True)
  assert epoch_images(run, 1) == epoch_images(other_batch_size, 1)


def test_random_flip_statistics():
  """Each image is flipped with probability 1/2, independently across images and epochs:
  2,000 images, 3 epochs; bounds are 5 binomial standard deviations (√(n/4))."""
  n = 2000
  batcher = data.Batcher(_two_pixel_images(n), batch_size=n, seed=0, random_flip=True,
                         shuffle=False)  # one batch an epoch, in source order
  flips = np.stack([_flipped(batcher.batch(epoch)) for epoch in range(3)])
  bound = 5 * np.sqrt(n / 4)
  for epoch_flips in flips:
    assert abs(epoch_flips.sum() - n / 2) < bound
  for a, b in ((0, 1), (1, 2), (0, 2)):  # epochs draw afresh: agreement is a coin toss
    assert abs((flips[a] == flips[b]).sum() - n / 2) < bound
  assert abs((flips[0][1:] == flips[0][:-1]).sum() - (n - 1) / 2) < bound  # neighbours too
  np.testing.assert_array_equal(flips[1], batcher.epoch_flips(1))


def test_random_flip_is_a_config_field_the_source_factory_accepts(mnist78):
  config = base_config()
  assert config.data.random_flip is False  # off by default
  config.data.per_digit = 8
  config.data.random_flip = True
  assert len(data.make_source(config.data)) == 16

# --- crop: the centred square of the long edge ------------------------------------------


def _coordinate_image(width: int, height: int) -> np.ndarray:
  """uint8 (height, width, 3): red = column, green = row, blue = 7, so a crop's pixels
  tell which source pixels survived."""
  rows, cols = np.mgrid[:height, :width]
  return np.stack([cols, rows, np.full_like(rows, 7)], -1).astype(np.uint8)


@pytest.mark.parametrize("width, height, offset", [
    (12, 8, 2), (8, 12, 2), (11, 8, 2), (13, 8, 2), (15, 8, 4), (8, 8, 0)])
def test_center_crop_keeps_the_centred_square_of_the_long_edge(width, height, offset):
  """torchvision's center_crop(img, min(img.size)) (StudioGAN's CenterCropLongEdge): offset
  int(round((long - short) / 2)), half to even (11→1.5→2, 13→2.5→2, 15→3.5→4)."""
  pixels = _coordinate_image(width, height)
  side = min(width, height)
  got = transforms.pil_to_array(Image.fromarray(pixels), side, 3, "center_long_edge")
  expected = (pixels[:, offset:offset + side] if width > height
              else pixels[offset:offset + side])
  np.testing.assert_array_equal(got, expected)


def test_crop_in_every_decoding_source(tmp_path, monkeypatch):
  """image_folder, tfds and tfds_stream (stand-in TFDS module) crop 12×8 → 8×8 (columns
  2..9) and then resize to 4×4 (PIL bicubic of the crop); without crop, the whole image."""
  pixels = _coordinate_image(12, 8)
  crop_then_resize = np.asarray(Image.fromarray(pixels[:, 2:10]).resize((4, 4),
                                                                       Image.BICUBIC))
  squashed = np.asarray(Image.fromarray(pixels).resize((4, 4), Image.BICUBIC))
  assert not np.array_equal(crop_then_resize, squashed)
  Image.fromarray(pixels).save(tmp_path / "a.png")
  fake = types.ModuleType("tensorflow_datasets")
  info = types.SimpleNamespace(features={})
  fake.load = lambda name, split, data_dir, download, with_info: ([{"image": pixels}], info)
  fake.as_numpy = lambda ds: iter(ds)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  for crop, expected in ((None, squashed), ("center_long_edge", crop_then_resize)):
    config = data_config(path=str(tmp_path), image_size=4, channels=3, crop=crop,
                         tfds_name="fake")
    for source in ("image_folder", "tfds"):
      got = data.make_source({**config, "source": source}).get([0])[0]
      np.testing.assert_array_equal(got, expected, err_msg=f"{source} crop={crop}")
  stream = object.__new__(data.TfdsStreamSource)  # its decode step only
  stream.__dict__.update(_records=[{"image": pixels}], name="fake", image_key="image",
                         label_key=None, image_size=4, channels=3, crop="center_long_edge")
  np.testing.assert_array_equal(stream._example(0)[0], crop_then_resize)
  stream.crop = "random_long_edge"  # a draw of 0.99 → offset floor(0.99 * 4) = 3
  np.testing.assert_array_equal(stream._example(0, 0.99)[0], np.asarray(
      Image.fromarray(pixels[:, 3:11]).resize((4, 4), Image.BICUBIC)))


def test_crop_config_field_and_where_a_random_crop_is_refused():
  config = base_config()
  assert config.data.crop is None  # off by default
  validate(config)
  config.data.crop = "random_long_edge"
  config.data.source = "image_folder"
  validate(config)
  for source in ("tfds", "mnist78"):  # in memory: decoded once, before any draw
    config.data.source = source
    with pytest.raises(ConfigError, match=r"^config.data.crop='random_long_edge' needs a "
                       r"source that decodes per batch \(image_folder or tfds_stream\), not "
                       f"'{source}': use crop='center_long_edge' there$"):
      validate(config)
  config.data.crop = "random"
  with pytest.raises(ConfigError, match=r"config.data.crop must be one of \[None, "):
    validate(config)
  with pytest.raises(data.DataError, match="crop must be one of"):
    data.make_source(data_config(source="image_folder", path=".", crop="random"))
  with pytest.raises(data.DataError, match="needs a source that decodes per batch"):
    data.tfds_dataset("mnist", crop="random_long_edge")


def _stripe_folder(path, count: int, width: int = 12, height: int = 8):
  """``count`` RGB images (height, width): red = column, green = image index."""
  path.mkdir()
  for i in range(count):
    pixels = _coordinate_image(width, height)
    pixels[..., 1] = i
    Image.fromarray(pixels).save(path / f"{i:03d}.png")
  return path


def _crop_offsets(batch) -> np.ndarray:
  """Each image's crop offset: its first column's red value (pixels from [-1, 1])."""
  return np.rint((batch["image"][:, 0, 0, 0] + 1) * 127.5).astype(int)


def test_random_crop_offsets_drawn_from_seed_epoch_and_index(tmp_path):
  """12×8 images cropped to 8×8 (no resize): offsets floor(u * 4), u from
  default_rng([seed, epoch, 2]) by source index: 0..3 each (randint(0, 4)'s range, as
  StudioGAN's RandomCropLongEdge), whole columns kept, the same for every restart, batch
  size and process split; batch at a step a pure function of the step."""
  source = data.image_folder(_stripe_folder(tmp_path / "f", 40), 8, 3,
                             crop="random_long_edge")
  assert "random crop of the long edge" in source.description
  run = data.Batcher(source, batch_size=8, seed=3)
  assert run.random_crop
  seen = set()
  for step in range(10):  # two epochs
    batch = run.batch(step)
    indices = run.global_indices(step)
    draws = np.random.default_rng([3, step // 5, 2]).random(40)[indices]  # the rule
    offsets = np.floor(draws * 4).astype(int)
    np.testing.assert_array_equal(_crop_offsets(batch), offsets)
    columns = np.rint((batch["image"][..., 0] + 1) * 127.5).astype(int)  # (b, 8, 8)
    np.testing.assert_array_equal(
        columns, np.broadcast_to(offsets[:, None, None] + np.arange(8), columns.shape))
    green = np.rint((batch["image"][..., 1] + 1) * 127.5).astype(int)
    np.testing.assert_array_equal(green, np.broadcast_to(indices[:, None, None], green.shape))
    seen.update(offsets.tolist())
    restarted = data.Batcher(source, batch_size=8, seed=3).batch(step)
    np.testing.assert_array_equal(restarted["image"], batch["image"])
    halves = [data.Batcher(source, batch_size=8, seed=3, process_index=i, process_count=2)
              .batch(step)["image"] for i in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), batch["image"])
  assert seen == {0, 1, 2, 3}  # the whole range, never offset 4 (= long - short)
  other = data.Batcher(source, batch_size=20, seed=3)  # another batch size, same crops
  by_index = {}
  for step in range(2):
    by_index.update(zip(other.global_indices(step).tolist(), _crop_offsets(other.batch(step))))
  first = {i: o for i, o in zip(run.global_indices(0).tolist(), _crop_offsets(run.batch(0)))}
  assert all(by_index[i] == o for i, o in first.items())
  assert not np.array_equal(  # another epoch, other crops
      np.floor(run.epoch_crop_draws(0) * 4), np.floor(run.epoch_crop_draws(1) * 4))
  np.testing.assert_array_equal(source.get([5])[0], source.get([5], np.array([0.5]))[0])
  tall = data.image_folder(_stripe_folder(tmp_path / "t", 1, 8, 12), 8, 3,
                           crop="random_long_edge")
  pixels = _coordinate_image(8, 12)
  pixels[..., 1] = 0
  np.testing.assert_array_equal(tall.get([0], np.array([0.99]))[0], pixels[3:11])


class _RecordingSource:
  """Wraps a source and records which indices were read."""

  def __init__(self, source):
    self.source, self.read = source, []
    self.description, self.image_shape = source.description, source.image_shape
    self.labels = None

  def __len__(self):
    return len(self.source)

  def get(self, indices):
    self.read.extend(int(i) for i in indices)
    return self.source.get(indices)


def test_each_process_reads_only_its_slice(mnist78):
  spy = _RecordingSource(mnist78)
  assert isinstance(spy, data.Source) and isinstance(mnist78, data.Source)
  batcher = data.Batcher(spy, batch_size=64, seed=1, process_index=1, process_count=4)
  batcher.batch(0)
  assert spy.read == list(data.Batcher(mnist78, batch_size=64, seed=1).global_indices(0)[16:32])


def test_batcher_errors(mnist78):
  with pytest.raises(data.DataError, match="does not divide among 3"):
    data.Batcher(mnist78, batch_size=64, process_count=3)
  with pytest.raises(data.DataError, match="last batch of each epoch has 40"):
    data.Batcher(mnist78, batch_size=60, process_count=3)  # 400 % 60 = 40
  assert data.Batcher(mnist78, batch_size=60, process_count=3,
                      drop_remainder=True).batches_per_epoch == 6
  with pytest.raises(data.DataError, match="leaves no batch"):
    data.Batcher(mnist78, batch_size=512, drop_remainder=True)
  for kwargs in ({"batch_size": 0}, {"batch_size": 8, "seed": -1},
                 {"batch_size": 8, "process_index": 2, "process_count": 2}):
    with pytest.raises(data.DataError):
      data.Batcher(mnist78, **kwargs)
  with pytest.raises(data.DataError, match="step"):
    data.Batcher(mnist78, batch_size=8).batch(-1)


# --- prefetching --------------------------------------------------------------


def test_prefetch_yields_the_batches_from_a_start_step(mnist78):
  batcher = data.Batcher(mnist78, batch_size=64, seed=0)
  with data.prefetch_batches(batcher, start_step=5, stop_step=9) as batches:
    got = list(batches)
  assert [b["step"] for b in got] == [5, 6, 7, 8]
  for b in got:
    np.testing.assert_array_equal(b["image"], batcher.batch(b["step"])["image"])


def _fails_at_step_3(step):
  if step == 3:
    raise KeyError("boom in the producer")
  return step


def test_prefetch_propagates_the_original_exception():
  items = []
  with pytest.raises(KeyError, match="boom") as info:
    with data.Prefetcher(_fails_at_step_3, start_step=0, buffer_size=1) as it:
      for item in it:
        items.append(item)
  assert items == [0, 1, 2]
  frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
  assert "_fails_at_step_3" in frames  # the traceback reaches into the thread


def _prefetch_threads():
  return [t for t in threading.enumerate() if t.name == "sagan_jax-prefetch" and t.is_alive()]


def test_prefetch_close_and_abandon_stop_the_thread():
  before = len(_prefetch_threads())
  it = data.Prefetcher(lambda s: s, start_step=10, buffer_size=2)  # endless
  assert next(it) == 10 and next(it) == 11
  it.close()
  assert len(_prefetch_threads()) == before
  with pytest.raises(StopIteration):
    next(it)

  abandoned = data.Prefetcher(lambda s: s, buffer_size=2)
  next(abandoned)
  thread = abandoned._thread  # pylint: disable=protected-access
  del abandoned
  gc.collect()
  thread.join(timeout=5)
  assert not thread.is_alive()


# --- image folder -------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
  """A small img_78-like folder: gray and RGB files, nested, mixed formats."""
  rng = np.random.default_rng(0)
  gray = rng.integers(0, 256, (64, 64), dtype=np.uint8)
  rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
  (tmp_path / "7").mkdir()
  (tmp_path / "8").mkdir()
  Image.fromarray(gray).save(tmp_path / "7" / "a.png")
  Image.fromarray(rgb).save(tmp_path / "8" / "b.PNG")
  Image.fromarray(rgb).save(tmp_path / "8" / "c.jpg", quality=95)
  (tmp_path / "notes.txt").write_text("not an image")
  (tmp_path / "8" / "._b.PNG").write_bytes(b"macOS metadata, not an image")
  return tmp_path, gray, rgb


def test_image_folder_lists_and_loads(folder):
  root, gray, rgb = folder
  source = data.image_folder(root, image_size=64, channels=1)
  assert [p.relative_to(root).as_posix() for p in source.files] == [
      "7/a.png", "8/b.PNG", "8/c.jpg"]
  x = source.get([0, 1, 2])
  assert x.shape == (3, 64, 64, 1) and x.dtype == np.uint8
  np.testing.assert_array_equal(x[0, ..., 0], gray)  # already 64x64: untouched
  expected = Image.fromarray(rgb).convert("L").resize((64, 64), Image.BICUBIC)
  np.testing.assert_array_equal(x[1, ..., 0], np.asarray(expected))
  assert source.labels is None

  color = data.image_folder(root, image_size=32, channels=3)
  y = color.get([2, 1])
  assert y.shape == (2, 32, 32, 3)
  expected = Image.fromarray(rgb).resize((32, 32), Image.BICUBIC)
  np.testing.assert_array_equal(y[1], np.asarray(expected))
  color.verify()

  batch = data.Batcher(color, batch_size=2, seed=0).batch(1)
  assert batch["image"].shape == (1, 32, 32, 3) and "label" not in batch


def test_image_folder_errors_name_the_path(tmp_path, folder):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError, match="nope"):
    data.image_folder(missing, 64, 1)
  with pytest.raises(data.DataNotFoundError):
    data.image_folder(missing, 64, 1)

  empty = tmp_path / "empty"
  (empty / "sub").mkdir(parents=True)
  (empty / "sub" / "readme.txt").write_text("x")
  with pytest.raises(data.DataError, match=r"empty.*\.png"):
    data.image_folder(empty, 64, 1)

  root, _, _ = folder
  (root / "8" / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  with pytest.raises(data.DataError, match="d.png cannot be read"):  # before any batch
    data.image_folder(root, 64, 1)
  source = data.image_folder(root, 64, 1, check_files=False)  # a file broken after the check
  with pytest.raises(data.DataError, match="d.png"):
    source.get([3])
  with pytest.raises(data.DataError, match="d.png"):
    source.verify()


# --- tfds (optional dependency) -----------------------------------------------


def test_tfds_missing_package_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
  with pytest.raises(data.DataError,
                     match=r"pip install -e '\.\[tfds\]' in the sagan-jax checkout"):
    data.tfds_dataset("mnist", "train", image_size=64, channels=1)
  with pytest.raises(data.DataError, match=r"'\.\[tfds\]'"):
    data.make_source(data_config(source="tfds", tfds_name="mnist"))


def test_tfds_without_tensorflow_says_how_to_install(monkeypatch):
  fake = types.ModuleType("tensorflow_datasets")

  def load(*args, **kwargs):
    raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
  fake.load = load
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  with pytest.raises(data.DataError, match=r"'\.\[tfds\]'"):
    data.tfds_dataset("mnist", "train", image_size=64, channels=1)


def test_tfds_examples_are_converted(monkeypatch):
  """A stand-in TFDS module checks the conversion without TensorFlow."""
  rng = np.random.default_rng(0)
  examples = [{"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), "label": i}
              for i in range(3)]
  fake = types.ModuleType("tensorflow_datasets")
  label = types.SimpleNamespace(names=["zero", "one", "two"])
  info = types.SimpleNamespace(features={"label": label})
  fake.load = lambda name, split, data_dir, download, with_info: (examples, info)
  fake.as_numpy = lambda ds: iter(ds)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  source = data.tfds_dataset("mnist", "train", image_size=64, channels=3)
  assert len(source) == 3 and source.image_shape == (64, 64, 3)
  np.testing.assert_array_equal(source.labels, [0, 1, 2])
  assert source.class_names == ("zero", "one", "two")
  expected = Image.fromarray(examples[1]["image"][..., 0]).convert("RGB").resize(
      (64, 64), Image.BICUBIC)
  np.testing.assert_array_equal(source.get([1])[0], np.asarray(expected))
  with pytest.raises(data.DataError, match="no feature 'img'"):
    data.tfds_dataset("mnist", "train", image_size=64, channels=1, image_key="img")


# --- config factory -----------------------------------------------------------


def data_config(**overrides):
  """The run config's data section (its defaults' one home) with ``overrides``."""
  return {**base_config().data.to_dict(), **overrides}


def test_make_source_from_dict_and_configdict(mnist78, folder):
  config = ml_collections.ConfigDict(data_config(path="/not/used/by/mnist78",
                                                 tfds_name="unused"))
  source = data.make_source(config)
  np.testing.assert_array_equal(source.get([0, 399]), mnist78.get([0, 399]))
  assert len(data.make_source(data_config(split="heldout"))) == 600

  root, _, _ = folder
  config.source, config.path, config.image_size = "image_folder", str(root), 32
  assert data.make_source(config).image_shape == (32, 32, 1)


def test_make_source_errors():
  with pytest.raises(data.DataError, match="mnist78.*image_folder.*tfds"):
    data.make_source(data_config(source="cifar"))
  with pytest.raises(data.DataError, match="per_digits"):
    data.make_source(data_config(per_digits=100))
  with pytest.raises(data.DataError, match="'path' to be set"):
    data.make_source(data_config(source="image_folder"))
  # No defaults of its own: a field the source reads must be in the config.
  with pytest.raises(data.DataError, match="needs config field 'channels'.*base_config"):
    data.make_source({"source": "image_folder", "path": "/tmp", "image_size": 64})


def test_the_trainer_reads_random_flip_from_the_config():
  from sagan_jax.runs.training import Trainer  # pylint: disable=g-import-not-at-top
  config = base_config()
  config.model.width = 8
  config.data.per_digit = 8
  config.batching.batch_size = 8
  for flip in (False, True):
    config.data.random_flip = flip
    assert Trainer(config).batcher.random_flip is flip
