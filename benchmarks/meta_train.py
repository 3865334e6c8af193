"""Make the pretrained meta-learners shipped in the package: metahp_fast/meta/pretrained_<optimizer>.pt, with its
command, seed, settings and run time in the sidecar pretrained_<optimizer>.json and the meta-training curve in
benchmarks/results/meta_train_curve[_adamw].png.

    python benchmarks/meta_train.py                      # SGD: about 5 minutes on one CPU thread (2 cores shared)
    python benchmarks/meta_train.py --optimizer adamw    # AdamW

A killed run resumes from its checkpoint (--checkpoint) when started again with the same arguments.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path

import torch

from metahp_fast.meta import HELD_OUT, MetaLearner, TaskDistribution
from metahp_fast.meta.train import DEFAULT_CONFIG, META_STEPS, N_CONSTANT, N_TASKS, meta_train
from metahp_fast.training import TrainConfig, validation_objective
from metahp_fast.objectives import baseline_objective

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "metahp_fast" / "meta"
N_VALIDATION = 32
VALIDATION_OFFSET = 100_000  # validation tasks: indices of the same distribution never used in training


def compare_on_fresh_tasks(g: MetaLearner, dist: TaskDistribution, n: int) -> dict:
    """g's prediction against the constant on ``n`` unseen tasks of the distribution: mean validation loss over
    the prior predictor's loss, and how often g is the better of the two."""
    ratios_g, ratios_c, wins = [], [], 0
    for mt in dist.tasks(n, start=VALIDATION_OFFSET):
        u = torch.stack([g.predict_u(mt.task, mt.steps, mt.batch_size), g.constant])
        cfg = TrainConfig(hidden=g.config.inner_hidden, steps=mt.steps, batch_size=mt.batch_size,
                          optimizer=g.config.optimizer, backend="torch")
        L = validation_objective(mt.task, g.space, u, cfg, seed=1).nan_to_num(torch.inf)
        base = baseline_objective(mt.task)
        ratios_g.append(min(float(L[0]) / base, 1.5))
        ratios_c.append(min(float(L[1]) / base, 1.5))
        wins += int(L[0] < L[1])
    return {"tasks": n, "g_mean_loss_over_prior": sum(ratios_g) / n, "constant_mean_loss_over_prior": sum(ratios_c) / n,
            "g_better_fraction": wins / n}


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", type=int, default=N_TASKS)
    p.add_argument("--meta-steps", type=int, default=META_STEPS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--out", help="default: metahp_fast/meta/pretrained_<optimizer>.pt")
    p.add_argument("--checkpoint", help="default: benchmarks/results/.meta_train_checkpoint[_adamw].pt")
    p.add_argument("--plot", help="default: benchmarks/results/meta_train_curve[_adamw].png")
    args = p.parse_args(argv)
    suffix = "" if args.optimizer == "sgd" else f"_{args.optimizer}"
    args.out = args.out or str(MODELS / f"pretrained_{args.optimizer}.pt")
    args.checkpoint = args.checkpoint or str(ROOT / "benchmarks" / "results" / f".meta_train_checkpoint{suffix}.pt")
    args.plot = args.plot or str(ROOT / "benchmarks" / "results" / f"meta_train_curve{suffix}.png")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    config = dataclasses.replace(DEFAULT_CONFIG, seed=args.seed, optimizer=args.optimizer)
    ckpt = Path(args.checkpoint)
    g, dist = meta_train(config, args.tasks, args.meta_steps, N_CONSTANT, checkpoint=ckpt, progress=True,
                         plot=args.plot)
    names = [mt.task.name for mt in dist.tasks(args.tasks)]
    assert not any(n.split("[")[0].split(":")[0] in HELD_OUT for n in names)
    print(f"constant: {g.space.from_unconstrained(g.constant)}", flush=True)
    fresh = compare_on_fresh_tasks(g, dist, N_VALIDATION)
    print(f"unseen distribution tasks: {fresh}", flush=True)
    g.save(args.out)
    Path(args.out).chmod(0o644)  # shipped as package data: readable by everyone
    seconds = time.perf_counter() - t0
    command = "python benchmarks/meta_train.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    sidecar = {"command": command, "seed": args.seed, "seconds": seconds, "torch_threads": args.threads,
               "torch": torch.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "config": {**dataclasses.asdict(config), "inner_hidden": list(config.inner_hidden)},
               "tasks": args.tasks, "meta_steps": args.meta_steps, "constant_candidates": N_CONSTANT,
               "held_out": list(HELD_OUT), "distribution": {"sources": list(dist.sources), "steps": list(dist.steps),
                                                            "batch_sizes": list(dist.batch_sizes)},
               "first50_objective": _mean([h["objective"] for h in g.history[:50]]),
               "last50_objective": _mean([h["objective"] for h in g.history[-50:]]),
               "first50_vs_constant": _mean([h["vs_constant"] for h in g.history[:50]]),
               "last50_vs_constant": _mean([h["vs_constant"] for h in g.history[-50:]]),
               "unseen_tasks": fresh}
    Path(args.out).with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    ckpt.unlink(missing_ok=True)
    print(f"wrote {args.out} and its .json sidecar in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
