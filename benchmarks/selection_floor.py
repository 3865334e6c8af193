"""What choosing on a validation split costs on test loss, on tasks larger than the harness's small datasets: on
tasks of the meta-training distribution, one 256-candidate random search at full budget (the harness's
reference), and the normalized test regret of the candidate each selection rule picks.

    python benchmarks/selection_floor.py          # about 4 minutes on one CPU thread

Rules: the lowest validation loss (what every tuner does), the lowest validation loss plus one or two standard
errors of its per-example mean (a pessimistic pick), the lowest validation error (ties by loss), the mean
regret of the five lowest validation losses, and early stopping: every candidate at its best of 10 validation
checkpoints, the lowest of those picked and its checkpoint scored against the same final-weights reference.
``--harness`` runs it on the harness's held-out datasets instead (wine, breast_cancer, iris; 3 seeds each).
Writes benchmarks/results/selection_floor.md (or selection_floor_harness.md).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metahp_fast import SearchSpace  # noqa: E402
from metahp_fast.meta import TaskDistribution  # noqa: E402
from metahp_fast.meta.tasks_distribution import HELD_OUT  # noqa: E402
from metahp_fast.quality import REFERENCE_SIZE, normalized_regret  # noqa: E402
from metahp_fast.tasks import load_task  # noqa: E402
from metahp_fast.training import TrainConfig, make_population, prepare_task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RULES = ("val loss", "val loss + 1 SE", "val loss + 2 SE", "val error", "mean of top 5", "best checkpoint")
CHECKPOINTS = 10  # validation checkpoints per training, for the early-stopping rule
DIST_SEED, START = 7, 200_000  # tasks of the distribution that meta-training (seed 0, from index 0) never drew


def per_example_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every candidate on every row, (K, N) float64; non-finite as 1e9 (a diverged candidate)."""
    K, N, C = logits.shape
    pe = F.cross_entropy(logits.reshape(K * N, C), y.repeat(K), reduction="none").view(K, N).double()
    return torch.nan_to_num(pe, nan=1e9, posinf=1e9)


def score_task(task, steps: int, batch: int, seed: int, size: int = REFERENCE_SIZE) -> dict:
    """Train ``size`` random candidates on ``task`` and score each rule's pick by normalized test regret."""
    space = SearchSpace.default("sgd")
    cfg = TrainConfig(hidden=(128,), steps=steps, batch_size=batch, backend="torch")
    task = prepare_task(task, cfg)
    pop = make_population(task, space, space.sample_u(size, seed=seed), cfg, seed)
    # trained in CHECKPOINTS chunks: after each, every candidate's validation and test loss, for the checkpoint rule
    best_v = torch.full((size,), math.inf, dtype=torch.float64)
    best_t = best_v.clone()
    for c in range(CHECKPOINTS):
        n = steps // CHECKPOINTS + (c < steps % CHECKPOINTS)
        pop.fit(task.x_train, task.y_train, steps=n, batch_size=batch, seed=seed * 1000 + c, progress=False)
        with torch.no_grad():
            val_logits, test_logits = pop.forward(task.x_val), pop.forward(task.x_test)
        v = per_example_loss(val_logits, task.y_val).mean(1)
        better = v < best_v
        best_v = torch.where(better, v, best_v)
        best_t = torch.where(better, per_example_loss(test_logits, task.y_test).mean(1), best_t)
    pe = per_example_loss(val_logits, task.y_val)
    test = per_example_loss(test_logits, task.y_test).mean(1)
    n = pe.shape[1]
    vloss, se = pe.mean(1), pe.std(1) / math.sqrt(n)
    verr = (val_logits.argmax(-1) != task.y_val).double().mean(1)
    usable = test < 1e8
    best, median = float(test[usable].min()), float(test[usable].median())

    def regret(k: int) -> float:
        return normalized_regret(float(test[k]), best, median)
    row = {"task": task.name, "n_val": n, "n_test": int(task.y_test.shape[0])}
    row["val loss"] = regret(int(vloss.argmin()))
    row["val loss + 1 SE"] = regret(int((vloss + se).argmin()))
    row["val loss + 2 SE"] = regret(int((vloss + 2 * se).argmin()))
    row["val error"] = regret(int((verr * 1e6 + vloss).argmin()))
    row["mean of top 5"] = statistics.mean(regret(int(k)) for k in vloss.argsort()[:5])
    k = int(best_v.argmin())  # each candidate at its best validation checkpoint, scored against the same reference
    row["best checkpoint"] = normalized_regret(float(best_t[k]), best, median)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=24, help="tasks of the distribution (default 24)")
    p.add_argument("--size", type=int, default=REFERENCE_SIZE, help=f"candidates per task (default {REFERENCE_SIZE})")
    p.add_argument("--harness", action="store_true",
                   help="the harness's held-out datasets (wine, breast_cancer, iris; seeds 0-2) instead")
    p.add_argument("--out", default=None, help="markdown file (default benchmarks/results/selection_floor.md, "
                   "with --harness selection_floor_harness.md)")
    args = p.parse_args(argv)
    out = args.out or str(ROOT / "benchmarks" / "results" /
                          ("selection_floor_harness.md" if args.harness else "selection_floor.md"))
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.harness:
        tasks = [(load_task(name, seed=seed), seed) for name in HELD_OUT for seed in range(3)]
    else:
        tasks = [(mt.task, i) for i, mt in enumerate(TaskDistribution(seed=DIST_SEED).tasks(args.tasks, start=START))]
    rows = []
    for task, seed in tasks:
        rows.append(score_task(task, 300, 128, seed=seed, size=args.size))
        if args.harness:
            rows[-1]["task"] += f" (seed {seed})"
        print(rows[-1]["task"][:60], {r: round(rows[-1][r], 3) for r in RULES}, flush=True)
    shown = [a for a in (sys.argv[1:] if argv is None else argv)]
    where = (f"The harness's held-out datasets ({', '.join(HELD_OUT)}), seeds 0-2" if args.harness else
             f"Tasks {START}.. of the meta-training distribution drawn with seed {DIST_SEED}")
    lines = ["# The cost of choosing on a validation split", "",
             f"Made by `python benchmarks/selection_floor.py{' ' + ' '.join(shown) if shown else ''}` "
             f"({(time.perf_counter() - t0) / 60:.1f} min, 1 torch thread, CPU). {where}; on each, {args.size} "
             "random configurations (the default SGD space) trained at the harness's budget (300 steps of 128, one "
             "hidden layer of 128), and for each selection rule the normalized test regret `(L - L_best) / "
             "(L_median - L_best)` of its pick, with L_best and L_median the lowest and median test loss of the "
             "same candidates' final weights: the harness's reference search and its noise floor. `best "
             f"checkpoint`: early stopping, every candidate at its best of {CHECKPOINTS} validation checkpoints.",
             "", "| task | val rows | test rows | " + " | ".join(RULES) + " |", "|---|---|---|" + "---|" * len(RULES)]
    lines += [f"| {r['task'][:48]} | {r['n_val']} | {r['n_test']} | " + " | ".join(f"{r[c]:.3f}" for c in RULES)
              + " |" for r in rows]
    lines += ["| **median** | | | " + " | ".join(f"**{statistics.median(r[c] for r in rows):.3f}**" for c in RULES)
              + " |", "| **mean** | | | " + " | ".join(f"{statistics.mean(r[c] for r in rows):.3f}" for c in RULES)
              + " |", ""]
    Path(out).write_text("\n".join(lines))
    print("\n".join(lines[-3:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
