"""`TensorBoardWriter`: scalars, images, text and hparams as TensorBoard event files.

Events are TensorBoard's own format, built by tensorboardX's summary
functions and written by its `EventsWriter` (framing, CRCs, fsync on flush),
so neither TensorFlow nor PyTorch is needed to write them. We use that
synchronous writer rather than tensorboardX's ``SummaryWriter``, whose
``flush()`` does not drain its background queue: "flushed" events could
still be missing from disk when a run is killed.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from typing import Any, Mapping, Optional

from sagan_jax.runtime.metric_writer import MetricWriter, checked_images, scalar_values

__all__ = ["TensorBoardWriter"]


def _tensorboardx() -> Any:
  """tensorboardX, imported on first use: importing it also imports PyTorch when that
  is installed (~1.5 s), which ``import sagan_jax`` must not pay."""
  # pylint: disable=g-import-not-at-top
  import tensorboardX.event_file_writer
  import tensorboardX.proto.event_pb2
  import tensorboardX.proto.summary_pb2
  import tensorboardX.summary
  return tensorboardX


class TensorBoardWriter(MetricWriter):
  """Writes scalars, images, text and hparams to a TensorBoard log directory.

  Every ``write_*`` call is on disk (fsynced) before it returns, so a killed
  process loses nothing; logging happens every few steps, where that costs
  nothing measurable. Safe to share between threads. Each writer opens a new
  event file, so a resumed run never overwrites an earlier one's.

  Args:
    logdir: folder for the event file; created if missing.
    resume_step: the checkpoint step a run resumes from. TensorBoard then
      drops what an earlier, interrupted run logged *after* that step (it is
      logged again), and keeps everything up to and including it — the
      scalars, images and evaluation logged at the checkpoint step itself.
  """

  def __init__(self, logdir: str | os.PathLike, *, resume_step: Optional[int] = None):
    if logdir is None:
      raise ValueError("a TensorBoardWriter needs a logdir.")
    self.logdir = os.fspath(logdir)
    self._closed = False
    self._lock = threading.Lock()
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

  def _write(self, events: list[Any]) -> None:
    with self._lock:
      if self._closed:
        raise RuntimeError(f"TensorBoardWriter for {self.logdir!r} is closed.")
      for event in events:
        self._events.write_event(event)
      self._events.flush()  # to disk now: a killed run keeps what it logged

  def _write_summaries(self, step: int, summaries: list[Any]) -> None:
    proto = _tensorboardx().proto
    values = list(itertools.chain.from_iterable(s.value for s in summaries))
    self._write([proto.event_pb2.Event(wall_time=time.time(), step=int(step),
                                       summary=proto.summary_pb2.Summary(value=values))])

  def write_scalars(self, step: int, mapping: Mapping[str, Any]) -> None:
    """Non-finite values are written as they are."""
    floats = scalar_values(mapping)  # all converted first: a bad value writes nothing
    summary = _tensorboardx().summary
    self._write_summaries(step, [summary.scalar(k, v) for k, v in floats.items()])

  def write_images(self, step: int, mapping: Mapping[str, Any]) -> None:
    images = checked_images(mapping)
    summary = _tensorboardx().summary
    self._write_summaries(step, [summary.image(k, v, dataformats="HWC")
                                 for k, v in images.items()])

  def write_text(self, step: int, name: str, text: str) -> None:
    """A text entry (TensorBoard's Text tab shows it as ``<name>/text_summary``)."""
    self._write_summaries(step, [_tensorboardx().summary.text(str(name), str(text))])

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """The HParams tab's session start (values other than bool, number and str are
    written as text; None is left out)."""
    plain = {str(k): v if isinstance(v, (bool, int, float, str)) or v is None else str(v)
             for k, v in hparams.items()}
    experiment, start, end = _tensorboardx().summary.hparams(plain, {})
    del end  # a session that ends here would mark a running trainer as finished
    self._write_summaries(0, [experiment, start])

  def flush(self) -> None:
    """Nothing to do: every write is already on disk."""

  def close(self) -> None:
    """Closes the event file; closing twice is harmless."""
    with self._lock:
      if self._closed:
        return
      self._closed = True
      self._events.close()
