"""One prepared check for a GPU machine, under 5 minutes: (a) every backend against ``reference`` on CUDA,
(b) the card's copy bandwidth and fp32/tf32 matmul rates, (c) candidate-steps/s of every method at the digits
and MNIST shapes with their roofline, (d) digits K=4096 for 1000 steps. Writes ``gpu_check.json`` and
``gpu_check.md`` to ``--out``, else ``$OUT``, else the current directory, after every section, and prints the
markdown last. A failing section or measurement is recorded and the script goes on.

    python3 -m pip install --no-deps --no-build-isolation -e .
    PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check            # full run on CUDA (--budget-s 280)
    python -m benchmarks.gpu_check --device cpu --quick --out /tmp  # smoke run of the same code on CPU
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
import traceback

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from metahp_fast.backends import triton_backend  # noqa: E402

from benchmarks.common import (METHODS, Case, fmt_rate, make_batches, make_stepper, pivot_table,  # noqa: E402
                               skip_reason, sync, time_steps)
from benchmarks.roofline import measure_bandwidth, measure_matmul, step_cost  # noqa: E402

INSTALL = "python3 -m pip install --no-deps --no-build-isolation -e ."


class Budget:
    """Seconds left of the whole run."""

    def __init__(self, total: float):
        self.end = time.perf_counter() + total

    def left(self) -> float:
        return self.end - time.perf_counter()


class Report:
    """The results so far; ``save()`` writes the JSON and the markdown."""

    def __init__(self, out_dir: str, argv: list[str]):
        self.out_dir = out_dir
        self.data = {"command": "python3 -m benchmarks.gpu_check " + shlex.join(argv), "install": INSTALL,
                     "env": {}, "check": [], "device": {}, "timing": [], "thousand_steps": [], "errors": []}

    def error(self, where: str, exc: BaseException) -> None:
        tb = traceback.format_exc(limit=6)
        print(f"!! {where}: {type(exc).__name__}: {exc}", flush=True)
        self.data["errors"].append({"where": where, "error": f"{type(exc).__name__}: {exc}", "traceback": tb})

    def save(self) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, "gpu_check.json"), "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        with open(os.path.join(self.out_dir, "gpu_check.md"), "w") as f:
            f.write(markdown(self.data))


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def env_info(device: torch.device) -> dict:
    """Card, versions and flags that the numbers depend on."""
    try:
        import triton
        triton_version = triton.__version__
    except Exception as e:  # noqa: BLE001 - record whatever keeps triton from importing
        triton_version = f"not importable ({type(e).__name__}: {e})"
    info = {"device": str(device), "torch": torch.__version__, "triton": triton_version,
            "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
            "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET")}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(card=p.name, memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                    capability=f"{p.major}.{p.minor}", cuda=torch.version.cuda)
    else:
        info["card"] = platform.processor() or platform.machine()
    return info


def precision_of(stepper) -> str:
    """The dot precision a triton population runs with (as its backend reports it), else "fp32"."""
    backend = getattr(getattr(stepper, "pop", None), "_backend", None)
    return getattr(backend, "precision", "fp32")


# ---------------------------------------------------------------- (a) correctness against the reference
def rel_err(a: list, b: list, keep: torch.Tensor) -> float:
    """Largest relative error (Frobenius norm over the kept candidates) between two parameter lists."""
    errs = []
    for x, y in zip(a, b):
        x, y = x[keep].double(), y[keep].double()
        errs.append(((x - y).norm() / y.norm().clamp_min(1e-30)).item())
    return max(errs)


def check_backends(rep: Report, device, quick: bool, budget: Budget, reserve_s: float) -> None:
    """Every backend (triton in "ieee" and its default precision) and the torch.func ensemble against the
    reference, a few steps each (torch.compile runs the torch backend's maths; it is left to the timing, where
    its compilation time is budgeted). Variants still to run when only ``reserve_s`` of the budget is left are
    skipped, leaving that time to the other sections."""
    K, steps = (5 if quick else 64), 6  # the lr=1e6 candidate dies on step 5
    cases = [Case("digits", K), Case("mnist", K), Case("digits", K, nesterov=True), Case("digits", K, "adamw"),
             Case("digits", K, layers=(37, 53, 29, 7), batch=29, loss="mse"), Case("digits", K, dead=True)]
    variants = [("torch", None), ("torch.func", None), ("triton", "ieee"), ("triton", None)]
    for case in cases:
        batches = make_batches(case, device, n=steps, seed=1)
        ref = make_stepper("reference", case, device)
        for x, y in batches:
            ref_loss = ref(x, y)
        keep = ref.alive().clone()
        for method, precision in variants:
            row = {"case": case.name, "method": method, "precision": precision or "default", "steps": steps}
            reason = skip_reason(method, device)
            if reason or budget.left() < reserve_s:
                row["status"] = "skipped: " + (reason or "budget")
                rep.data["check"].append(row)
                continue
            try:
                s = make_stepper(method, case, device, precision=precision)
                row["precision"] = precision_of(s)
                for x, y in batches:
                    loss = s(x, y)
                sync(device)
                row.update(param_rel_err=rel_err(s.params(), ref.params(), keep),
                           loss_rel_err=rel_err([loss], [ref_loss], keep),
                           dead_candidates=int((~keep).sum()), status="ok")
                alive = s.alive()
                row["alive_matches"] = None if alive is None else bool(torch.equal(alive.cpu(), keep.cpu()))
            except Exception as e:  # noqa: BLE001 - record, go on with the next variant
                row["status"] = f"error: {type(e).__name__}: {e}"
                rep.error(f"check {case.name} {method} {precision}", e)
            nan = float("nan")
            print(f"check {row['case']:<36} {method:<14} {row['precision']:<8} {row['status']:<8} "
                  f"params {row.get('param_rel_err', nan):.2e} loss {row.get('loss_rel_err', nan):.2e} "
                  f"alive ok {row.get('alive_matches')}", flush=True)
            rep.data["check"].append(row)
            free_memory()
        del ref
        free_memory()
        rep.save()


def check_dropout(rep: Report, device, quick: bool) -> None:
    """Per-candidate dropout (a training option: triton's per-layer path) on the torch and triton backends
    against the reference with the same masks, a few steps of a two-hidden-layer model at odd sizes, SGD and
    AdamW; the masks come from a generator on the device, so every backend draws them there."""
    from metahp_fast import Population
    from metahp_fast.backends import triton_available
    K, steps = (5 if quick else 64), 6
    gen = torch.Generator().manual_seed(3)
    layers, B = [37, 53, 29, 7], 29
    batches = [(torch.randn(B, layers[0], generator=gen).to(device),
                torch.randint(0, 7, (B,), generator=gen).to(device)) for _ in range(steps)]
    for optimizer in ("sgd", "adamw"):
        kw = dict(layers=layers, size=K, optimizer=optimizer, hparams={"lr": torch.logspace(-3, -1.5, K)}, seed=5,
                  dropout=torch.linspace(0, 0.6, K), device=device)
        ref = Population(**kw, backend="reference")
        for x, y in batches:
            ref.step(x, y)
        keep = ref.alive.clone()
        for method, precision in (("torch", None), ("triton", "ieee"), ("triton", None)):
            row = {"case": f"dropout {layers} {optimizer}", "method": method, "precision": precision or "default",
                   "steps": steps}
            runnable = method != "triton" or (triton_available() and (
                torch.device(device).type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"))
            if not runnable:
                row["status"] = "skipped: triton needs CUDA (or TRITON_INTERPRET=1) and the triton package"
                rep.data["check"].append(row)
                continue
            try:
                pop = Population(**kw, backend=method, **({"precision": precision} if precision else {}))
                for x, y in batches:
                    pop.step(x, y)
                sync(device)
                row.update(param_rel_err=rel_err(pop.params, ref.params, keep), precision=pop.precision, status="ok")
            except Exception as e:  # noqa: BLE001 - record, go on with the next variant
                row["status"] = f"error: {type(e).__name__}: {e}"
                rep.error(f"dropout {optimizer} {method} {precision}", e)
            print(f"check {row['case']:<36} {method:<14} {row['precision']:<8} {row['status']:<8} "
                  f"params {row.get('param_rel_err', float('nan')):.2e}", flush=True)
            rep.data["check"].append(row)
        free_memory()
    rep.save()


# ---------------------------------------------------------------- (b) the card
def measure_device(rep: Report, device, quick: bool) -> None:
    """Copy bandwidth and fp32 / tf32 matmul rates."""
    small = quick or device.type != "cuda"
    d = rep.data["device"]
    d["bandwidth_Bps"] = measure_bandwidth(device, nbytes=(1 << 26) if small else None)
    d["fp32_flops"] = measure_matmul(device, torch.float32, tf32=False, n=1024 if small else None)
    d["tf32_flops"] = measure_matmul(device, torch.float32, tf32=True, n=1024 if small else None) \
        if device.type == "cuda" else d["fp32_flops"]
    print(f"device: copy {d['bandwidth_Bps'] / 1e9:.0f} GB/s, fp32 mm {d['fp32_flops'] / 1e12:.2f} TFLOP/s, "
          f"tf32 mm {d['tf32_flops'] / 1e12:.2f} TFLOP/s", flush=True)


# ---------------------------------------------------------------- (c) timing
def measure(stepper, case: Case, device, seconds: float) -> dict:
    """Median seconds per step over blocks of >= 20 ms (each block synchronized), after a warm-up."""
    batches = itertools.cycle(make_batches(case, device))
    t0 = time.perf_counter()
    time_steps(stepper, batches, device, 3)
    warmup_s = time.perf_counter() - t0
    t1 = time_steps(stepper, batches, device, 2) / 2
    n = max(1, math.ceil(0.02 / t1))
    reps = int(min(10, max(3, seconds / (n * t1))))
    per_step = [time_steps(stepper, batches, device, n) / n for _ in range(reps)]
    return {"step_s": statistics.median(per_step), "step_s_min": min(per_step), "steps_per_block": n,
            "blocks": reps, "warmup_s": warmup_s}


def roofline_fields(case: Case, precision: str, step_s: float, dev: dict) -> dict:
    """The floor time at the card's measured bandwidth and matmul rate (tf32 where the method's dots are
    tf32, else fp32) and the fraction of it reached."""
    if "bandwidth_Bps" not in dev:
        return {}
    c = step_cost(case.layers, case.batch, case.K, case.optimizer)
    rate = dev["tf32_flops"] if precision == "tf32" else dev["fp32_flops"]
    floor = c.floor_s(dev["bandwidth_Bps"], rate)
    return {"bytes": c.bytes, "flops": c.flops, "floor_s": floor, "bound": c.bound(dev["bandwidth_Bps"], rate),
            "roofline_fraction": floor / step_s}


def timing_plan(quick: bool, device) -> list[tuple[Case, str]]:
    """(case, method) pairs in the order they are measured: the issue's targets first, torch.compile last."""
    Ks = (4, 16) if quick else (16, 64, 256, 1024, 4096)
    cases = [Case(shape, K) for shape in ("digits", "mnist") for K in Ks]
    first = [Case("mnist", Ks[-2]), Case("digits", Ks[-1])]

    def rank(pair):
        case, method = pair
        if method == "torch.compile":
            return (3, case.shape, case.K)
        if method == "reference":
            return (2, case.shape, case.K)
        return (0 if case in first else 1, ("triton", "torch", "torch.func").index(method))
    pairs = [(c, m) for c in cases for m in METHODS
             if not (m == "reference" and c.K > Ks[0]) and not (m == "torch.compile" and quick and c.K > Ks[0])]
    pairs.append((Case("digits", Ks[-2], "adamw"), "triton"))
    pairs.append((Case("digits", Ks[-2], "adamw"), "torch"))
    return sorted(pairs, key=rank)


