"""What choosing on a validation split costs on test loss, on tasks larger than the harness's small datasets: on
tasks of the meta-training distribution, one 256-candidate random search at full budget (the harness's
reference), and the normalized test regret of the candidate each selection rule picks.

    python benchmarks/selection_floor.py          # about 4 minutes on one CPU thread

Rules: the lowest validation loss (what every tuner does), the lowest validation loss plus one or two standard
errors of its per-example mean (a pessimistic pick), the lowest validation error (ties by loss), the mean
regret of the five lowest validation losses, and early stopping: every candidate at its best of 10 validation
checkpoints, the lowest of those picked and its checkpoint scored against the same final-weights reference.
``--harness`` runs it on the harness's held-out datasets instead (wine, breast_cancer, iris; 3 seeds each),
``--harness all`` on all six tasks of the tuner harness (``benchmarks/quality.py``), each at its budget.
``--oracle N`` adds a rule no method can follow, as it sees the test split: the candidate whose configuration has
the lowest mean *test* loss over N more trainings of the same 256 configurations (other initial weights and
minibatches), scored on the first training like the others. What it misses is the test loss's own noise
from one training to the next, which every method that trains once per configuration pays. ``--cv K`` adds
cross-validation (what the tuners' ``folds=K`` do): ``cv loss`` picks the lowest mean validation loss over K
cuts of train+val (the task's own split and K - 1 more, each configuration trained once per cut: K times the
cost), ``val top 8, then cv`` the lowest of that mean among the 8 lowest plain validation losses (a cheap
variant: 8 configurations re-trained).
Writes benchmarks/results/selection_floor.md (or selection_floor_harness.md, selection_floor_harness_all.md).
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
from metahp_fast.quality import DEFAULT_TASKS, REFERENCE_SIZE, HarnessTask, normalized_regret  # noqa: E402
from metahp_fast.tasks import load_task  # noqa: E402
from metahp_fast.training import TrainConfig, make_population, prepare_task  # noqa: E402
from metahp_fast.tuners.cross_validation import fold_tasks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RULES = ("val loss", "val loss + 1 SE", "val loss + 2 SE", "val error", "mean of top 5", "best checkpoint")
CHECKPOINTS = 10  # validation checkpoints per training, for the early-stopping rule
DIST_SEED, START = 7, 200_000  # tasks of the distribution that meta-training (seed 0, from index 0) never drew


def per_example_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every candidate on every row, (K, N) float64; non-finite as 1e9 (a diverged candidate)."""
    K, N, C = logits.shape
    pe = F.cross_entropy(logits.reshape(K * N, C), y.repeat(K), reduction="none").view(K, N).double()
    return torch.nan_to_num(pe, nan=1e9, posinf=1e9)


ORACLE = "oracle (mean test loss)"
CV, CV_TOP = "cv loss", "val top 8, then cv"


def score_task(task, steps: int, batch: int, seed: int, size: int = REFERENCE_SIZE, oracle: int = 0,
               cv: int = 0) -> dict:
    """Train ``size`` random candidates on ``task`` and score each rule's pick by normalized test regret
    (with ``oracle`` > 0, also the oracle rule: see the module's docstring)."""
    space = SearchSpace.default("sgd")
    cfg = TrainConfig(hidden=(128,), steps=steps, batch_size=batch, backend="torch")
    task = prepare_task(task, cfg)
    u = space.sample_u(size, seed=seed)
    pop = make_population(task, space, u, cfg, seed)
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
    if oracle:  # the same configurations trained again from other initial weights and minibatches
        again = []
        for r in range(1, oracle + 1):
            r_seed = seed * 1000 + 100 * r  # apart from the first training's seeds (seed * 1000 + 0..9)
            other = make_population(task, space, u, cfg, r_seed)
            other.fit(task.x_train, task.y_train, steps=steps, batch_size=batch, seed=r_seed, progress=False)
            with torch.no_grad():
                again.append(per_example_loss(other.forward(task.x_test), task.y_test).mean(1))
        row[ORACLE] = regret(int(torch.stack(again).mean(0).argmin()))
    if cv:  # the same configurations trained on the cv - 1 other cuts of train+val that tuners' folds= use
        losses = [vloss]
        for cut in fold_tasks(task, cv, seed)[1:]:
            other = make_population(cut, space, u, cfg, seed)
            other.fit(cut.x_train, cut.y_train, steps=steps, batch_size=batch, seed=seed * 1000 + 50, progress=False)
            with torch.no_grad():
                losses.append(per_example_loss(other.forward(cut.x_val), cut.y_val).mean(1))
        cvl = torch.stack(losses).mean(0)
        row[CV] = regret(int(cvl.argmin()))
        top = vloss.argsort()[:8]
        row[CV_TOP] = regret(int(top[cvl[top].argmin()]))
    return row


