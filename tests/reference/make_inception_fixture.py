"""Regenerate tests/reference/fixtures/inception_pytorch_fid.npz from pytorch-fid 0.3.0.

    python -m tests.reference.make_inception_fixture     # from the repository root

Needs torch, torchvision and pytorch-fid (the `test` extra). Seed `SEED` of
`inception_reference`: random weights with the real file's keys, two sets of 10 images
(32×32 and 64×64), pytorch-fid's pool3 and softmax of every image and its FID between the
sets over all 2048 features (scipy's ``sqrtm`` of a 2048² matrix: a few minutes on 2 cores).
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

if __package__ in (None, ""):  # run as a script: make `tests.reference` importable
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.reference.fixtures import FIXTURE_DIR  # noqa: E402
from tests.reference.inception_reference import SEED  # noqa: E402
from tests.reference.pytorch_fid_reference import case_pytorch_fid  # noqa: E402

NAME = "inception_pytorch_fid"


def main() -> int:
  start = time.monotonic()
  record = case_pytorch_fid(SEED)
  path = FIXTURE_DIR / f"{NAME}.npz"
  np.savez_compressed(path, **record)
  print(f"{path.name}: {path.stat().st_size / 1024:.1f} KiB, {len(record)} keys, "
        f"FID {float(record['fid']):.6f}, {time.monotonic() - start:.0f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
