"""Tuner quality on this machine: runs the harness of :mod:`metahp_fast.quality` on the default task set and the
MNIST-1D accuracy run, and writes benchmarks/results/quality.{md,json,png}.

    python benchmarks/quality.py                 # the full run (about 20 minutes on 2 CPU cores)
    python benchmarks/quality.py --seeds 1 --tasks iris,wine --no-mnist1d   # a quick look

Timings use one torch thread (``--threads``): on a machine shared with other jobs, several threads spin
against each other and make wall-clock comparisons meaningless.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from metahp_fast import LogUniform, SearchSpace, Uniform
from metahp_fast.quality import DEFAULT_TASKS, METHODS, HarnessTask, run_harness, write
from metahp_fast.tasks import load_task
from metahp_fast.training import model_metrics
from metahp_fast.tuners import SuccessiveHalving

RESULTS = Path(__file__).resolve().parent / "results"

#: The MNIST-1D run: a one-hidden-layer MLP, tuned for validation accuracy by successive halving over a space
#: that reaches the large learning rates this dataset rewards.
MNIST1D = dict(hidden=(512,), steps=2000, batch_size=128, budget=96, eta=3, rungs=4)
MNIST1D_SPACE = SearchSpace({"lr": LogUniform(0.05, 5.0), "momentum": Uniform(0.0, 0.95),
                             "weight_decay": LogUniform(1e-6, 1e-2)}, optimizer="sgd")


def mnist1d_accuracy(seed: int = 0) -> dict:
    """Tune on MNIST-1D (default split: its own 1000 test rows) and report the pick's test accuracy."""
    task = load_task("mnist1d", seed=seed)
    cfg = dict(MNIST1D)
    budget = cfg.pop("budget")
    tuner = SuccessiveHalving(MNIST1D_SPACE, objective="error", backend="torch", **cfg)
    t0 = time.perf_counter()
    res = tuner.run(task, budget, seed=seed)
    wall = time.perf_counter() - t0
    test = model_metrics(res.best_model, task)
    print(f"mnist1d: test accuracy {test['accuracy']:.4f} in {wall:.0f}s ({res.best_hparams})", flush=True)
    return {"target": "MNIST-1D one-hidden-layer MLP: tuned test accuracy > 68% in under 10 minutes",
            "measured": f"{100 * test['accuracy']:.1f}% test accuracy (val {100 * res.best_val['accuracy']:.1f}%) in "
                        f"{wall:.0f} s (successive halving, budget {budget} trainings of {MNIST1D['steps']} steps, "
                        f"hidden {MNIST1D['hidden'][0]}, hparams "
                        + ", ".join(f"{k}={v:.3g}" for k, v in res.best_hparams.items()) + ")",
            "met": test["accuracy"] > 0.68 and wall < 600, "test_accuracy": test["accuracy"],
            "test_loss": test["loss"], "seconds": wall, "cost_steps": res.cost_steps, "hparams": res.best_hparams}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=",".join(t.data for t in DEFAULT_TASKS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-mnist1d", action="store_true", help="skip the MNIST-1D accuracy run")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    known = {t.data: t for t in DEFAULT_TASKS}
    tasks = [known.get(n, HarnessTask(n)) for n in args.tasks.split(",") if n]
    methods = {m: METHODS[m] for m in args.methods.split(",") if m}
    extra = [] if args.no_mnist1d else [mnist1d_accuracy()]
    results = run_harness(tasks, methods, seeds=range(args.seeds))
    results["extra"] = extra
    results["total_seconds"] += sum(e["seconds"] for e in extra)
    command = "python benchmarks/quality.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    for path in write(results, args.out, command):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