def harness_median(rows: list[dict], rule: str) -> float:
    """The quality harness's summary of one rule: the median over seeds per task ("wine (seed 0)", ...), then the
    median over tasks."""
    tasks: dict[str, list[float]] = {}
    for r in rows:
        tasks.setdefault(r["task"].split(" (seed ")[0], []).append(r[rule])
    return statistics.median(statistics.median(v) for v in tasks.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=24, help="tasks of the distribution (default 24)")
    p.add_argument("--size", type=int, default=REFERENCE_SIZE, help=f"candidates per task (default {REFERENCE_SIZE})")
    p.add_argument("--harness", nargs="?", const="held-out", choices=("held-out", "all"),
                   help="the harness's held-out datasets (wine, breast_cancer, iris; seeds 0-2) instead; 'all': "
                   "the six tasks of the tuner harness")
    p.add_argument("--oracle", type=int, default=0, metavar="N",
                   help="add the oracle rule: each configuration's mean test loss over N more trainings")
    p.add_argument("--cv", type=int, default=0, metavar="K",
                   help="add the cross-validation rules: each configuration's mean validation loss over K cuts of "
                   "train+val (the task's own split and K - 1 more, as the tuners' folds=K make them)")
    p.add_argument("--out", default=None, help="markdown file (default benchmarks/results/selection_floor.md, "
                   "with --harness selection_floor_harness.md, with --harness all selection_floor_harness_all.md)")
    args = p.parse_args(argv)
    out = args.out or str(ROOT / "benchmarks" / "results" /
                          {None: "selection_floor.md", "held-out": "selection_floor_harness.md",
                           "all": "selection_floor_harness_all.md"}[args.harness])
    torch.set_num_threads(1)
    rules = RULES + ((ORACLE,) if args.oracle else ()) + ((CV, CV_TOP) if args.cv else ())
    t0 = time.perf_counter()
    specs = DEFAULT_TASKS if args.harness == "all" else [HarnessTask(name) for name in HELD_OUT]
    if args.harness:
        assert all(s.batch_size == 128 and s.hidden == (128,) for s in specs), "score_task trains 128-wide, batch 128"
        tasks = [(load_task(spec.data, seed=seed), seed, spec.steps) for spec in specs for seed in range(3)]
    else:
        tasks = [(mt.task, i, 300)
                 for i, mt in enumerate(TaskDistribution(seed=DIST_SEED).tasks(args.tasks, start=START))]
    rows = []
    for task, seed, steps in tasks:
        rows.append(score_task(task, steps, 128, seed=seed, size=args.size, oracle=args.oracle,
                               cv=args.cv))
        if args.harness:
            rows[-1]["task"] += f" (seed {seed})"
        print(rows[-1]["task"][:60], {r: round(rows[-1][r], 3) for r in rules}, flush=True)
    shown = sys.argv[1:] if argv is None else argv
    where = (f"The tuner harness's tasks ({', '.join(s.data for s in specs)}), seeds 0-2" if args.harness == "all"
             else f"The harness's held-out datasets ({', '.join(HELD_OUT)}), seeds 0-2" if args.harness else
             f"Tasks {START}.. of the meta-training distribution drawn with seed {DIST_SEED}")
    lines = ["# The cost of choosing on a validation split", "",
             f"Made by `python benchmarks/selection_floor.py{' ' + ' '.join(shown) if shown else ''}` "
             f"({(time.perf_counter() - t0) / 60:.1f} min, 1 torch thread, CPU). {where}; on each, {args.size} "
             "random configurations (the default SGD space) trained at the harness's budget (300 steps of 128, "
             + ("MNIST-1D 600; " if args.harness == "all" else "") + "one hidden layer of 128), and for each selection rule the normalized test regret `(L - L_best) / "
             "(L_median - L_best)` of its pick, with L_best and L_median the lowest and median test loss of the "
             "same candidates' final weights: the harness's reference search and its noise floor. `best "
             f"checkpoint`: early stopping, every candidate at its best of {CHECKPOINTS} validation checkpoints."
             + (f" `{ORACLE}`: a chooser no method can be (it sees the test split), the configuration with the lowest mean test loss over "
                f"{args.oracle} more trainings of the same configurations (other initial weights and minibatches), "
                "scored on the first training like the other rules." if args.oracle else "")
             + (f" `{CV}`: the lowest mean validation loss over {args.cv} cuts of train+val (the task's own "
                f"split and {args.cv - 1} more, as the tuners' `folds={args.cv}` make them; {args.cv}x the "
                f"trainings); `{CV_TOP}`: the same mean, among the 8 lowest plain validation losses."
                if args.cv else ""),
             "", "| task | val rows | test rows | " + " | ".join(rules) + " |", "|---|---|---|" + "---|" * len(rules)]
    lines += [f"| {r['task'][:48]} | {r['n_val']} | {r['n_test']} | " + " | ".join(f"{r[c]:.3f}" for c in rules)
              + " |" for r in rows]
    lines += ["| **median** | | | " + " | ".join(f"**{statistics.median(r[c] for r in rows):.3f}**" for c in rules)
              + " |", "| **mean** | | | " + " | ".join(f"{statistics.mean(r[c] for r in rows):.3f}" for c in rules)
              + " |"]
    if args.harness:
        lines.append("| **median over seeds, then tasks** (the quality harness's aggregation) | | | "
                     + " | ".join(f"**{harness_median(rows, c):.3f}**" for c in rules) + " |")
    lines.append("")
    Path(out).write_text("\n".join(lines))
    print("\n".join(lines[-(4 if args.harness else 3):]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
