"""Regenerate tests/reference/fixtures/<case>.npz (every case, seed 0) and print their sizes.

    python -m tests.reference.make_fixtures          # from the repository root
    python tests/reference/make_fixtures.py [NAME ...]
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

if __package__ in (None, ""):  # run as a script: make `tests.reference` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from tests.reference.cases import CASES
    from tests.reference.fixtures import BASE_KEY, FIXTURE_DIR, SHARED_KEY, load_fixture
else:
    from .cases import CASES
    from .fixtures import BASE_KEY, FIXTURE_DIR, SHARED_KEY, load_fixture

SEED = 0

# fixture -> base fixture it borrows bit-identical arrays from (same seed => same init/inputs)
SHARE_FROM = {
    "chapter_models": "chapter_train_step",
    "chapter_train_step_non_saturating": "chapter_train_step",
}


def main(argv: list[str]) -> int:
    names = argv or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case(s): {unknown}; known: {list(CASES)}", file=sys.stderr)
        return 2
    # bases before the fixtures that borrow from them
    names = [n for n in names if n not in SHARE_FROM] + [n for n in names if n in SHARE_FROM]
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in names:
        fn, kwargs = CASES[name]
        rec = fn(SEED, **kwargs)
        for k, v in rec.items():
            assert isinstance(v, np.ndarray), k
            assert v.dtype in (np.float32, np.int64), (k, v.dtype)
        to_save = dict(rec)
        base_name = SHARE_FROM.get(name)
        if base_name is not None:
            base = load_fixture(base_name)  # written earlier in this run (CASES order) or before
            shared = sorted(
                k
                for k, v in rec.items()
                if k in base and base[k].dtype == v.dtype and np.array_equal(base[k], v)
            )
            for k in shared:
                del to_save[k]
            to_save[BASE_KEY] = np.asarray(base_name)
            to_save[SHARED_KEY] = np.asarray(shared, dtype=str)
        path = FIXTURE_DIR / f"{name}.npz"
        np.savez_compressed(path, **to_save)
        back = load_fixture(name)
        assert back.keys() == rec.keys() and all(
            np.array_equal(back[k], rec[k]) for k in rec
        ), f"{name}: fixture does not round-trip"
        size = path.stat().st_size
        total += size
        print(f"{path.name:45s} {size / 1024:8.1f} KiB  {len(rec):4d} keys")
    print(f"{'total':45s} {total / 1024:8.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
