"""Prints the suite's candidate-steps/s side by side, a column per method, after pytest-benchmark's tables,
with the load average before and after (other processes on the same cores distort CPU timings).
``METAHP_BENCH_THREADS`` sets torch's thread count."""
import os

import pytest
import torch

from .common import RESULTS, pivot_table
from .test_fit_speed import FIT_RESULTS


LOAD_AT_START = os.getloadavg()


def pytest_configure(config):
    # torch.compile's imports use torch.jit.script_method; not this suite's concern
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
    if os.environ.get("METAHP_BENCH_THREADS"):  # e.g. 1 on a machine shared with other jobs
        torch.set_num_threads(int(os.environ["METAHP_BENCH_THREADS"]))


def _load(v) -> str:
    return " ".join(f"{x:.2f}" for x in v)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        for value, what in (("cand_steps_per_s", "median round"), ("cand_steps_per_s_best", "best round")):
            terminalreporter.section(f"candidate-steps per second ({what})")
            terminalreporter.write_line(pivot_table(RESULTS, value))
    if FIT_RESULTS:
        terminalreporter.section("candidate-steps per second through Population.fit (median round)")
        terminalreporter.write_line(pivot_table(FIT_RESULTS, methods=("torch fit", "triton fit"),
                                                ratios=(("triton fit", "torch fit"),)))
    if RESULTS or FIT_RESULTS:
        terminalreporter.write_line(f"load average (1, 5, 15 min) at start {_load(LOAD_AT_START)}, "
                                    f"at end {_load(os.getloadavg())}; {os.cpu_count()} cores, "
                                    f"{torch.get_num_threads()} torch threads")
