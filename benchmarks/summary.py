"""The one table of a benchmark session: rows added by the benchmarks, printed at the end.

    python benchmarks/summary.py add FILE "what" OURS REFERENCE UNIT higher|lower [NOTE]
    python benchmarks/summary.py table FILE

Each row is one JSON line (``what``, ``ours``, ``reference``, ``unit``, which way is better,
a note); ``REFERENCE`` may be ``-`` (nothing to compare with). The table prints the ratio
oriented so that > 1 means ours is better (reference/ours for times, ours/reference for
rates). benchmarks/gpu.sh collects its rows here; the benchmarks' ``--summary FILE`` option
appends theirs through `add_row`.
"""

from __future__ import annotations

import json
import sys
from typing import Optional


def add_row(path: str, what: str, ours: float, reference: Optional[float], unit: str,
            better: str, note: str = "") -> None:
  """Appends one row to the JSON-lines file ``path``."""
  if better not in ("higher", "lower"):
    raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
  row = {"what": what, "ours": ours, "reference": reference, "unit": unit, "better": better,
         "note": note}
  with open(path, "a", encoding="utf-8") as file:
    file.write(json.dumps(row) + "\n")


def ratio(row: dict) -> Optional[float]:
  """> 1 when ours is better, None without a reference."""
  ours, reference = row["ours"], row["reference"]
  if reference is None or not ours or not reference:
    return None
  return reference / ours if row["better"] == "lower" else ours / reference


def table(path: str) -> str:
  with open(path, encoding="utf-8") as file:
    rows = [json.loads(line) for line in file if line.strip()]
  width = max([len(r["what"]) for r in rows] + [4])
  lines = [f"{'what':<{width}} | {'ours':>10} | {'reference':>10} | {'unit':<8} | "
           f"{'ratio':>6} | note", "-" * (width + 60)]
  for row in rows:
    r = ratio(row)
    ref = f"{row['reference']:10.2f}" if row["reference"] is not None else f"{'-':>10}"
    lines.append(f"{row['what']:<{width}} | {row['ours']:10.2f} | {ref} | {row['unit']:<8} | "
                 f"{(f'{r:5.2f}x' if r else '-'):>6} | {row['note']}")
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  usage = __doc__.split("\n\n")[1]
  if len(argv) >= 2 and argv[0] == "table":
    print(table(argv[1]))
    return 0
  if len(argv) in (7, 8) and argv[0] == "add":
    _, path, what, ours, reference, unit, better, *note = argv
    add_row(path, what, float(ours), None if reference == "-" else float(reference), unit,
            better, note[0] if note else "")
    return 0
  print(f"usage:\n{usage}", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
