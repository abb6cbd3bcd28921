"""The package's floors: imports only go downward, and importing sagan_jax is light.

* The import-linter contract in pyproject.toml (`lint-imports`, also run by
  .ci/run): ops → layers → models | data | losses | viz → interop → train | eval |
  runtime → runs, each floor importing only from those below it.
* Importing any module of the package imports neither PyTorch nor TensorFlow
  (optional, heavy: only the functions that need them import them) nor a
  command-line script.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY_OR_CLI = ("torch", "tensorflow", "tensorflow_datasets", "train", "sample", "evaluate")

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import sagan_jax
names = sorted(m.name for m in pkgutil.walk_packages(sagan_jax.__path__, "sagan_jax."))
for name in names:
  importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
"""


def test_importing_every_module_loads_no_torch_tensorflow_or_cli():
  result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert "sagan_jax.runs.training" in out["modules"] and "sagan_jax.ops" in out["modules"]
  loaded = set(out["loaded"])
  assert not [m for m in HEAVY_OR_CLI if m in loaded]


def test_floors_import_only_downward():
  lint_imports = shutil.which("lint-imports")
  if lint_imports is None:
    pytest.skip("import-linter is not installed (pip install -e '.[test]')")
  result = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert " 0 broken" in result.stdout
