"""`WandbWriter`: a run's scalars, images and hyperparameters on Weights & Biases.

Needs ``pip install wandb`` (not a dependency of sagan-jax). ``wandb``'s own
environment decides where the values go: ``wandb login`` once, or
``WANDB_MODE=offline`` to keep them in ``<workdir>/wandb/`` for a later
``wandb sync``. The W&B run's id is kept in ``<workdir>/wandb_run_id``, so a
resumed training run continues the same W&B run.

Values are plotted against the training step through a custom step metric
(``step``), which accepts any order: a resumed run logs the steps after its
checkpoint again, and W&B (unlike TensorBoard) keeps both records of them.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Mapping, Optional

from sagan_jax.runtime.metric_writer import MetricWriter, checked_images, scalar_values

__all__ = ["RUN_ID_FILE", "WandbWriter", "wandb_installed"]

RUN_ID_FILE = "wandb_run_id"
STEP_METRIC = "step"


def wandb_installed() -> bool:
  """Whether ``import wandb`` would work (without importing it: ~1 s)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  return importlib.util.find_spec("wandb") is not None


def _run_id(workdir: str) -> str:
  """The workdir's W&B run id: read back on a resume, made on the first run."""
  path = os.path.join(workdir, RUN_ID_FILE)
  if os.path.exists(path):
    with open(path) as f:
      return f.read().strip()
  from sagan_jax.atomic_file import atomic_write  # pylint: disable=g-import-not-at-top
  run_id = uuid.uuid4().hex[:12]
  atomic_write(path, run_id.encode())
  return run_id


class WandbWriter(MetricWriter):
  """Logs to a W&B run named after the workdir.

  Args:
    workdir: the run's folder: its name names the W&B run, its id file keeps
      the run across resumes, and W&B's local files go to ``<workdir>/wandb``.
    project, entity: the W&B project and entity (None: W&B's default entity).

  Raises:
    ImportError: ``wandb`` is not installed (the message says so in one line).
  """

  def __init__(self, workdir: str | os.PathLike, *, project: str,
               entity: Optional[str] = None):
    try:
      import wandb  # pylint: disable=g-import-not-at-top  # optional
    except ImportError as error:
      raise ImportError("config.logging.writers names 'wandb' but wandb is not installed: "
                        "pip install wandb, or leave 'wandb' out") from error
    self._wandb = wandb
    self.workdir = os.fspath(workdir)
    os.makedirs(self.workdir, exist_ok=True)
    self.run = wandb.init(project=project, entity=entity,
                          name=os.path.basename(os.path.abspath(self.workdir)),
                          id=_run_id(self.workdir), resume="allow", dir=self.workdir,
                          reinit="create_new")
    self.run.define_metric(STEP_METRIC)
    self.run.define_metric("*", step_metric=STEP_METRIC)
    self._closed = False

  def _log(self, step: int, values: Mapping[str, Any]) -> None:
    if self._closed:
      raise RuntimeError(f"WandbWriter for {self.workdir!r} is closed.")
    self.run.log({**values, STEP_METRIC: int(step)})

  def write_scalars(self, step: int, mapping: Mapping[str, Any]) -> None:
    self._log(step, scalar_values(mapping))

  def write_images(self, step: int, mapping: Mapping[str, Any]) -> None:
    images = checked_images(mapping)
    self._log(step, {k: self._wandb.Image(v) for k, v in images.items()})

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """The W&B run's config (a rerun may change resumable fields such as ``num_steps``)."""
    self.run.config.update(dict(hparams), allow_val_change=True)

  def flush(self) -> None:
    """Nothing to ask: W&B sends in the background and `close` waits for it."""

  def close(self) -> None:
    if not self._closed:
      self._closed = True
      self.run.finish()