def time_methods(rep: Report, device, quick: bool, budget: Budget, reserve_s: float) -> None:
    """Candidate-steps/s of every planned (case, method), as far as the budget goes."""
    seconds = 0.3 if quick else 1.0
    for case, method in timing_plan(quick, device):
        row = {"case": case.name, "shape": case.shape, "K": case.K, "optimizer": case.optimizer, "method": method}
        need = 90 if method == "torch.compile" else 10  # a compilation can take a minute
        reason = skip_reason(method, device)
        if reason or budget.left() - reserve_s < need:
            row["status"] = "skipped: " + (reason or "budget")
            rep.data["timing"].append(row)
            continue
        try:
            t0 = time.perf_counter()
            stepper = make_stepper(method, case, device)
            row["build_s"] = time.perf_counter() - t0
            row["precision"] = precision_of(stepper)
            row.update(measure(stepper, case, device, seconds))
            row.update(cand_steps_per_s=case.K / row["step_s"], status="ok",
                       **roofline_fields(case, row["precision"], row["step_s"], rep.data["device"]))
            print(f"time {case.name:<32} {method:<14} {row['step_s'] * 1e6:10.1f} us/step "
                  f"{fmt_rate(row['cand_steps_per_s']):>14} cand-steps/s  roofline "
                  f"{100 * row.get('roofline_fraction', float('nan')):.0f}%  (warm-up {row['warmup_s']:.1f} s)",
                  flush=True)
        except Exception as e:  # noqa: BLE001 - OOM, compile errors: record and go on
            row["status"] = f"error: {type(e).__name__}: {e}"
            rep.error(f"timing {case.name} {method}", e)
        stepper = None
        free_memory()
        rep.data["timing"].append(row)
        rep.save()


