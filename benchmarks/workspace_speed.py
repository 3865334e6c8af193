"""What the torch backend's workspace buys on CPU: its in-place step with every per-step tensor in reused
buffers, against the same in-place step allocating those tensors afresh (the engine before the workspace),
side by side in one run: each measurement in a fresh Python process, as a user's script starts, the two
variants alternating so both see the same machine load.

    python benchmarks/workspace_speed.py            # about 3 minutes; prints a markdown table

Fresh multi-megabyte tensors every step cost page faults (glibc hands large blocks back to the kernel and
takes them again), which at the digits shape cost about as much as the arithmetic. How much depends on the
allocator's state, so within one long process the gap can be smaller."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Case, make_batches, make_population  # noqa: E402
from metahp_fast.backends.torch_backend import Workspace, functional_step  # noqa: E402


STEPS = 32  # per timed round


def stepper(pop, reuse: bool):
    """One in-place step of ``pop``'s state, with a workspace of its own or none (fresh tensors)."""
    s = pop._state
    ws = Workspace() if reuse else None

    def step(x, y):
        _, _, _, count, alive = functional_step(s.params, s.opt_state, s.step_count, s.hparams, s.alive, x, y,
                                                s.spec, in_place=True, ws=ws)
        s.step_count.copy_(count)
        s.alive.copy_(alive)
    return step


def measure(shape: str, optimizer: str, K: int, reuse: bool, rounds: int, threads: int) -> list[float]:
    """Seconds of each of ``rounds`` rounds of STEPS steps over 8 rotating minibatches (after one warm-up
    round), in this process."""
    torch.set_num_threads(threads)
    case = Case(shape, K, optimizer)
    batches = make_batches(case, "cpu")
    step = stepper(make_population(case, "torch", "cpu"), reuse)
    times = []
    for r in range(rounds + 1):
        t = time.perf_counter()
        for i in range(STEPS):
            step(*batches[i % len(batches)])
        if r:
            times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=3, help="fresh processes per case and variant (default 3)")
    p.add_argument("--rounds", type=int, default=5, help=f"timed rounds of {STEPS} steps per process (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2, this machine's cores)")
    p.add_argument("--one", nargs=4, metavar=("SHAPE", "OPTIMIZER", "K", "REUSE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:  # a child: one measurement, printed as JSON
        shape, opt, K, reuse = args.one
        print(json.dumps(measure(shape, opt, int(K), reuse == "1", args.rounds, args.threads)))
        return 0
    cases = [("digits", "sgd", k) for k in (16, 64, 256)] + [("digits", "adamw", 64)]
    cases += [("mnist", "sgd", k) for k in (16, 64)]
    print(f"torch {torch.__version__}, {args.threads} threads; candidate-steps/s, median over {args.processes} "
          f"fresh processes x {args.rounds} rounds of {STEPS} steps (best in brackets)\n")
    print("| shape | optimizer | K | fresh tensors | workspace | speed-up |\n|---|---|---|---|---|---|")
    for shape, opt, K in cases:
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.processes):
            for reuse in (False, True):
                out = subprocess.run([sys.executable, __file__, "--rounds", str(args.rounds), "--threads",
                                      str(args.threads), "--one", shape, opt, str(K), "1" if reuse else "0"],
                                     check=True, capture_output=True, text=True).stdout
                times[reuse] += json.loads(out.strip().splitlines()[-1])
        rate = {k: K * STEPS / statistics.median(v) for k, v in times.items()}
        best = {k: K * STEPS / min(v) for k, v in times.items()}
        print(f"| {shape} | {opt} | {K} | {rate[False]:,.0f} ({best[False]:,.0f}) | "
              f"{rate[True]:,.0f} ({best[True]:,.0f}) | **{rate[True] / rate[False]:.2f}x** |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
