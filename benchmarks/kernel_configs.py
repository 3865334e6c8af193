"""Every configuration of the fused one-hidden-layer kernel, one by one, at the issue's target cases: checked
against the torch backend's maths after one step, then timed alone (no autotuner). The table behind
``kernels.fused_mlp.CONFIGS``: which configurations to keep and which the autotuner picks.

    python3 -m benchmarks.kernel_configs --out DIR     # about a minute on an H200
    TRITON_INTERPRET=1 python -m benchmarks.kernel_configs --quick --out /tmp   # smoke run on the CPU

Writes ``kernel_configs.json`` and ``kernel_configs.md`` to ``--out`` (else ``$OUT``, else the current folder).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import triton  # noqa: E402

from benchmarks.common import Case, make_batches, make_population  # noqa: E402
from benchmarks.roofline import measure_bandwidth, step_cost  # noqa: E402
from metahp_fast.backends.torch_backend import functional_step  # noqa: E402
from metahp_fast.backends.triton_backend import STATE_NAMES, _kernel_hparams  # noqa: E402
from metahp_fast.kernels import fused_mlp  # noqa: E402

CASES = [Case("digits", 4096), Case("mnist", 1024), Case("digits", 4096, "adamw"), Case("mnist", 1024, "adamw"),
         Case("digits", 64)]
#: Configurations tried besides CONFIGS, to see whether they would earn a place: the two with ``maxnreg=128``
#: fit two programs per SM (96-104 KB of shared memory each at the MNIST shape) at the price of ~900 bytes of
#: register spills per thread (ptxas, Triton 3.6): occupancy against local-memory traffic, not yet measured.
EXTRA = [
    triton.Config({"BLOCK_D": 64, "TMA": True, "STAGES2": 2}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_D": 16, "TMA": True, "STAGES2": 4}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_D": 16, "TMA": True, "STAGES2": 2}, num_warps=8, num_stages=2, maxnreg=128),
    triton.Config({"BLOCK_D": 16, "TMA": False, "STAGES2": 1}, num_warps=8, num_stages=2, maxnreg=128),
]


def name(cfg: triton.Config) -> str:
    """A configuration's short label, e.g. ``D32-tma3-w8-s4`` (BLOCK_D, pass-2 path and depth, warps, stages)."""
    kw = cfg.kwargs
    return (f"D{kw['BLOCK_D']}-{'tma' + str(kw['STAGES2']) if kw['TMA'] else 'ptr'}-w{cfg.num_warps}"
            f"-s{cfg.num_stages}" + (f"-r{cfg.maxnreg}" if cfg.maxnreg else ""))


def _seconds(fn, device: str) -> float:
    """Wall seconds of ``fn()`` (CUDA events on CUDA)."""
    if device != "cuda":
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0.record()
    fn()
    t1.record()
    t1.synchronize()
    return t0.elapsed_time(t1) / 1e3


def run_case(case: Case, configs: list, bandwidth: float, device: str = "cuda", steps: int = 50) -> list[dict]:
    """One row per configuration: relative error of the parameters after one step against the torch
    backend's maths (fp32 products), and the median step time over ``steps`` steps."""
    pop = make_population(case, "triton", device)
    s = pop._state
    x, y = make_batches(case, device, n=1)[0]
    hp = _kernel_hparams(s, None)
    names = STATE_NAMES[case.optimizer]
    torch.backends.cuda.matmul.allow_tf32 = False
    want = functional_step([p.clone() for p in s.params], {k: [t.clone() for t in v] for k, v in s.opt_state.items()},
                           s.step_count.clone(), s.hparams, s.alive.clone(), x, y, s.spec)[1]
    cost = step_cost(case.layers, case.batch, case.K, case.optimizer)
    rows = []
    for cfg in configs:
        row = {"case": case.name, "config": name(cfg)}
        try:
            params = [p.clone() for p in s.params]
            st = {k: [t.clone() for t in v] for k, v in s.opt_state.items()}
            steps_t, alive = s.step_count.clone(), s.alive.clone()

            def step():
                return fused_mlp.fused_mlp_step(x, y, params, st[names[0]], st.get("exp_avg_sq"), hp, steps_t, alive,
                                                adamw=case.optimizer == "adamw", precision="tf32", config=cfg)
            step()
            row["rel_err"] = max(((a - b).norm() / b.norm()).item() for a, b in zip(params, want))
            for _ in range(min(5, steps)):
                step()
            times = sorted(_seconds(step, device) for _ in range(steps))
            t = times[len(times) // 2]
            row.update(step_us=t * 1e6, roofline=cost.bytes / bandwidth / t, ok=row["rel_err"] < 1e-2)
        except Exception as e:  # noqa: BLE001 - out of shared memory etc.: record and go on
            row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true", help="tiny cases, 2 steps, on the CPU: a smoke run")
    a = ap.parse_args()
    out = a.out or os.environ.get("OUT") or "."
    device = "cpu" if a.quick else "cuda"
    cases = [Case("digits", 4, layers=(37, 52, 7), batch=29), Case("digits", 4, "adamw", layers=(37, 52, 7),
                                                                     batch=29)] if a.quick else CASES
    bw = measure_bandwidth(device)
    configs = [fused_mlp.INTERPRETER_CONFIG, *fused_mlp.CONFIGS[:1]] if a.quick else fused_mlp.CONFIGS + EXTRA
    rows = []
    for case in cases:
        rows += run_case(case, configs, bw, device, steps=2 if a.quick else 50)
    os.makedirs(out, exist_ok=True)
    head = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__, "triton": triton.__version__,
            "copy_GBps": bw / 1e9, "command": "python3 -m benchmarks.kernel_configs"}
    with open(os.path.join(out, "kernel_configs.json"), "w") as f:
        json.dump({**head, "rows": rows}, f, indent=1)
    lines = [f"# Fused kernel configurations: {head['device']}", "",
             f"torch {head['torch']}, triton {head['triton']}, copy bandwidth {bw / 1e9:,.0f} GB/s. "
             f"Command: `{head['command']}`. Median of 50 steps, tf32; error: max relative norm error of the "
             "parameters after one step against the torch backend in fp32.", "",
             "| case | " + " | ".join(name(c) for c in configs) + " |", "|---|" + "---|" * len(configs)]
    for case in cases:
        cells = []
        for cfg in configs:
            r = next(r for r in rows if r["case"] == case.name and r["config"] == name(cfg))
            cells.append(f"{r['step_us']:.0f} us ({100 * r['roofline']:.0f}%, err {r['rel_err']:.0e})"
                         if "step_us" in r else "error")
        lines.append(f"| {case.name} | " + " | ".join(cells) + " |")
    with open(os.path.join(out, "kernel_configs.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
