"""A workdir is a local path: a URL is refused in one line by the library and by every CLI,
and nothing is written (no local folder named ``gs:``)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from sagan_jax.runtime import workdir as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
URLS = ("gs://bucket/run", "s3://bucket/run", "file:///tmp/run")


@pytest.mark.parametrize("url", URLS)
def test_a_url_is_refused_before_anything_is_written(tmp_path, monkeypatch, url):
  monkeypatch.chdir(tmp_path)  # where os.makedirs("gs://…") would make "gs:"
  for use in (workdir_lib.require_local, workdir_lib.prepare, workdir_lib.load_config):
    with pytest.raises(workdir_lib.WorkdirError, match="is a URL.*gcsfuse"):
      use(url)
  assert list(tmp_path.iterdir()) == []


def test_paths_are_accepted(tmp_path):
  for path in ("runs/x", "/abs/runs", "C:\\runs\\x", "odd:name/run", str(tmp_path)):
    assert workdir_lib.require_local(path) == path


@pytest.mark.parametrize("command", [
    ["train.py", "--config", str(ROOT / "configs" / "tiny.py")],
    ["sample.py"],
    ["evaluate.py"],
], ids=lambda c: c[0])
def test_every_cli_refuses_a_url_workdir_in_one_line(tmp_path, command):
  proc = subprocess.run([sys.executable, str(ROOT / command[0]), *command[1:],
                         "--workdir", "gs://bucket/run"],  # timeout: reached only if it hangs
                        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 1, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: workdir gs://bucket/run is a URL") and "gcsfuse" in last
  assert "Traceback" not in proc.stderr
  assert list(tmp_path.iterdir()) == []
