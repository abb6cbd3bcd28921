"""`make_writer`: the one place a run's `MetricWriter` is built, from ``config.logging``.

The trainer and the evaluation both call it, so the training curves and the
evaluation scalars go to the same backends::

  writer = make_writer(workdir, config.logging, enabled=jax.process_index() == 0)
  writer.write_scalars(step, {"d_loss": ...})

``config.logging.writers`` names the backends (`WRITER_NAMES`): ``tensorboard``
(event files in the workdir), ``csv`` / ``jsonl`` (``metrics.csv`` /
``metrics.jsonl`` in the workdir), ``wandb`` (Weights & Biases, when installed;
``wandb_project``, ``wandb_entity``). Every process but the chief gets a
`NoOpWriter`: nothing is written, no file is touched, no W&B run is started.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional

from sagan_jax.runtime.metric_writer import MetricWriter, MultiWriter, NoOpWriter
from sagan_jax.runtime.scalar_file_writers import CsvWriter, JsonlWriter
from sagan_jax.runtime.tensorboard_writer import TensorBoardWriter
from sagan_jax.runtime.wandb_writer import WandbWriter

__all__ = ["WRITER_NAMES", "make_writer"]


def _wandb(workdir: str, logging: Mapping[str, Any], resume_step: Optional[int]) -> MetricWriter:
  del resume_step  # W&B keeps every record (see wandb_writer)
  return WandbWriter(workdir, project=logging["wandb_project"],
                     entity=logging.get("wandb_entity"))


_BUILDERS: dict[str, Callable[[str, Mapping[str, Any], Optional[int]], MetricWriter]] = {
    "tensorboard": lambda workdir, _, resume_step: TensorBoardWriter(
        workdir, resume_step=resume_step),
    "csv": lambda workdir, _, resume_step: CsvWriter(workdir, resume_step=resume_step),
    "jsonl": lambda workdir, _, resume_step: JsonlWriter(workdir, resume_step=resume_step),
    "wandb": _wandb,
}
WRITER_NAMES = tuple(_BUILDERS)


def make_writer(workdir: str | os.PathLike, logging: Mapping[str, Any], *,
                enabled: bool = True, resume_step: Optional[int] = None) -> MetricWriter:
  """The writer of ``logging["writers"]`` for ``workdir`` (one backend, or a `MultiWriter`).

  Args:
    workdir: the run's folder.
    logging: ``config.logging`` (``writers``, ``wandb_project``, ``wandb_entity``).
    enabled: False (processes other than 0): a `NoOpWriter`.
    resume_step: the checkpoint step a training run resumes from: what an
      interrupted run logged after it is dropped where the backend allows.

  Raises:
    ValueError: an unknown writer name (the message names the choices).
    ImportError: ``wandb`` is named but not installed.
  """
  names = tuple(logging["writers"])
  unknown = [name for name in names if name not in _BUILDERS]
  if unknown:
    raise ValueError(f"unknown metric writer {unknown[0]!r}: choose from {list(WRITER_NAMES)}")
  if not enabled or not names:
    return NoOpWriter()
  workdir = os.fspath(workdir)
  built: list[MetricWriter] = []
  try:
    for name in dict.fromkeys(names):  # each once, in the order given
      built.append(_BUILDERS[name](workdir, logging, resume_step))
  except BaseException:
    MultiWriter(built).close()
    raise
  return built[0] if len(built) == 1 else MultiWriter(built)