# ---------------------------------------------------------------- (d) 1000 steps
def thousand_steps(rep: Report, device, quick: bool) -> None:
    """Wall time of digits K=4096 for 1000 steps, via ``Population.step`` and via ``Population.fit``
    (whose loop checks its data once, not every step; timed after one warm-up fit, so that every kernel is
    compiled and loaded), for triton and torch."""
    case, steps = (Case("digits", 16), 20) if quick else (Case("digits", 4096), 1000)
    batches = make_batches(case, device)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    for method in ("triton", "torch"):
        row = {"case": case.name, "method": method, "steps": steps}
        reason = skip_reason(method, device)
        if reason:
            row["status"] = "skipped: " + reason
            rep.data["thousand_steps"].append(row)
            continue
        try:
            stepper = make_stepper(method, case, device)
            row["precision"] = precision_of(stepper)
            it = itertools.cycle(batches)
            time_steps(stepper, it, device, 5)
            row["step_loop_s"] = time_steps(stepper, it, device, steps)
            stepper.pop.fit(x, y, steps=steps, batch_size=case.batch, progress=False)  # warm-up: kernels loaded
            sync(device)
            t0 = time.perf_counter()
            stepper.pop.fit(x, y, steps=steps, batch_size=case.batch, progress=False)
            sync(device)
            row["fit_s"] = time.perf_counter() - t0
            if method == "triton":  # fit() again with the multi-step kernel off: one launch per step
                multistep = triton_backend.SPAN
                try:
                    triton_backend.SPAN = 1
                    t0 = time.perf_counter()
                    stepper.pop.fit(x, y, steps=steps, batch_size=case.batch, progress=False)
                    sync(device)
                    row["fit_single_step_s"] = time.perf_counter() - t0
                finally:
                    triton_backend.SPAN = multistep
            row["status"] = "ok"
            print(f"{steps} steps {case.name} {method}: step loop {row['step_loop_s']:.3f} s, fit {row['fit_s']:.3f} s"
                  + (f", fit one launch per step {row['fit_single_step_s']:.3f} s" if "fit_single_step_s" in row
                     else ""), flush=True)
        except Exception as e:  # noqa: BLE001
            row["status"] = f"error: {type(e).__name__}: {e}"
            rep.error(f"thousand_steps {method}", e)
        stepper = None
        free_memory()
        rep.data["thousand_steps"].append(row)


