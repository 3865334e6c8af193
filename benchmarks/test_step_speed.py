"""Candidate-steps per second of one population step, every method side by side (speed is reported, never
asserted): ``pytest --benchmark-only benchmarks/``.

On CPU: K in {1, 16, 64, 256} (issue 2); on CUDA: K in {64, 256, 1024, 4096} (issue 3). Each test warms up
(torch.compile compiles there), then times rounds of steps over 8 rotating minibatches, with CUDA synchronized
at the end of every round. ``METAHP_BENCH_SECONDS`` sets the time spent per test (default 2)."""
import itertools
import os
import time

import pytest
import torch

from .common import METHODS, RESULTS, Case, make_batches, make_stepper, skip_reason, time_steps

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_CUDA = DEVICE == "cuda"
KS = (64, 256, 1024, 4096) if ON_CUDA else (1, 16, 64, 256)
REFERENCE_MAX_K = 64 if ON_CUDA else 256  # its Python loop costs ~0.4-1 ms per candidate and step
SECONDS = float(os.environ.get("METAHP_BENCH_SECONDS", "2"))
MIN_ROUND_S = 2e-3 if ON_CUDA else 0.0  # on CUDA a round runs enough steps to hide the final synchronize
WARMUP_STEPS = 3


def _skip(case: Case, method: str):
    """Why this (case, method) is not timed here, or None."""
    if method == "reference" and case.K > REFERENCE_MAX_K:
        return f"reference only up to K={REFERENCE_MAX_K} on {DEVICE}: its Python loop over candidates is too slow"
    if method == "torch.compile" and not ON_CUDA and (case.shape, case.optimizer, case.K) != ("digits", "sgd", 64):
        return "torch.compile on CPU only at digits K=64 (each new shape recompiles: 10-40 s measured on 2 cores)"
    return skip_reason(method, DEVICE)


CASES = [Case(shape, K) for shape in ("digits", "mnist") for K in KS]
CASES.append(Case("digits", 1024 if ON_CUDA else 64, "adamw"))
PARAMS = [pytest.param(c, m, id=f"{c.shape}-{c.optimizer}-K{c.K}-{m}") for c in CASES for m in METHODS]


@pytest.mark.parametrize("case,method", PARAMS)
def test_step(benchmark, case: Case, method: str):
    reason = _skip(case, method)
    if reason:
        pytest.skip(reason)
    t0 = time.perf_counter()
    stepper = make_stepper(method, case, DEVICE)
    batches = itertools.cycle(make_batches(case, DEVICE))
    time_steps(stepper, batches, DEVICE, WARMUP_STEPS)
    setup_s = time.perf_counter() - t0
    step_s = time_steps(stepper, batches, DEVICE, 2) / 2
    per_round = max(1, round(MIN_ROUND_S / step_s))
    rounds = int(min(200, max(3, SECONDS / (step_s * per_round))))

    benchmark.group = f"{case.shape} {'-'.join(map(str, case.layers))} {case.optimizer} K={case.K}"
    benchmark.pedantic(time_steps, args=(stepper, batches, DEVICE, per_round), rounds=rounds, warmup_rounds=1)
    stats = benchmark.stats.stats
    rates = {"cand_steps_per_s": case.K * per_round / stats.median,
             "cand_steps_per_s_best": case.K * per_round / stats.min}
    benchmark.extra_info.update(
        method=method, shape=case.shape, layers=list(case.layers), batch=case.batch, K=case.K,
        optimizer=case.optimizer, device=torch.cuda.get_device_name() if ON_CUDA else "cpu",
        steps_per_round=per_round, setup_and_warmup_s=setup_s, torch_threads=torch.get_num_threads(), **rates)
    RESULTS.append({"case": case, "method": method, **rates})
