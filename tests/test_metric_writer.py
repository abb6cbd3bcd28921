"""Tests for sagan_jax.runtime.metric_writer and progress: event files, no-op writer, progress line."""

import io
import os
import struct

import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c

from sagan_jax.runtime import metric_writer as mw
from sagan_jax.runtime import progress


def _read_events(logdir):
  """Parses every event file in ``logdir`` (TFRecord framing, CRCs checked)."""
  files = sorted(f for f in os.listdir(logdir) if f.startswith("events.out.tfevents"))
  assert files, f"no event file in {os.listdir(logdir)}"
  events = []
  for name in files:
    with open(os.path.join(logdir, name), "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):
      header = data[pos:pos + 8]
      (length,) = struct.unpack("<Q", header)
      (header_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
      assert header_crc == masked_crc32c(header)
      body = data[pos + 12:pos + 12 + length]
      (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
      assert body_crc == masked_crc32c(body)
      events.append(event_pb2.Event.FromString(body))
      pos += 16 + length
  return events


def _values(events):
  """(step, tag, summary value) for every summary value."""
  return [(e.step, v.tag, v) for e in events if e.HasField("summary")
          for v in e.summary.value]


def test_scalars_round_trip(tmp_path):
  jnp = pytest.importorskip("jax.numpy")
  with mw.MetricWriter(tmp_path) as writer:
    writer.write_scalars(0, {"d_loss": 1.25, "g_loss": np.float32(-0.5)})
    writer.write_scalars(np.int64(10), {"d_loss": jnp.asarray(0.75), "lr": jnp.array([2e-4])})
  events = _read_events(tmp_path)
  assert events[0].file_version.startswith("brain.Event")
  got = {(step, tag): v.simple_value for step, tag, v in _values(events)}
  assert got == pytest.approx({(0, "d_loss"): 1.25, (0, "g_loss"): -0.5,
                               (10, "d_loss"): 0.75, (10, "lr"): 2e-4})


def test_images_and_text_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
  gray = rng.integers(0, 256, (4, 7), dtype=np.uint8)
  writer = mw.MetricWriter(tmp_path / "run")
  writer.write_images(3, {"samples": rgb, "gray": gray})
  writer.write_text(3, "config", "lr: 2e-4")
  # Readable without flush/close: every write call reaches the OS.
  values = {tag: (step, v) for step, tag, v in _values(_read_events(tmp_path / "run"))}
  writer.close()
  step, v = values["samples"]
  assert step == 3 and (v.image.height, v.image.width, v.image.colorspace) == (6, 5, 3)
  with Image.open(io.BytesIO(v.image.encoded_image_string)) as im:
    np.testing.assert_array_equal(np.asarray(im.convert("RGB")), rgb)
  _, v = values["gray"]  # tensorboardX stores gray as RGB; the pixels are the same
  with Image.open(io.BytesIO(v.image.encoded_image_string)) as im:
    np.testing.assert_array_equal(np.asarray(im.convert("RGB")), np.repeat(gray[..., None], 3, -1))
  step, v = values["config/text_summary"]
  assert step == 3 and v.tensor.string_val == [b"lr: 2e-4"]


def test_bad_values_write_nothing_and_raise(tmp_path):
  with mw.MetricWriter(tmp_path) as writer:
    with pytest.raises(ValueError, match="exactly one element"):
      writer.write_scalars(1, {"ok": 1.0, "vec": np.ones(3)})
    with pytest.raises(ValueError, match="uint8"):
      writer.write_images(1, {"img": np.zeros((4, 4, 3), np.float32)})
    with pytest.raises(ValueError, match="shape"):
      writer.write_images(1, {"img": np.zeros((4, 4, 2), np.uint8)})
  assert _values(_read_events(tmp_path)) == []


def test_purge_step_and_separate_files_per_writer(tmp_path):
  first = mw.MetricWriter(tmp_path)
  first.write_scalars(5, {"x": 1.0})
  second = mw.MetricWriter(tmp_path, resume_step=3)  # same second, same host
  second.write_scalars(3, {"x": 2.0})
  first.close()
  second.close()
  assert first.path != second.path
  assert len(os.listdir(tmp_path)) == 2
  starts = [e.step for e in _read_events(tmp_path)
            if e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START]
  assert starts == [4]  # what came after the checkpoint at step 3 is purged, not step 3
  got = sorted((step, v.simple_value) for step, _, v in _values(_read_events(tmp_path)))
  assert got == [(3, 2.0), (5, 1.0)]


def test_disabled_writer_is_a_no_op(tmp_path):
  logdir = tmp_path / "not_created"
  with mw.MetricWriter(logdir, enabled=False) as writer:
    writer.write_scalars(1, {"x": 1.0})
    writer.write_images(1, {"img": np.zeros((2, 2, 3), np.uint8)})
    writer.write_text(1, "t", "hi")
  writer.close()
  assert not logdir.exists()
  mw.MetricWriter(None, enabled=False).write_scalars(0, {"x": 1.0})
  with pytest.raises(ValueError, match="logdir"):
    mw.MetricWriter(None)


def test_closed_writer_refuses_writes(tmp_path):
  writer = mw.MetricWriter(tmp_path)
  writer.close()
  writer.close()  # twice is fine
  with pytest.raises(RuntimeError, match="closed"):
    writer.write_scalars(0, {"x": 1.0})


class _FakeClock:

  def __init__(self):
    self.t = 1000.0

  def __call__(self):
    return self.t


def test_rate_tracker_excludes_first_call_and_slides():
  clock = _FakeClock()
  tracker = progress.RateTracker(window=3, clock=clock)
  assert tracker.rate is None
  tracker.update(1)   # after the compiling step: only a starting mark
  assert tracker.rate is None
  clock.t += 0.5
  tracker.update(2)
  assert tracker.rate == pytest.approx(2.0)
  for _ in range(3):  # slower steps push the fast one out of the window
    clock.t += 1.0
    tracker.update(tracker._marks[-1][0] + 1)
  assert tracker.rate == pytest.approx(1.0)
  clock.t += 1.0
  tracker.update(0)   # a restart from an earlier step starts over
  assert tracker.rate is None
  with pytest.raises(ValueError):
    progress.RateTracker(window=0)


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (42.4, "42s"), (59.6, "1m00s"), (582.35, "9m42s"),
    (7509, "2h05m09s"), (3 * 86400 + 4 * 3600 + 59, "3d04h"), (float("inf"), "?"),
])
def test_format_duration(seconds, text):
  assert progress.format_duration(seconds) == text


def test_format_progress_line():
  line = progress.format_progress(120, 2100, {"d_loss": 1.2341, "g_loss": np.float32(0.567)},
                            rate=1980 / 582.35)
  assert line == "step 120/2100 | d_loss 1.234 | g_loss 0.567 | 3.4 steps/s | ETA 9m42s"
  assert progress.format_progress(5, 10) == "step 5/10"  # rate unknown: no rate or ETA
  assert progress.format_progress(10, 10, {}, 2.0) == "step 10/10 | 2.0 steps/s | ETA 0s"
  # Slow runs read as seconds per step; odd magnitudes as exponents; ints stay ints.
  line = progress.format_progress(1, 3, {"lr": 2e-4, "gnorm": 3e6, "epoch": 4,
                                   "loss": float("nan")}, rate=0.25)
  assert line == ("step 1/3 | lr 2.000e-04 | gnorm 3.000e+06 | epoch 4 | loss nan"
                  " | 4.0 s/step | ETA 8s")


def test_console_progress_uses_tracker():
  jnp = pytest.importorskip("jax.numpy")
  clock = _FakeClock()
  console_progress = progress.ConsoleProgress(total_steps=100, window=10, clock=clock)
  clock.t += 30.0  # the first step compiles: slow, and must not count
  assert console_progress.update(1, {"d_loss": 1.0}) == "step 1/100 | d_loss 1.000"
  for step in range(2, 11):
    clock.t += 0.5
    line = console_progress(step, {"d_loss": jnp.float32(0.5)})
  assert line == "step 10/100 | d_loss 0.500 | 2.0 steps/s | ETA 45s"
  assert progress.format_progress(10, 100, None, console_progress.tracker).endswith("ETA 45s")
