"""Test set-up, the fixtures several test files share, and each file's floor and tier.

* Four simulated CPU devices (unless XLA_FLAGS says otherwise), so the
  multi-device tests can build 1-, 2- and 4-device meshes in one process. This
  must happen before jax is imported.
* float32 matmuls at full precision, so parity is not at the mercy of a
  backend's default (TF32/bf16 passes on some accelerators).
* Every test is marked with the floor of the package it tests (``FLOORS``:
  ``pytest -m layers``), and the files that train, start processes or a browser
  are marked ``slow`` (``SLOW``): ``pytest -m "not slow"`` is the fast tier
  (tests/README.md).

Shared helpers that are not fixtures live in helper modules beside this file
(tiny_configs.py, run_checks.py, compilation.py, subprocesses.py, parity.py);
test files import those, never each other.
"""

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=4").strip()

# pylint: disable=wrong-import-position
import shutil  # noqa: E402

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

from sagan_jax.runs import training as loop  # noqa: E402
from sagan_jax.train.checkpoint import Checkpointer  # noqa: E402
from tests.compilation import one_device_and_compilation_cache  # noqa: E402
from tests.subprocesses import subprocess_env  # noqa: E402
from tests.tiny_configs import tiny_config  # noqa: E402

# --------------------------------------------------------------------------- floors and tiers

# Test file → the floor of sagan_jax it tests (README "Layout"; pyproject.toml registers
# the markers). A file that tests several floors is filed under the highest one it needs.
FLOORS = {
    "test_compiler_options.py": "ops",
    "test_convolution.py": "ops",
    "test_upsample_convolution.py": "ops",
    "test_pooling.py": "ops",
    "test_pooled_convolution.py": "ops",
    "test_attention_efficient.py": "ops",
    "test_attention_parity.py": "layers",
    "test_spectral_norm_parity.py": "layers",
    "test_spectral_norm_wrapper.py": "layers",
    "test_flax_conventions.py": "layers",
    "test_nnx_bridge.py": "layers",
    "test_forward_mode.py": "models",
    "test_models_parity.py": "models",
    "test_resnet_parity.py": "models",
    "test_data.py": "data",
    "test_conditional_data.py": "data",
    "test_viz.py": "viz",
    "test_train_step_parity.py": "train",
    "test_configs.py": "train",
    "test_eval_metrics.py": "eval",
    "test_eval_honesty.py": "eval",
    "test_eval_shares.py": "eval",
    "test_inception.py": "eval",
    "test_inception_parity.py": "eval",
    "test_reference_stats.py": "eval",
    "test_torch_file.py": "interop",
    "test_to_torch.py": "interop",
    "test_studiogan_files.py": "interop",
    "test_metric_writer.py": "runtime",
    "test_compilation_cache.py": "runtime",
    "test_workdir_lock.py": "runtime",
    "test_stop_signals.py": "runtime",
    "test_workdir.py": "runtime",
    "test_train_loop.py": "runs",
    "test_cadence.py": "runs",
    "test_stop_while_compiling.py": "runs",
    "test_paper_recipe.py": "runs",
    "test_checkpoint_recovery.py": "runs",
    "test_best_checkpoint.py": "runs",
    "test_counts_and_memory.py": "runs",
    "test_tensorboard.py": "runs",
    "test_multi_device.py": "runs",
    "test_multi_process.py": "runs",
    "test_resnet_run.py": "runs",
    "test_evaluate.py": "runs",
    "test_explorer.py": "runs",
    "test_sample_files.py": "runs",
    "test_cli.py": "cli",
    "test_run_failures_cli.py": "cli",
    "test_user_errors.py": "cli",
    "test_imports.py": "project",
    "test_readme.py": "project",
    "test_notebook.py": "project",
    "test_reference_selfcheck.py": "project",  # tests/reference/: the PyTorch reference itself
}

