"""Every configuration of the fused one-hidden-layer kernel, one by one, at the issue's target cases: checked
against the torch backend's maths after one step, then timed alone (no autotuner). The table behind
``kernels.fused_mlp.CONFIGS``: which configurations to keep and which the autotuner picks. The same for the
multi-step kernel (``kernels.fused_mlp_multistep.CONFIGS``): checked after 20 steps, timed over 1000 steps
in one launch, at digits K=4096.

    python3 -m benchmarks.kernel_configs --out DIR     # about a minute on an H200
    TRITON_INTERPRET=1 python -m benchmarks.kernel_configs --quick --out /tmp   # smoke run on the CPU

Writes ``kernel_configs.json`` and ``kernel_configs.md`` to ``--out`` (else ``$OUT``, else the current folder).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import triton  # noqa: E402

from benchmarks.common import Case, make_batches, make_population  # noqa: E402
from benchmarks.roofline import measure_bandwidth, step_cost  # noqa: E402
from metahp_fast.backends.torch_backend import functional_step  # noqa: E402
from metahp_fast.backends.triton_backend import _kernel_hparams  # noqa: E402
from metahp_fast.kernels import fused_mlp, fused_mlp_multistep  # noqa: E402
from metahp_fast.optimizers import OPTIMIZERS  # noqa: E402

CASES = [Case("digits", 4096), Case("mnist", 1024), Case("digits", 4096, "adamw"), Case("mnist", 1024, "adamw"),
         Case("digits", 64)]
#: Cases of the multi-step kernel (models small enough to stay on chip).
MULTISTEP_CASES = [Case("digits", 4096), Case("digits", 4096, "adamw")]
#: Configurations tried besides CONFIGS, to see whether they would earn a place (without --focus). Measured and
#: dropped since: two ``maxnreg=128`` ones (H100, 2026-11: MNIST 1242 and 1377 us against 1160 us).
EXTRA = [
    triton.Config({"BLOCK_D": 64, "TMA": True, "STAGES2": 2}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_D": 16, "TMA": True, "STAGES2": 4}, num_warps=8, num_stages=3),
]


def name(cfg: triton.Config) -> str:
    """A configuration's short label, e.g. ``D32-tma3-w8-s4`` (BLOCK_D, pass-2 path and depth, warps, stages;
    ``-bw``: pass 2 walks backwards)."""
    kw = cfg.kwargs
    return (f"D{kw['BLOCK_D']}-{'tma' + str(kw['STAGES2']) if kw['TMA'] else 'ptr'}-w{cfg.num_warps}"
            f"-s{cfg.num_stages}" + (f"-r{cfg.maxnreg}" if cfg.maxnreg else "")
            + ("-bw" if kw.get("BACKWARD2") else ""))


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
    names = OPTIMIZERS[case.optimizer].state_names
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


def multistep_name(cfg: triton.Config) -> str:
    """A multi-step configuration's short label, e.g. ``C32-w4-s1`` (batch rows per chunk, warps, stages),
    ``-r128`` for a register cap."""
    return f"C{cfg.kwargs['CHUNK']}-w{cfg.num_warps}-s{cfg.num_stages}" + (f"-r{cfg.maxnreg}" if cfg.maxnreg else "")


def run_multistep_case(case: Case, configs: list, device: str = "cuda", steps: int = 1000,
                       check_steps: int = 20, reps: int = 3) -> list[dict]:
    """One row per multi-step configuration: relative error of the parameters after ``check_steps`` steps in
    one launch against as many steps of the torch backend's maths (fp32 products), and the median wall time
    of ``steps`` steps in one launch over ``reps`` launches."""
    pop = make_population(case, "triton", device)
    s = pop._state
    batches = make_batches(case, device, n=8)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    gen = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(len(x), generator=gen)[:case.batch] for _ in range(steps)]).to(device)
    hp = _kernel_hparams(s, None)
    names = OPTIMIZERS[case.optimizer].state_names
    torch.backends.cuda.matmul.allow_tf32 = False
    want = ([p.clone() for p in s.params], {k: [t.clone() for t in v] for k, v in s.opt_state.items()},
            s.step_count.clone(), s.alive.clone())
    for i in idx[:check_steps]:
        _, p, st, sc, al = functional_step(want[0], want[1], want[2], s.hparams, want[3], x[i], y[i], s.spec)
        want = (p, st, sc, al)
    rows = []
    for cfg in configs:
        row = {"case": case.name, "config": multistep_name(cfg), "kernel": "multistep", "steps": steps}
        try:
            params = [p.clone() for p in s.params]
            st = {k: [t.clone() for t in v] for k, v in s.opt_state.items()}
            steps_t, alive = s.step_count.clone(), s.alive.clone()

            def run(n):
                return fused_mlp_multistep.fused_mlp_steps(
                    x, y, idx[:n], params, st[names[0]], st.get("exp_avg_sq"), hp, steps_t, alive,
                    adamw=case.optimizer == "adamw", precision="tf32", config=cfg)
            run(check_steps)
            row["rel_err"] = max(((a - b).norm() / b.norm()).item() for a, b in zip(params, want[0]))
            times = sorted(_seconds(lambda: run(steps), device) for _ in range(reps))
            t = times[len(times) // 2]
            row.update(run_s=t, step_us=t / steps * 1e6, ok=row["rel_err"] < 1e-2)
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def multistep_isolated(case_index: int, config_index: int, quick: bool) -> dict:
    """:func:`run_multistep_case` for one case and configuration in a child process, so that a configuration
    that faults (an illegal address poisons the CUDA context) costs only its own row."""
    cmd = [sys.executable, "-m", "benchmarks.kernel_configs", "--multistep-one", str(case_index), str(config_index)]
    try:
        proc = subprocess.run(cmd + (["--quick"] if quick else []), capture_output=True, text=True, timeout=90,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if lines:
            return json.loads(lines[-1])
        err = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {err[0][:200]}"}
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 90 s"}


def multistep_setup(quick: bool) -> tuple[list, list]:
    """The multi-step kernel's cases and configurations."""
    if quick:
        return [Case("digits", 4, layers=(37, 52, 7), batch=29)], [fused_mlp_multistep.INTERPRETER_CONFIG]
    return MULTISTEP_CASES, fused_mlp_multistep.CONFIGS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true", help="tiny cases, 2 steps, on the CPU: a smoke run")
    ap.add_argument("--focus", action="store_true",
                    help="a shorter run: multi-step AdamW only for the default and the fastest SGD configuration, "
                         "and the single-step kernel only at the SGD cases for its TMA configurations")
    ap.add_argument("--multistep-one", nargs=2, type=int, metavar=("CASE", "CONFIG"),
                    help="(internal) one multi-step case and configuration; prints its row")
    a = ap.parse_args()
    if a.multistep_one:
        ms_cases, ms_configs = multistep_setup(a.quick)
        case, cfg = ms_cases[a.multistep_one[0]], ms_configs[a.multistep_one[1]]
        run_multistep_case(case, [cfg], "cpu" if a.quick else "cuda", *((3, 2, 1) if a.quick else ()))
        return
    out = a.out or os.environ.get("OUT") or "."
    device = "cpu" if a.quick else "cuda"
    cases = [Case("digits", 4, layers=(37, 52, 7), batch=29), Case("digits", 4, "adamw", layers=(37, 52, 7),
                                                                     batch=29)] if a.quick else CASES
    bw = measure_bandwidth(device)
    configs = [fused_mlp.INTERPRETER_CONFIG, *fused_mlp.CONFIGS[:1]] if a.quick else fused_mlp.CONFIGS + EXTRA
    rows = []
    ms_cases, ms_configs = multistep_setup(a.quick)
    ms_rows = []
    for i, case in enumerate(ms_cases):  # first: the newest kernel, should the run be cut short
        wanted = range(len(ms_configs))
        if a.focus and case.optimizer == "adamw":
            timed = [r for r in ms_rows if "run_s" in r and r.get("ok")]
            best = min(timed, key=lambda r: r["run_s"])["config"] if timed else multistep_name(ms_configs[0])
            wanted = sorted({0, next(j for j, c in enumerate(ms_configs) if multistep_name(c) == best)})
        for j in wanted:
            row = {"case": case.name, "config": multistep_name(ms_configs[j]), **multistep_isolated(i, j, a.quick)}
            print(json.dumps(row), flush=True)
            ms_rows.append(row)
    if a.focus and not a.quick:
        cases = [c for c in cases if c.optimizer == "sgd" and c.K > 64]
        configs = [c for c in fused_mlp.CONFIGS if c.kwargs["TMA"]]  # the SGD cases' configurations
    for case in cases:
        rows += run_case(case, configs, bw, device, steps=2 if a.quick else 50)
    os.makedirs(out, exist_ok=True)
    head = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__, "triton": triton.__version__,
            "copy_GBps": bw / 1e9, "command": "python3 -m benchmarks.kernel_configs" + (" --focus" if a.focus else "")}
    with open(os.path.join(out, "kernel_configs.json"), "w") as f:
        json.dump({**head, "rows": rows, "multistep_rows": ms_rows}, f, indent=1)
    lines = [f"# Fused kernel configurations: {head['device']}", "",
             f"torch {head['torch']}, triton {head['triton']}, copy bandwidth {bw / 1e9:,.0f} GB/s. "
             f"Command: `{head['command']}`. Median of 50 steps, tf32; error: max relative norm error of the "
             "parameters after one step against the torch backend in fp32.", "",
             "| case | " + " | ".join(name(c) for c in configs) + " |", "|---|" + "---|" * len(configs)]
    for case in cases:
        cells = []
        for cfg in configs:
            r = next(r for r in rows if r["case"] == case.name and r["config"] == name(cfg))  # noqa: B023
            cells.append(f"{r['step_us']:.0f} us ({100 * r['roofline']:.0f}%, err {r['rel_err']:.0e})"
                         if "step_us" in r else "error")
        lines.append(f"| {case.name} | " + " | ".join(cells) + " |")
    lines += ["", f"Multi-step kernel: wall time of {ms_rows[0]['steps'] if ms_rows else '?'} steps in one launch "
              "(median of 3), per step in brackets; error after 20 steps against the torch backend in fp32.", "",
              "| case | " + " | ".join(multistep_name(c) for c in ms_configs) + " |", "|---|" + "---|" * len(ms_configs)]
    for case in ms_cases:
        cells = []
        for cfg in ms_configs:
            r = next((r for r in ms_rows if r["case"] == case.name and r["config"] == multistep_name(cfg)), {})
            cells.append(f"{r['run_s']:.3f} s ({r['step_us']:.0f} us, err {r['rel_err']:.0e})" if "run_s" in r
                         else "error" if r else "-")
        lines.append(f"| {case.name} | " + " | ".join(cells) + " |")
    with open(os.path.join(out, "kernel_configs.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
