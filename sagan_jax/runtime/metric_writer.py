"""TensorBoard scalars, images and text, written synchronously through tensorboardX.

Events are TensorBoard's own format, built by tensorboardX's summary
functions and written by its `EventsWriter` (framing, CRCs, fsync on flush),
so neither TensorFlow nor PyTorch is needed to write them. We use that
synchronous writer rather than tensorboardX's ``SummaryWriter``, whose
``flush()`` does not drain its background queue: "flushed" events could
still be missing from disk when a run is killed.

In a multi-host run only process 0 should write: construct the writer with
``enabled=(jax.process_index() == 0)`` and every other process gets a writer
whose methods do nothing, so the training loop needs no ``if`` around logging.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from typing import Any, Mapping, Optional

import numpy as np

__all__ = ["MetricWriter"]


def _tensorboardx() -> Any:
  """tensorboardX, imported on first use: importing it also imports PyTorch when that
  is installed (~1.5 s), which disabled writers and ``import sagan_jax`` must not pay."""
  # pylint: disable=g-import-not-at-top
  import tensorboardX.event_file_writer
  import tensorboardX.proto.event_pb2
  import tensorboardX.proto.summary_pb2
  import tensorboardX.summary
  return tensorboardX


def _to_float(name: str, value: Any) -> float:
  """A Python float from a Python, numpy or jax scalar (or size-1 array)."""
  array = np.asarray(value)  # jax arrays come to the host here
  if array.size != 1:
    raise ValueError(f"scalar {name!r} must have exactly one element, got shape {array.shape}.")
  return float(array.reshape(()))


def _check_image(name: str, image: Any) -> np.ndarray:
  """A uint8 (H, W, C) image with C in 1, 3, 4."""
  array = np.asarray(image)
  if array.dtype != np.uint8:
    # tensorboardX would read floats as [0, 1]; this project's images are
    # [-1, 1], so accepting them would give a silently wrong picture.
    raise ValueError(f"image {name!r} must be uint8 (H, W, C), got dtype {array.dtype}; "
                     "convert [-1, 1] floats with sagan_jax.viz.image_grid/to_uint8.")
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
    raise ValueError(f"image {name!r} must be (H, W) or (H, W, C) with C in 1, 3, 4, got "
                     f"shape {np.shape(image)}.")
  return array


class MetricWriter:
  """Writes scalars, images and text to a TensorBoard log directory.

  Every ``write_*`` call is on disk (fsynced) before it returns, so a killed
  process loses nothing; logging happens every few steps, where that costs
  nothing measurable. Safe to share between
  threads; usable as a context manager. After `close`, writes raise rather
  than being lost silently. Each writer opens a new event file, so a resumed
  run never overwrites an earlier one's.

  Args:
    logdir: folder for the event file; created if missing. May be None when
      ``enabled`` is False.
    enabled: False makes every method a no-op and touches no files (for
      processes other than 0 in multi-host runs).
    resume_step: the checkpoint step a run resumes from. TensorBoard then
      drops what an earlier, interrupted run logged *after* that step (it is
      logged again), and keeps everything up to and including it — the
      scalars, images and evaluation logged at the checkpoint step itself.

  Raises:
    ValueError: if enabled without a ``logdir``.
  """

  def __init__(self, logdir: Optional[str | os.PathLike], enabled: bool = True, *,
               resume_step: Optional[int] = None):
    self.enabled = bool(enabled)
    self.logdir = None if logdir is None else os.fspath(logdir)
    self.path: Optional[str] = None
    self._events = None
    self._closed = False
    self._lock = threading.Lock()
    if not self.enabled:
      return
    if self.logdir is None:
      raise ValueError("an enabled MetricWriter needs a logdir.")
    os.makedirs(self.logdir, exist_ok=True)
    tbx = _tensorboardx()
    # EventsWriter names files by second and host; the pid and a random part keep
    # two writers of one second (a restart, evaluate.py beside train.py) apart.
    suffix = f".{os.getpid()}.{uuid.uuid4().hex[:8]}"
    self._events = tbx.event_file_writer.EventsWriter(
        os.path.join(self.logdir, "events"), filename_suffix=suffix)
    self.path = next(os.path.join(self.logdir, name) for name in os.listdir(self.logdir)
                     if name.endswith(suffix))
    if resume_step is not None:
      event_pb2 = tbx.proto.event_pb2
      # TensorBoard purges events with step >= this one from earlier files.
      self._write([event_pb2.Event(
          wall_time=time.time(), step=int(resume_step) + 1,
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))])

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
        self._events.write_event(event)
      self._events.flush()  # to disk now: a killed run keeps what it logged

  def _write_summaries(self, step: int, summaries: list[Any]) -> None:
    proto = _tensorboardx().proto
    values = list(itertools.chain.from_iterable(s.value for s in summaries))
    self._write([proto.event_pb2.Event(wall_time=time.time(), step=int(step),
                                       summary=proto.summary_pb2.Summary(value=values))])

  def write_scalars(self, step: int, mapping: Mapping[str, Any]) -> None:
    """One scalar per name at ``step`` (Python, numpy or jax scalars; non-finite
    values are written as they are). A value of more than one element raises
    ``ValueError`` and nothing is written."""
    if not self._active():
      return
    # Convert everything first so a bad value writes nothing rather than half.
    floats = {str(k): _to_float(k, v) for k, v in mapping.items()}
    summary = _tensorboardx().summary
    self._write_summaries(step, [summary.scalar(k, v) for k, v in floats.items()])

  def write_images(self, step: int, mapping: Mapping[str, Any]) -> None:
    """One image per name at ``step``: uint8 (H, W), (H, W, 1|3|4), e.g. from
    `sagan_jax.viz.image_grid`. Floats raise ``ValueError`` on purpose (see
    `sagan_jax.viz.to_uint8`), as do bad shapes; nothing is written then."""
    if not self._active():
      return
    images = {str(k): _check_image(k, v) for k, v in mapping.items()}
    summary = _tensorboardx().summary
    self._write_summaries(step, [summary.image(k, v, dataformats="HWC")
                                 for k, v in images.items()])

  def write_text(self, step: int, name: str, text: str) -> None:
    """A text entry (TensorBoard's Text tab shows it as ``<name>/text_summary``)."""
    if not self._active():
      return
    self._write_summaries(step, [_tensorboardx().summary.text(str(name), str(text))])

  def close(self) -> None:
    """Flushes and closes the event file; closing twice is harmless."""
    with self._lock:
      if self._closed:
        return
      self._closed = True
      if self._events is not None:
        self._events.close()
        self._events = None

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, exc_type, exc_value, traceback) -> None:
    self.close()
