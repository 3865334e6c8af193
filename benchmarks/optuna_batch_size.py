"""Time to plain Optuna's quality against the batch size K: how much a smaller batch (more sequential TPE
updates, less parallel work per step) shortens the way to the best value plain Optuna reaches.

    python benchmarks/optuna_batch_size.py      # ~10 min on a loaded 2-core CPU; writes results/optuna_batch_size.md

Per seed, interleaved: plain Optuna (128 trials, no pruner; benchmarks/optuna_speed.py's loop, which trains the
same function as the batched side), then for each K a batched study with the same TPESampler(seed) continued K
trials at a time until its best reaches plain's (``--max-trials`` at most). One torch thread.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402

from benchmarks.optuna_speed import RESULTS, continue_to, plain_objective  # noqa: E402
from metahp_fast.tasks import load_task  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="16,32,64", help="the K values, comma-separated (default 16,32,64)")
    p.add_argument("--trials", type=int, default=128, help="plain Optuna's trials (default 128)")
    p.add_argument("--steps", type=int, default=300, help="steps of one training (default 300)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--max-trials", type=int, default=640, help="most trials a batched study may run (default 640)")
    p.add_argument("--out", default=str(RESULTS), help="where optuna_batch_size.md goes")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.batch_sizes.split(",")]
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = load_task("digits")
    load0, t0, rows = os.getloadavg(), time.time(), []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
            start, t1 = datetime.datetime.now(), time.perf_counter()
            study.optimize(plain_objective(task, args.steps, [], seed), n_trials=args.trials)
            plain = (study, start, time.perf_counter() - t1)
            for k in ks:
                batched = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
                row = continue_to(batched, datetime.datetime.now(), 0.0, plain, task, args.steps, seed, Path(tmp),
                                  args.max_trials, k)
                rows.append({"k": k, **row})
    load1 = os.getloadavg()
    lines = ["# Time to plain Optuna's best value against the batch size K", "",
             f"**Command:** `python benchmarks/optuna_batch_size.py --batch-sizes {args.batch_sizes} --trials "
             f"{args.trials} --steps {args.steps} --seeds {args.seeds} --max-trials {args.max_trials}` "
             f"({time.time() - t0:.0f} s), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"**Machine:** {os.cpu_count()} cores, torch {torch.__version__}, optuna {optuna.__version__}, one torch "
             f"thread; load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (other jobs share the "
             "cores).", "",
             f"digits (64-128-10), SGD over the default space, {args.steps} steps of minibatch 128, no pruner, "
             "TPESampler(seed=s) on both sides. Plain Optuna runs "
             f"{args.trials} trials; each batched study (`optimize_batched`, K trials a batch, a model file per "
             "trial) runs until its best is at or below plain's, at most "
             f"{args.max_trials} trials. Seconds: wall time from each study's start to the completion of its first "
             "trial at or below plain's best (plain: its own best trial).", "",
             "| seed | K | plain best | plain s to its best | batched trials | batched s to plain's best | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        hit = r["batched_seconds_to_best"]
        lines.append(f"| {r['seed']} | {r['k']} | {r['plain_best']:.4f} | {r['plain_seconds_to_best']:.1f} | "
                     f"{r['batched_trials']} | " + (f"{hit:.1f} | {r['plain_seconds_to_best'] / hit:.2f}x |"
                                                   if hit is not None else "not reached | - |"))
    lines += ["", "| K | speed-up to plain's best, per seed | geometric mean |", "|---|---|---|"]
    for k in ks:
        sp = [r["plain_seconds_to_best"] / r["batched_seconds_to_best"] for r in rows
              if r["k"] == k and r["batched_seconds_to_best"] is not None]
        missed = sum(1 for r in rows if r["k"] == k and r["batched_seconds_to_best"] is None)
        gm = torch.tensor(sp).log().mean().exp().item() if sp else float("nan")
        lines.append(f"| {k} | {', '.join(f'{v:.2f}x' for v in sp)}{f' ({missed} not reached)' if missed else ''} | "
                     f"{gm:.2f}x |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "optuna_batch_size.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
