"""TensorBoard metrics over tensorboardX, and a one-line console progress report.

Events are TensorBoard's own format, built from tensorboardX's protocol
buffers and CRC code, so neither TensorFlow nor PyTorch is needed. In a
multi-host run only process 0 should write: construct the writer with
``enabled=(jax.process_index() == 0)`` and every other process gets a writer
whose methods do nothing, so the training loop needs no ``if`` around logging.

Library code never prints: `ConsoleProgress` returns the progress line and
the caller decides where it goes (``logging``, ``print``, absl).
"""

from __future__ import annotations

import collections
import functools
import io
import math
import os
import socket
import struct
import threading
import time
import types
from typing import Any, Callable, Mapping, Optional

import numpy as np
from PIL import Image

__all__ = [
    "ConsoleProgress",
    "MetricWriter",
    "RateTracker",
    "format_duration",
    "format_progress",
]


@functools.lru_cache(maxsize=None)
def _tbx() -> Any:
  """tensorboardX's protos and helpers, imported on first use.

  Importing tensorboardX also imports PyTorch when it is installed (about
  1.5 s here); disabled writers and progress-line users should not pay that.
  """
  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2, summary_pb2
  from tensorboardX.record_writer import masked_crc32c
  from tensorboardX.summary import text
  return types.SimpleNamespace(event_pb2=event_pb2, summary_pb2=summary_pb2,
                               masked_crc32c=masked_crc32c, text=text)


def _to_float(name: str, value: Any) -> float:
  """A Python float from a Python, numpy or jax scalar (or size-1 array)."""
  arr = np.asarray(value)  # jax arrays come to the host here
  if arr.size != 1:
    raise ValueError(
        f"scalar {name!r} must have exactly one element, got shape {arr.shape}.")
  return float(arr.reshape(()))


def _png_summary_image(name: str, image: Any) -> Any:
  """Validates a uint8 HWC image and encodes it as TensorBoard's PNG proto."""
  a = np.asarray(image)
  if a.dtype != np.uint8:
    # tensorboardX would read floats as [0, 1]; this project's images are
    # [-1, 1], so accepting them would give a silently wrong picture.
    raise ValueError(
        f"image {name!r} must be uint8 (H, W, C), got dtype {a.dtype}; "
        "convert [-1, 1] floats with sagan_jax.viz.image_grid/to_uint8.")
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[..., 0]
  if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
    raise ValueError(
        f"image {name!r} must be (H, W) or (H, W, C) with C in 1, 3, 4, "
        f"got shape {np.shape(image)}.")
  buf = io.BytesIO()
  Image.fromarray(a).save(buf, format="PNG")
  return _tbx().summary_pb2.Summary.Image(
      height=a.shape[0], width=a.shape[1],
      colorspace=1 if a.ndim == 2 else a.shape[-1],
      encoded_image_string=buf.getvalue())


class _EventFile:
  """A TFRecord file of `Event` protos, written synchronously.

  tensorboardX's `SummaryWriter` queues events to a background thread whose
  ``flush()`` does not drain the queue, so "flushed" events can still be
  missing from disk (and a killed run loses them). Writing in the caller's
  thread and handing each batch to the OS keeps the file complete and lets
  TensorBoard show it live, at the cost of one ``write`` per call.
  """

  def __init__(self, logdir: str):
    stem = (f"events.out.tfevents.{int(time.time()):010d}."
            f"{socket.gethostname()}.{os.getpid()}")
    # The pid and a counter keep two writers (e.g. a restart in the same
    # second) from truncating each other's file.
    for n in range(1000):
      path = os.path.join(logdir, stem if n == 0 else f"{stem}.{n}")
      try:
        self._file = open(path, "xb")
        break
      except FileExistsError:
        continue
    else:
      raise FileExistsError(f"could not create a fresh event file as {stem}*")
    self.path = path

  def write(self, event: Any) -> None:
    crc = _tbx().masked_crc32c
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    self._file.write(header + struct.pack("<I", crc(header)) + data
                     + struct.pack("<I", crc(data)))

  def flush(self, sync: bool) -> None:
    self._file.flush()
    if sync:
      os.fsync(self._file.fileno())

  def close(self) -> None:
    self.flush(sync=True)
    self._file.close()


