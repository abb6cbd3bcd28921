"""The metric writers (sagan_jax.runtime: TensorBoard event files, CSV/JSONL tables, W&B
offline, the factory and its no-op writer) and the progress line."""

import io
import json
import os
import struct

import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c

from sagan_jax.runtime import metric_writer as mw
from sagan_jax.runtime import progress, scalar_file_writers, wandb_writer, writer_factory
from sagan_jax.runtime.tensorboard_writer import TensorBoardWriter
from sagan_jax.train import config as config_lib


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
  with TensorBoardWriter(tmp_path) as writer:
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
  writer = TensorBoardWriter(tmp_path / "run")
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
  with TensorBoardWriter(tmp_path) as writer:
    with pytest.raises(ValueError, match="exactly one element"):
      writer.write_scalars(1, {"ok": 1.0, "vec": np.ones(3)})
    with pytest.raises(ValueError, match="uint8"):
      writer.write_images(1, {"img": np.zeros((4, 4, 3), np.float32)})
    with pytest.raises(ValueError, match="shape"):
      writer.write_images(1, {"img": np.zeros((4, 4, 2), np.uint8)})
  assert _values(_read_events(tmp_path)) == []


def test_purge_step_and_separate_files_per_writer(tmp_path):
  first = TensorBoardWriter(tmp_path)
  first.write_scalars(5, {"x": 1.0})
  second = TensorBoardWriter(tmp_path, resume_step=3)  # same second, same host
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


def test_processes_other_than_the_chief_write_nothing(tmp_path):
  logdir = tmp_path / "not_created"
  logging = {"writers": ("tensorboard", "csv", "jsonl", "wandb"), "wandb_project": "p"}
  with writer_factory.make_writer(logdir, logging, enabled=False) as writer:
    assert isinstance(writer, mw.NoOpWriter)  # no W&B run started either
    writer.write_scalars(1, {"x": 1.0})
    writer.write_images(1, {"img": np.zeros((2, 2, 3), np.uint8)})
    writer.write_hparams({"lr": 1e-4})
    writer.flush()
  assert not logdir.exists()
  with pytest.raises(ValueError, match="logdir"):
    TensorBoardWriter(None)


def test_closed_writer_refuses_writes(tmp_path):
  writer = TensorBoardWriter(tmp_path)
  writer.close()
  writer.close()  # twice is fine
  with pytest.raises(RuntimeError, match="closed"):
    writer.write_scalars(0, {"x": 1.0})


def test_hparams_reach_tensorboards_hparams_plugin(tmp_path):
  from tensorboardX.proto import plugin_hparams_pb2
  with TensorBoardWriter(tmp_path) as writer:
    writer.write_hparams(mw.flat_hparams({"model": {"width": 64, "g_attention": (16,)},
                                          "loss": "hinge", "ema": {"decay": None}}))
  values = {tag: v for _, tag, v in _values(_read_events(tmp_path))}
  assert set(values) == {"_hparams_/experiment", "_hparams_/session_start_info"}
  data = plugin_hparams_pb2.HParamsPluginData.FromString(
      values["_hparams_/session_start_info"].metadata.plugin_data.content)
  hparams = data.session_start_info.hparams
  assert hparams["model.width"].number_value == 64
  assert hparams["model.g_attention"].string_value == "(16,)"
  assert hparams["loss"].string_value == "hinge" and "ema.decay" not in hparams


def _csv_rows(path):
  import csv  # pylint: disable=g-import-not-at-top
  with open(path, newline="") as f:
    return [(int(r["step"]), r["name"], float(r["value"])) for r in csv.DictReader(f)]


