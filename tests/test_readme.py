"""Every Python snippet in README.md runs as written (in a fresh namespace each)."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_snippets():
  assert SNIPPETS


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # snippets that write files write them here
  exec(compile(SNIPPETS[index], f"README.md python snippet {index}", "exec"), {})  # pylint: disable=exec-used
