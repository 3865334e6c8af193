"""Every snippet in the README runs as written: the quick start's `metahp-fast`, then each Python block in
order, in one namespace, in a fresh directory (so `tune-out/best.pt` is the one the quick start wrote)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_command_quick_start():
    first = _blocks("bash")[0].strip().splitlines()
    assert len(first) == 2 and first[0].endswith("metahp-fast") and first[1].endswith("pytest")
    assert all("torch==2.13.0" in line for line in first)


def test_every_python_snippet_runs_after_the_quick_start(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    exe = shutil.which("metahp-fast") or pytest.skip("the metahp-fast command is not installed")
    r = subprocess.run([exe], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (tmp_path / "tune-out" / "best.pt").is_file()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    blocks = _blocks("python")
    assert len(blocks) >= 3
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"README.md python block {i}", "exec"), namespace)
        except Exception as e:  # noqa: BLE001 - name the block that failed
            raise AssertionError(f"README python block {i} failed: {type(e).__name__}: {e}\n{code}") from e
