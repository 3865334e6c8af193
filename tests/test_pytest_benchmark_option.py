"""`pytest --benchmark` runs the speed suites in benchmarks/; plain `pytest` runs only the tests."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "METAHP_BENCH_SECONDS": "0.05", "METAHP_BENCH_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_benchmark_option_collects_the_benchmark_suites_not_the_tests():
    out = _pytest("--benchmark", "--collect-only", "-q").stdout
    items = [line for line in out.splitlines() if "::" in line]
    assert items and all(line.startswith("benchmarks/") for line in items), out[-2000:]
    assert any(line.startswith("benchmarks/test_step_speed.py::") for line in items)


def test_plain_pytest_collects_no_benchmark():
    out = _pytest("--collect-only", "-q").stdout
    items = [line for line in out.splitlines() if "::" in line]
    assert items and not any(line.startswith("benchmarks/") for line in items)


def test_benchmark_option_runs_a_benchmark_and_reports_its_rate():
    r = _pytest("--benchmark", "-k", "digits-sgd-K16-torch]", "-q")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout and "candidate-steps per second" in r.stdout, r.stdout[-3000:]