class MetricWriter:
  """Writes scalars, images and text to a TensorBoard log directory.

  Every ``write_*`` call reaches the OS before it returns (a killed process
  loses nothing); `flush` and `close` also fsync. Safe to share between
  threads. Usable as a context manager (closes on exit). After `close`,
  writes raise rather than being lost silently.

  Attributes:
    logdir: the log directory (None only for a disabled writer built without one).
    enabled: False for a writer whose methods do nothing.
    path: the event file, or None when disabled.
  """

  def __init__(self, logdir: Optional[str | os.PathLike], enabled: bool = True,
               *, purge_step: Optional[int] = None):
    """Creates the writer; an enabled one opens a new event file in ``logdir``.

    Args:
      logdir: folder for the event file; created if missing. May be None
        when ``enabled`` is False.
      enabled: False makes every method a no-op and touches no files (for
        processes other than 0 in multi-host runs).
      purge_step: when resuming at this step, TensorBoard hides the events
        an earlier (crashed) run wrote at this step or later, so curves do
        not double back.

    Raises:
      ValueError: if enabled without a ``logdir``.
    """
    self.enabled = bool(enabled)
    self.logdir = None if logdir is None else os.fspath(logdir)
    self.path = None
    self._file = None
    self._closed = False
    self._lock = threading.Lock()
    if not self.enabled:
      return
    if self.logdir is None:
      raise ValueError("an enabled MetricWriter needs a logdir.")
    os.makedirs(self.logdir, exist_ok=True)
    self._file = _EventFile(self.logdir)
    self.path = self._file.path
    event_pb2 = _tbx().event_pb2
    events = [event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")]
    if purge_step is not None:
      events.append(event_pb2.Event(
          wall_time=time.time(), step=int(purge_step),
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
    self._write(events)

  def _active(self) -> bool:
    if not self.enabled:
      return False
    if self._closed:
      raise RuntimeError(f"MetricWriter for {self.logdir!r} is closed.")
    return True

  def _write(self, events: list[Any]) -> None:
    with self._lock:
      if self._closed:
        raise RuntimeError(f"MetricWriter for {self.logdir!r} is closed.")
      for event in events:
        self._file.write(event)
      self._file.flush(sync=False)

  def _write_summary(self, step: int, values: list[Any]) -> None:
    tbx = _tbx()
    self._write([tbx.event_pb2.Event(wall_time=time.time(), step=int(step),
                                     summary=tbx.summary_pb2.Summary(value=values))])

  def write_scalars(self, step: int, mapping: Mapping[str, Any]) -> None:
    """Writes one scalar per name at ``step``.

    Args:
      step: the global step (converted with ``int``).
      mapping: name -> Python, numpy or jax scalar. Non-finite values are
        written as they are; TensorBoard shows them.

    Raises:
      ValueError: if a value has more than one element (nothing is written).
    """
    if not self._active():
      return
    # Convert everything first so a bad value writes nothing rather than half.
    value_cls = _tbx().summary_pb2.Summary.Value
    values = [value_cls(tag=str(k), simple_value=_to_float(k, v))
              for k, v in mapping.items()]
    self._write_summary(step, values)

  def write_images(self, step: int, mapping: Mapping[str, Any]) -> None:
    """Writes one image per name at ``step``.

    Args:
      step: the global step.
      mapping: name -> uint8 array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4),
        e.g. from `sagan_jax.viz.image_grid` or `attention_figure`.

    Raises:
      ValueError: for a non-uint8 array or a bad shape (nothing is written).
        Floats are refused on purpose: see `sagan_jax.viz.to_uint8`.
    """
    if not self._active():
      return
    value_cls = _tbx().summary_pb2.Summary.Value
    values = [value_cls(tag=str(k), image=_png_summary_image(k, v))
              for k, v in mapping.items()]
    self._write_summary(step, values)

  def write_text(self, step: int, name: str, text: str) -> None:
    """Writes a text entry (TensorBoard's Text tab; Markdown renders).

    Args:
      step: the global step.
      name: the tag; TensorBoard shows it as ``<name>/text_summary``.
      text: the text, e.g. the run's config.
    """
    if not self._active():
      return
    self._write_summary(step, list(_tbx().text(str(name), str(text)).value))

  def flush(self) -> None:
    """Makes everything written so far durable (fsync)."""
    if self._active():
      with self._lock:
        self._file.flush(sync=True)

  def close(self) -> None:
    """Flushes and closes the event file; closing twice is harmless."""
    with self._lock:
      if self._closed:
        return
      self._closed = True
      if self._file is not None:
        self._file.close()
        self._file = None

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, exc_type, exc_value, traceback) -> None:
    self.close()


class RateTracker:
  """Steps per second over a sliding window of recent updates.

  The first `update` only sets the starting point: call it after the first
  step completes, so the step that included compilation is not counted.
  """

  def __init__(self, window: int = 20,
               clock: Callable[[], float] = time.monotonic):
    """Creates the tracker.

    Args:
      window: the rate uses the last ``window`` intervals between updates.
      clock: seconds, monotonic; injectable for tests.

    Raises:
      ValueError: if ``window`` < 1.
    """
    if window < 1:
      raise ValueError(f"window must be at least 1, got {window}.")
    self._clock = clock
    self._marks: collections.deque[tuple[int, float]] = collections.deque(
        maxlen=window + 1)

  def update(self, step: int) -> None:
    """Records that ``step`` has just finished.

    Args:
      step: the global step; a step lower than the last one (a restart
        from a checkpoint) starts a fresh window.
    """
    step = int(step)
    if self._marks and step < self._marks[-1][0]:
      self._marks.clear()
    self._marks.append((step, self._clock()))

  @property
  def rate(self) -> Optional[float]:
    """Steps per second over the window, or None before two updates."""
    if len(self._marks) < 2:
      return None
    (s0, t0), (s1, t1) = self._marks[0], self._marks[-1]
    if s1 <= s0 or t1 <= t0:
      return None
    return (s1 - s0) / (t1 - t0)


def format_duration(seconds: float) -> str:
  """``'42s'``, ``'9m42s'``, ``'2h05m09s'`` or ``'3d04h'``; rounds to seconds."""
  if not math.isfinite(seconds):
    return "?"
  s = max(0, int(round(seconds)))
  days, s = divmod(s, 86400)
  hours, s = divmod(s, 3600)
  minutes, s = divmod(s, 60)
  if days:
    return f"{days}d{hours:02d}h"
  if hours:
    return f"{hours}h{minutes:02d}m{s:02d}s"
  if minutes:
    return f"{minutes}m{s:02d}s"
  return f"{s}s"


def _format_value(value: Any) -> str:
  if isinstance(value, (bool, np.bool_)):
    return str(bool(value))
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  v = _to_float("metric", value)
  if not math.isfinite(v):
    return str(v)
  # Fixed point reads best for losses; tiny or huge values (learning rates,
  # gradient norms) would round to 0.000 or sprawl, so use exponent form.
  if v == 0 or 1e-3 <= abs(v) < 1e5:
    return f"{v:.3f}"
  return f"{v:.3e}"


def format_progress(step: int, total_steps: int,
                    metrics: Optional[Mapping[str, Any]] = None,
                    rate: float | RateTracker | None = None) -> str:
  """One progress line, e.g. ``step 120/2100 | d_loss 1.234 | 3.4 steps/s | ETA 9m42s``.

  Args:
    step: steps completed.
    total_steps: steps in the run.
    metrics: name -> scalar (Python, numpy or jax), shown in the given order.
    rate: steps per second, a `RateTracker`, or None while unknown (rate
      and ETA are left out). Rates under 1 step/s show as seconds per step.

  Returns:
    The line, without a newline.
  """
  if isinstance(rate, RateTracker):
    rate = rate.rate
  parts = [f"step {int(step)}/{int(total_steps)}"]
  for name, value in (metrics or {}).items():
    parts.append(f"{name} {_format_value(value)}")
  if rate is not None and rate > 0 and math.isfinite(rate):
    parts.append(f"{rate:.1f} steps/s" if rate >= 1 else f"{1.0 / rate:.1f} s/step")
    parts.append("ETA " + format_duration(max(0, int(total_steps) - int(step)) / rate))
  return " | ".join(parts)


class ConsoleProgress:
  """Tracks the step rate and formats the console progress line.

  Example::

    progress = ConsoleProgress(total_steps=config.num_steps)
    for step in range(start, total):
      state, metrics = train_step(state, batch)
      line = progress.update(step + 1, metrics)  # every step: cheap
      if (step + 1) % 100 == 0:
        logging.info(line)

  The first `update` (normally right after the compiling step) only starts
  the clock. Passing jax arrays as metrics waits for them; call `update`
  with metrics only on the steps whose line is shown, and ``update(step)``
  otherwise, to keep the device pipeline full.
  """

  def __init__(self, total_steps: int, window: int = 20,
               clock: Callable[[], float] = time.monotonic):
    """Creates the helper.

    Args:
      total_steps: steps in the run, for the ETA.
      window: see `RateTracker`.
      clock: see `RateTracker`.
    """
    self.total_steps = int(total_steps)
    self.tracker = RateTracker(window=window, clock=clock)

  def update(self, step: int, metrics: Optional[Mapping[str, Any]] = None) -> str:
    """Records that ``step`` finished and returns the progress line."""
    self.tracker.update(step)
    return format_progress(step, self.total_steps, metrics, self.tracker.rate)

  __call__ = update