# ---------------------------------------------------------------- markdown
def targets(d: dict) -> list[str]:
    """Issue 3's GPU targets, read off the measurements (a line only for what was measured)."""
    rate = {(r["shape"], r["optimizer"], r["K"], r["method"]): r["cand_steps_per_s"]
            for r in d["timing"] if r.get("status") == "ok"}

    def ratio(a: tuple, b: tuple) -> str:
        return f"{rate[a] / rate[b]:.2f}x" if a in rate and b in rate else "not measured"
    lines = []
    tri = next((r for r in d["timing"] if r.get("status") == "ok" and r["method"] == "triton"
                and (r["shape"], r["optimizer"], r["K"]) == ("mnist", "sgd", 1024)), None)
    if tri:
        key = ("mnist", "sgd", 1024)
        lines.append(f"- MNIST K=1024 triton: {100 * tri.get('roofline_fraction', float('nan')):.0f}% of roofline "
                     f"(target >= 70%), {ratio(key + ('triton',), key + ('torch',))} torch (>= 1.3x), "
                     f"{ratio(key + ('triton',), key + ('torch.func',))} torch.func (>= 3x)")
    k = {r["method"]: r for r in d["thousand_steps"] if r.get("status") == "ok"}
    if "triton" in k:
        t = k["triton"]
        vs = (f", {k['torch']['fit_s'] / t['fit_s']:.2f}x torch's fit, {k['torch']['step_loop_s'] / t['step_loop_s']:.2f}x"
              " torch step for step (>= 3x)" if "torch" in k else "")
        lines.append(f"- {t['case']}, {t['steps']} steps, triton: {t['fit_s']:.3f} s through fit() (target < 0.5 s on "
                     f"an H100), {t['step_loop_s']:.3f} s through step(){vs}")
    vs_torch = {key[:3]: rate[key] / rate[key[:3] + ("torch",)] for key in rate
                if key[3] == "triton" and key[2] >= 16 and key[:3] + ("torch",) in rate}
    if vs_torch:
        worst = min(vs_torch, key=vs_torch.get)
        lines.append(f"- slowest triton/torch at K >= 16: {vs_torch[worst]:.2f}x ({worst[0]} {worst[1]} K={worst[2]}; "
                     f"target: never below 1x)")
    return ["## Issue 3 targets", ""] + lines + [""] if lines else []