def _jsonl_records(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_csv_and_jsonl_tables_and_their_resume(tmp_path):
  logging = {"writers": ("csv", "jsonl")}
  with writer_factory.make_writer(tmp_path, logging) as writer:
    assert isinstance(writer, mw.MultiWriter)
    writer.write_scalars(1, {"d_loss": 1.5, "g_loss": np.float32(-0.25)})
    writer.write_scalars(2, {"d_loss": 0.5, "eval/fid": float("nan")})
    writer.write_scalars(3, {"d_loss": 0.25})
    writer.write_images(3, {"samples": np.zeros((2, 2, 3), np.uint8)})  # not in a table
    with pytest.raises(ValueError, match="exactly one element"):  # refused by both
      writer.write_scalars(4, {"ok": 1.0, "vec": np.ones(2)})
    writer.write_hparams({"model.width": 8, "loss": "hinge"})
    # Readable while the run goes on: each call is on disk when it returns.
    assert len(_csv_rows(tmp_path / "metrics.csv")) == 5
  rows = _csv_rows(tmp_path / "metrics.csv")
  assert rows[:2] == [(1, "d_loss", 1.5), (1, "g_loss", -0.25)]
  assert rows[3][1] == "eval/fid" and np.isnan(rows[3][2])
  records = _jsonl_records(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in records] == [1, 2, 3]
  assert records[1]["eval/fid"] is None and records[0]["g_loss"] == -0.25  # strict JSON
  with open(tmp_path / scalar_file_writers.HPARAMS_FILE) as f:
    assert json.load(f) == {"loss": "hinge", "model.width": 8}

  # A run resumed from its checkpoint at step 2 logs step 3 again: the old row goes.
  with writer_factory.make_writer(tmp_path, logging, resume_step=2) as writer:
    writer.write_scalars(3, {"d_loss": 0.125})
  steps = [(step, value) for step, name, value in _csv_rows(tmp_path / "metrics.csv")
           if name == "d_loss"]
  assert steps == [(1, 1.5), (2, 0.5), (3, 0.125)]
  assert [(r["step"], r["d_loss"]) for r in _jsonl_records(tmp_path / "metrics.jsonl")] == [
      (1, 1.5), (2, 0.5), (3, 0.125)]
  with open(tmp_path / "metrics.csv") as f:
    assert f.read().count("step,name,value,wall_time") == 1  # one header
  closed = scalar_file_writers.JsonlWriter(tmp_path)
  closed.close()
  with pytest.raises(RuntimeError, match="closed"):
    closed.write_scalars(4, {"x": 1.0})


def test_factory_names_and_the_configs_choices_agree(tmp_path):
  assert writer_factory.WRITER_NAMES == config_lib.WRITER_NAMES
  with pytest.raises(ValueError, match=r"unknown metric writer 'mlflow': choose from "
                     r"\['tensorboard', 'csv', 'jsonl', 'wandb'\]"):
    writer_factory.make_writer(tmp_path, {"writers": ("tensorboard", "mlflow")})
  assert not os.listdir(tmp_path)  # refused before anything was opened
  config = config_lib.base_config()
  config.logging.writers = ("tensorboard", "csv", "tensorbord")
  with pytest.raises(config_lib.ConfigError, match=r"unknown writer 'tensorbord'; choose "
                     r"from \['tensorboard', 'csv', 'jsonl', 'wandb'\]"):
    config_lib.validate(config)


def test_wandb_missing_is_one_clear_line(tmp_path, monkeypatch):
  import importlib.util  # pylint: disable=g-import-not-at-top
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "wandb" else real_find_spec(name, *a))
  config = config_lib.base_config()
  config.logging.writers = ("tensorboard", "wandb")
  with pytest.raises(config_lib.ConfigError, match="wandb is not installed: pip install wandb"):
    config_lib.validate(config)


def test_wandb_offline_run_keeps_scalars_images_and_config(tmp_path, monkeypatch):
  wandb = pytest.importorskip(
      "wandb", reason="wandb is optional and not in the `test` extra (about 60 MB with its "
      "service binary): pip install wandb to run this test")
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  logging = {"writers": ("wandb",), "wandb_project": "sagan-jax-test", "wandb_entity": None}
  with writer_factory.make_writer(tmp_path / "run", logging) as writer:
    run = writer.run
    writer.write_hparams({"model.width": 8})
    writer.write_scalars(1, {"d_loss": 1.5})
    writer.write_scalars(2, {"d_loss": 0.5, "eval/fid": 12.0})
    writer.write_images(2, {"samples": np.zeros((4, 4, 3), np.uint8)})
    assert run.config["model.width"] == 8
    assert run.summary["d_loss"] == 0.5 and run.summary["eval/fid"] == 12.0
    assert run.summary["step"] == 2
  run_id = (tmp_path / "run" / wandb_writer.RUN_ID_FILE).read_text()
  assert run.id == run_id and run.name == "run"
  offline = [p for p in (tmp_path / "run" / "wandb").iterdir()
             if p.name.startswith("offline-run-")]
  assert len(offline) == 1 and offline[0].name.endswith(run_id)
  assert (offline[0] / f"run-{run_id}.wandb").stat().st_size > 0
  # A resumed run continues the same W&B run.
  with writer_factory.make_writer(tmp_path / "run", logging, resume_step=1) as writer:
    assert writer.run.id == run_id
    writer.write_scalars(2, {"d_loss": 0.25})
  with pytest.raises(RuntimeError, match="closed"):
    writer.write_scalars(3, {"x": 1.0})


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
