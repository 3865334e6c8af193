"""Smoke runs of the prepared GPU scripts on the CPU, so that they cannot rot between the rare sessions with a
GPU: ``benchmarks.gpu_check --quick`` (every section, tiny sizes) and ``benchmarks.kernel_configs --quick``
(the fused kernel's configurations under the interpreter). Numbers are not checked, only that every part
ran and wrote its report."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], tmp_path: Path, timeout: int = 600) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", *args, "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_gpu_check_quick_runs_every_section_on_cpu(tmp_path):
    _run(["benchmarks.gpu_check", "--device", "cpu", "--quick"], tmp_path)
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert not data["errors"], data["errors"]
    assert set(data["section_s"]) == {"check", "dropout", "device", "timing", "thousand"}
    assert any(r["status"] == "ok" for r in data["check"])
    dropout = [r for r in data["check"] if r["case"].startswith("dropout")]
    ran = [r for r in dropout if r["status"] == "ok"]  # triton's rows need the triton package (the interpreter)
    assert len(dropout) == 6 and len(ran) >= 2 and all(r["param_rel_err"] < 1e-4 for r in ran), dropout
    assert all(r["status"] == "ok" or r["status"].startswith("skipped") for r in dropout), dropout
    assert any(r["status"] == "ok" and r["method"] == "torch" for r in data["timing"])
    assert "## Candidate-steps per second" in (tmp_path / "gpu_check.md").read_text()


def test_kernel_configs_quick_checks_each_configuration(tmp_path):
    pytest.importorskip("triton")
    _run(["benchmarks.kernel_configs", "--quick"], tmp_path)
    rows = json.loads((tmp_path / "kernel_configs.json").read_text())["rows"]
    assert rows and all("error" not in r for r in rows), rows
    assert all(r["rel_err"] < 1e-4 for r in rows)  # the interpreter computes tf32 dots in full fp32
    from benchmarks.kernel_configs import name
    from metahp_fast.kernels import fused_mlp
    assert {r["config"] for r in rows} == {name(fused_mlp.INTERPRETER_CONFIG), name(fused_mlp.CONFIGS[0])}


def test_workspace_speed_measures_both_variants(capsys, monkeypatch):
    """``benchmarks/workspace_speed.py``'s child measurement (the parent only starts children and tabulates)."""
    from benchmarks.workspace_speed import main
    for reuse in ("0", "1"):
        assert main(["--one", "digits", "sgd", "3", reuse, "--rounds", "2", "--threads", "1"]) == 0
        times = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert len(times) == 2 and all(t > 0 for t in times)
    # the two variants differ as the script says: one steps through a workspace, the other allocates afresh
    import benchmarks.workspace_speed as ws_speed
    from benchmarks.common import Case, make_batches, make_population
    made = []
    real = ws_speed.Workspace
    monkeypatch.setattr(ws_speed, "Workspace", lambda: made.append(real()) or made[-1])
    case = Case("digits", 3)
    x, y = make_batches(case, "cpu", n=1)[0]
    for reuse in (False, True):
        ws_speed.stepper(make_population(case, "torch", "cpu"), reuse)(x, y)
    assert len(made) == 1 and made[0]._buffers  # only the reuse variant made one, and its step filled it


@pytest.mark.parametrize("script", ["build_metadataset", "dropout_speed", "gpu_check", "kernel_configs", "meta_eval",
                                    "meta_headroom", "meta_train", "optuna_batch_size", "optuna_speed",
                                    "profile_fused", "quality", "realworld", "roofline", "scaling", "selection_floor",
                                    "sklearn_table", "step_before_after", "step_bound", "train_portfolio",
                                    "workspace_speed"])
def test_every_script_runs_as_a_file_and_as_a_module(script):
    """``python benchmarks/X.py --help`` and ``python -m benchmarks.X --help`` both work (roofline's relative
    imports once failed as a file)."""
    for cmd in ([sys.executable, f"benchmarks/{script}.py", "--help"], [sys.executable, "-m", f"benchmarks.{script}",
                                                                         "--help"]):
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]
