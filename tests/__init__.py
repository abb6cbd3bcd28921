"""The test suite (tests/README.md: which tests cover which module, the fast tier)."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]  # the repository: configs/, train.py, …
