"""Candidate-steps per second of ``Population.fit`` (whole trainings, not single steps), torch and triton side
by side: on CUDA the triton backend trains spans of up to 250 steps per launch of its multi-step kernel for
models that fit in registers (digits 64-128-10), so this is where it differs most from ``test_step_speed.py``.
Speed is reported, never asserted: ``pytest --benchmark-only benchmarks/``.

On CPU: digits K in {16, 64}, 50 steps per fit, torch only; on CUDA: K in {64, 256, 1024, 4096}, 250 steps."""
import time

import pytest
import torch

from .common import Case, make_batches, make_population, skip_reason, sync

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_CUDA = DEVICE == "cuda"
KS = (64, 256, 1024, 4096) if ON_CUDA else (16, 64)
STEPS = 250 if ON_CUDA else 50
FIT_RESULTS: list[dict] = []  # printed side by side by conftest.py
PARAMS = [pytest.param(Case("digits", K), m, id=f"fit-digits-K{K}-{m}") for K in KS for m in ("torch", "triton")]


@pytest.mark.parametrize("case,method", PARAMS)
def test_fit(benchmark, case: Case, method: str):
    reason = skip_reason(method, DEVICE)
    if reason:
        pytest.skip(reason)
    pop = make_population(case, method, DEVICE)
    batches = make_batches(case, DEVICE)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])

    def fit() -> None:
        pop.fit(x, y, steps=STEPS, batch_size=case.batch, progress=False)
        sync(DEVICE)
    t0 = time.perf_counter()
    fit()  # warm-up: kernels compiled and loaded
    rounds = int(min(20, max(3, 2.0 / (time.perf_counter() - t0))))
    benchmark.group = f"fit {case.shape} {'-'.join(map(str, case.layers))} {case.optimizer} K={case.K}"
    benchmark.pedantic(fit, rounds=rounds, warmup_rounds=0)
    rate = case.K * STEPS / benchmark.stats.stats.median
    benchmark.extra_info.update(method=f"{method} fit", shape=case.shape, layers=list(case.layers), K=case.K,
                                batch=case.batch, steps=STEPS, optimizer=case.optimizer, cand_steps_per_s=rate,
                                device=torch.cuda.get_device_name() if ON_CUDA else "cpu")
    FIT_RESULTS.append({"case": case, "method": f"{method} fit", "cand_steps_per_s": rate})
