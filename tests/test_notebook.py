"""examples/sagan_walkthrough.ipynb: committed without outputs, and runs top to bottom.

The notebook checks its own claims (every "max |difference|" line asserts its
tolerance), so executing it end to end is the test: any cell that raises fails
it. Execution needs ``nbclient``, ``nbformat`` and ``ipykernel`` (and
matplotlib, which the notebook plots with); without them that test skips.

The kernel runs in a temporary directory with the notebook's training workdir
(``SAGAN_WALKTHROUGH_WORKDIR``) inside it, so nothing is written to the
repository. Each cell may take up to ``SAGAN_NOTEBOOK_CELL_TIMEOUT`` seconds
(default 600; the slowest cell, the small training run, takes about a minute
on a 2-core CPU).
"""

import json
import os
import pathlib
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "sagan_walkthrough.ipynb"
CELL_TIMEOUT = int(os.environ.get("SAGAN_NOTEBOOK_CELL_TIMEOUT", "600"))


def test_notebook_is_committed_without_outputs():
  nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
  dirty = [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
           and (cell.get("outputs") or cell.get("execution_count") is not None)]
  assert not dirty, (
      f"code cells {dirty} of {NOTEBOOK.name} hold outputs or execution counts; strip them "
      "(e.g. `jupyter nbconvert --clear-output --inplace examples/sagan_walkthrough.ipynb`).")


def _without_device_count(flags: str) -> str:
  # conftest.py simulates 4 CPU devices for the multi-device tests; the notebook
  # should run as a user runs it, on the real device(s).
  return " ".join(f for f in flags.split()
                  if not f.startswith("--xla_force_host_platform_device_count"))


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
  nbformat = pytest.importorskip(
      "nbformat", reason="executing the notebook needs nbformat (pip install nbformat)")
  nbclient = pytest.importorskip(
      "nbclient", reason="executing the notebook needs nbclient (pip install nbclient)")
  pytest.importorskip(
      "ipykernel", reason="executing the notebook needs ipykernel (pip install ipykernel)")
  pytest.importorskip("matplotlib", reason="the notebook plots with matplotlib")

  # The kernel inherits this environment.
  monkeypatch.setenv("SAGAN_WALKTHROUGH_WORKDIR", str(tmp_path / "run"))
  # CI checks that every cell runs; a dozen steps exercise the same code as 40.
  monkeypatch.setenv("SAGAN_WALKTHROUGH_STEPS", os.environ.get("SAGAN_WALKTHROUGH_STEPS", "12"))
  monkeypatch.setenv("XLA_FLAGS", _without_device_count(os.environ.get("XLA_FLAGS", "")))
  # sagan_jax importable in the kernel even without `pip install -e .`.
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))

  nb = nbformat.read(str(NOTEBOOK), as_version=4)
  client = nbclient.NotebookClient(
      nb, timeout=CELL_TIMEOUT, kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}})  # the kernel's working directory
  start = time.perf_counter()
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as error:
    pytest.fail(f"a cell of {NOTEBOOK.name} raised:\n{error}", pytrace=False)
  elapsed = time.perf_counter() - start

  errors = [out for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]
  assert not errors, errors
  text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []))
  assert "max |difference|" in text  # the comparisons ran (and passed: they assert)
  # The small run trained (or loaded) a checkpoint in the temporary workdir.
  assert (tmp_path / "run" / "config.json").exists()
  print(f"{NOTEBOOK.name} ran in {elapsed:.0f} s")