# Files whose tests are slow: they train runs, start processes or a browser (measured:
# tests/README.md "Fast tier"). Their tests that take ``no_compute`` stay in the fast tier:
# that fixture fails a test as soon as it starts computing.
SLOW = {
    # trained runs, in process
    "test_train_loop.py", "test_checkpoint_recovery.py", "test_best_checkpoint.py",
    "test_counts_and_memory.py", "test_tensorboard.py", "test_stop_signals.py",
    "test_workdir_lock.py", "test_multi_device.py", "test_resnet_run.py", "test_evaluate.py",
    "test_paper_recipe.py", "test_sample_files.py", "test_stop_while_compiling.py",
    # processes: the CLIs, two-process runs, the notebook's kernel, a browser
    "test_cli.py", "test_run_failures_cli.py", "test_user_errors.py", "test_multi_process.py",
    "test_notebook.py", "test_explorer.py", "test_studiogan_files.py",
}


# Single tests of the fast floors that take 20–40 s each on a quiet 2-core machine
# (`--durations`, load ~2: the fast tier took 6:49 with them, over its 5 minutes): the
# 128-px and the fixture's 64-px ResNet parity (the 32-px cases stay) and its label checks,
# the chapter models' all-modes shape check and forward-mode check, the export's reference
# round trip. CI runs them all.
SLOW_TESTS = (
    "test_resnet_parity.py::test_resnet_train_steps_match_torch[fixture-resnet_train_step128]",
    "test_resnet_parity.py::test_resnet_train_steps_match_torch[live-resnet_train_step128]",
    "test_resnet_parity.py::test_resnet_models_match_torch[fixture-resnet_models_cond128]",
    "test_resnet_parity.py::test_resnet_models_match_torch[live-resnet_models_cond128]",
    "test_resnet_parity.py::test_resnet_models_match_torch[fixture-resnet_models_uncond64]",
    "test_resnet_parity.py::test_models_check_labels_and_shapes",
    "test_models_parity.py::test_output_shapes_and_modes",
    "test_forward_mode.py::test_models_jvp_and_linearize_match_reference_paths[False]",
    "test_forward_mode.py::test_models_jvp_and_linearize_match_reference_paths[True]",
    "test_to_torch.py::test_reference_models_load_the_export_and_compute_ours",
)


def pytest_collection_modifyitems(config, items):
  del config  # unused
  for item in items:
    name = item.path.name
    if name not in FLOORS:
      raise pytest.UsageError(
          f"tests/{name} has no floor: add it to FLOORS in tests/conftest.py "
          "(and to the table in tests/README.md)")
    item.add_marker(getattr(pytest.mark, FLOORS[name]))
    if name in SLOW and "no_compute" not in getattr(item, "fixturenames", ()):
      item.add_marker(pytest.mark.slow)
    elif item.nodeid.split("/")[-1] in SLOW_TESTS:
      item.add_marker(pytest.mark.slow)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def one_device_with_compilation_cache(tmp_path_factory):
  """For a whole test file (``pytestmark = pytest.mark.usefixtures(...)``): trainers on
  one device, compiled programs in the session's cache (tests/compilation.py)."""
  with one_device_and_compilation_cache(tmp_path_factory):
    yield


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished 4-step run of ``tiny_config()``, one per test file: (workdir, config,
  returned state)."""
  workdir = tmp_path_factory.mktemp("finished")
  config = tiny_config()
  state = jax.device_get(loop.train_and_evaluate(config, str(workdir)))
  return workdir, config, state


@pytest.fixture
def finished_copy(finished_run, tmp_path):
  """A private copy (times preserved) of the finished run's workdir."""
  workdir, config, state = finished_run
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  return copy, config, state


@pytest.fixture
def no_compute(monkeypatch):
  """Fails the test if the trainer starts initialising or restoring a state."""

  def refuse(*args, **kwargs):
    raise AssertionError("compute started before the error")

  monkeypatch.setattr(loop.Trainer, "init_state", refuse)
  monkeypatch.setattr(Checkpointer, "restore", refuse)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """The environment of ``train.py`` / ``sample.py`` subprocesses (tests/subprocesses.py)."""
  return subprocess_env(tmp_path_factory)