def markdown(d: dict) -> str:
    """The report: card and versions, commands, then one table per section."""
    e, dev = d["env"], d["device"]
    out = [f"# GPU check: {e.get('card', '?')}", "",
           f"torch {e.get('torch')}, triton {e.get('triton')}, CUDA {e.get('cuda', '-')}, device {e.get('device')}, "
           f"total {d.get('total_s', float('nan')):.0f} s", "",
           f"Commands: `{d['install']}` then `{d['command']}`", ""]
    if dev:
        out += [f"Card: copy bandwidth {dev['bandwidth_Bps'] / 1e9:,.0f} GB/s (read + write), matmul "
                f"{dev['fp32_flops'] / 1e12:.1f} TFLOP/s fp32, {dev['tf32_flops'] / 1e12:.1f} TFLOP/s tf32.", ""]
    if d["check"]:
        out += ["## Against the reference (float32, relative error over live candidates)", "",
                "| case | method | precision | status | params | losses | alive matches |",
                "|---|---|---|---|---|---|---|"]
        for r in d["check"]:
            out.append(f"| {r['case']} | {r['method']} | {r['precision']} | {r['status'][:60]} | "
                       f"{r.get('param_rel_err', float('nan')):.1e} | {r.get('loss_rel_err', float('nan')):.1e} | "
                       f"{r.get('alive_matches', '-')} |")
        out.append("")
    ok = [r for r in d["timing"] if r.get("status") == "ok"]
    if ok:
        out += ["## Candidate-steps per second (batch 128, float32, median of synchronized blocks)", "",
                pivot_table([{"case": Case(r["shape"], r["K"], r["optimizer"]), "method": r["method"],
                              "cand_steps_per_s": r["cand_steps_per_s"]} for r in ok]), ""]
        roof = [r for r in ok if "floor_s" in r and r["method"] in ("triton", "torch")]
        if roof:
            out += ["## Roofline (floor from the measured bandwidth and the matmul rate of the method's precision)", "",
                    "| case | method | precision | MB/step | GFLOP/step | bound | floor us | us/step | % of roofline |",
                    "|---|---|---|---|---|---|---|---|---|"]
            for r in sorted(roof, key=lambda r: (r["shape"], r["optimizer"], r["K"], r["method"])):
                out.append(f"| {r['case']} | {r['method']} | {r['precision']} | {r['bytes'] / 1e6:.1f} | "
                           f"{r['flops'] / 1e9:.2f} | "
                           f"{r['bound']} | {r['floor_s'] * 1e6:.1f} | {r['step_s'] * 1e6:.1f} | "
                           f"{100 * r['roofline_fraction']:.0f}% |")
            out.append("")
    not_ok = [r for r in d["timing"] if r.get("status") != "ok"]
    if not_ok:
        out += ["Not timed: " + "; ".join(f"{r['case']} {r['method']} ({r['status'][:80]})" for r in not_ok), ""]
    if d["thousand_steps"]:
        out += ["## Digits, 1000 steps (wall time, synchronized)", "", "fit: `Population.fit` (the triton backend "
                "trains spans of 250 steps per launch of the multi-step kernel); fit, one launch per step: the same "
                "with the multi-step kernel off; step loop: `Population.step` 1000 times.", "",
                "| case | method | steps | status | step loop s | fit s | fit, one launch per step s |",
                "|---|---|---|---|---|---|---|"]
        for r in d["thousand_steps"]:
            out.append(f"| {r['case']} | {r['method']} | {r['steps']} | {r['status'][:60]} | "
                       f"{r.get('step_loop_s', float('nan')):.3f} | {r.get('fit_s', float('nan')):.3f} | "
                       f"{r.get('fit_single_step_s', float('nan')):.3f} |")
        out.append("")
    out += targets(d)
    if d["errors"]:
        out += ["## Errors", ""] + [f"- {x['where']}: {x['error'][:300]}" for x in d["errors"]] + [""]
    return "\n".join(out)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    sys.stdout.reconfigure(line_buffering=True)  # as PYTHONUNBUFFERED: progress shows even if killed
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few steps: a smoke run")
    ap.add_argument("--budget-s", type=float, default=280, help="seconds for the whole run (default 280)")
    ap.add_argument("--out", help="output folder (default $OUT, else the current folder)")
    ap.add_argument("--multistep-config", type=int, default=None,
                    help="index in kernels.fused_mlp_multistep.CONFIGS to train fit() with (default: its DEFAULT_CONFIG)")
    ap.add_argument("--sections", default="check,dropout,device,timing,thousand",
                    help="comma-separated subset of check,dropout,device,timing,thousand")
    a = ap.parse_args(argv)
    if a.multistep_config is not None:
        from metahp_fast.kernels import fused_mlp_multistep
        fused_mlp_multistep.DEFAULT_CONFIG = fused_mlp_multistep.CONFIGS[a.multistep_config]
    start = time.perf_counter()
    budget = Budget(a.budget_s)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available here; use --device cpu for a smoke run")
    rep = Report(a.out or os.environ.get("OUT") or ".", argv)
    rep.data["env"] = env_info(device)
    if a.multistep_config is not None:
        rep.data["env"]["multistep_config"] = str(fused_mlp_multistep.DEFAULT_CONFIG)
    print(json.dumps(rep.data["env"]), flush=True)
    wanted = a.sections.split(",")
    # the check keeps time back for the sections after it, only when some are asked for
    check_reserve = (30 if a.quick else 150) if wanted[-1] != "check" else 0
    sections = {
        "check": lambda: check_backends(rep, device, a.quick, budget, reserve_s=check_reserve),
        "dropout": lambda: check_dropout(rep, device, a.quick),
        "device": lambda: measure_device(rep, device, a.quick),
        "timing": lambda: time_methods(rep, device, a.quick, budget, reserve_s=5 if a.quick else 30),
        "thousand": lambda: thousand_steps(rep, device, a.quick),
    }
    for name in wanted:
        t0 = time.perf_counter()
        try:
            sections[name]()
        except Exception as e:  # noqa: BLE001 - a failed section must not stop the others
            rep.error(f"section {name}", e)
        rep.data.setdefault("section_s", {})[name] = round(time.perf_counter() - t0, 1)
        rep.data["total_s"] = time.perf_counter() - start
        free_memory()
        rep.save()
    print(markdown(rep.data), flush=True)


if __name__ == "__main__":
    main()
