"""Load the committed PyTorch reference fixtures (numpy only; torch not needed)."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np

__all__ = ["FIXTURE_DIR", "fixture_names", "load_fixture", "torch_available"]

FIXTURE_DIR = pathlib.Path(__file__).resolve().parent / "fixtures"


def fixture_names() -> list[str]:
    """Names of the committed fixtures (file stems), sorted."""
    return sorted(p.stem for p in FIXTURE_DIR.glob("*.npz"))


# Meta keys: a fixture may leave out arrays that are bit-identical to the same key in another
# fixture (e.g. the seed-0 initial G/D states, shared by all chapter fixtures); it then names
# that fixture in BASE_KEY and the borrowed keys in SHARED_KEY, and load_fixture puts them back.
BASE_KEY = "__base__"
SHARED_KEY = "__shared__"


def _load_raw(name: str) -> dict[str, np.ndarray]:
    path = FIXTURE_DIR / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"no fixture {name!r} in {FIXTURE_DIR} (have: {fixture_names()})")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_fixture(name: str) -> dict[str, np.ndarray]:
    """`fixtures/<name>.npz` as a plain dict of arrays (keys documented in README.md).

    Equal, key for key and bit for bit, to what the case function returns for seed 0
    with the kwargs make_fixtures.py uses (shared arrays are restored from the base fixture).
    """
    raw = _load_raw(name)
    base_name = raw.pop(BASE_KEY, None)
    shared = raw.pop(SHARED_KEY, None)
    if base_name is not None:
        base = load_fixture(str(base_name))
        for k in shared.tolist():
            raw[k] = base[k]
    return raw


def torch_available() -> bool:
    """True when torch can be imported (the live cross-checks and make_fixtures need it)."""
    if importlib.util.find_spec("torch") is None:
        return False
    try:
        import torch  # noqa: F401
    except Exception:  # a broken install counts as unavailable
        return False
    return True
