"""How much a per-task prediction could gain: on unseen tasks of the meta-training distribution and on the held-out
datasets, the pretrained meta-learner's prediction and the constant configuration against the best and the median
of 64 random configurations trained on the same task (validation loss over the prior predictor's, lower is better).

    python benchmarks/meta_headroom.py        # about 2 minutes on one CPU thread

Writes benchmarks/results/meta_headroom.md. Validation losses only: nothing here looks at a test split.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.meta_train import N_VALIDATION, VALIDATION_OFFSET  # noqa: E402
from metahp_fast.meta import HELD_OUT, MetaLearner, MetaTask, TaskDistribution  # noqa: E402
from metahp_fast.quality import META_TASKS  # noqa: E402
from metahp_fast.tasks import load_task  # noqa: E402
from metahp_fast.training import TrainConfig, validation_objective  # noqa: E402
from metahp_fast.objectives import baseline_objective

ROOT = Path(__file__).resolve().parent.parent
N_RANDOM, RANDOM_SEED, CLIP = 64, 123, 1.5
COLUMNS = ("g", "constant", "best", "median")


def score(g: MetaLearner, mt: MetaTask, random_u: torch.Tensor) -> dict:
    """Validation loss over the prior's for g's prediction, the constant and the 64 random configurations (one
    population, shared initial weights and batches), clipped at 1.5 like meta-training's comparison."""
    u = torch.cat([torch.stack([g.predict_u(mt.task, mt.steps, mt.batch_size), g.constant]), random_u])
    cfg = TrainConfig(hidden=g.config.inner_hidden, steps=mt.steps, batch_size=mt.batch_size,
                      optimizer=g.config.optimizer, backend="torch")
    loss = validation_objective(mt.task, g.space, u, cfg, seed=1).nan_to_num(torch.inf).double()
    r = (loss / baseline_objective(mt.task)).clamp(max=CLIP)
    return {"task": mt.task.name, "steps": mt.steps, "batch": mt.batch_size, "g": float(r[0]),
            "constant": float(r[1]), "best": float(r[2:].min()), "median": float(r[2:].median())}


def table(rows: list[dict]) -> list[str]:
    means = {c: statistics.mean(r[c] for r in rows) for c in COLUMNS}
    gap = means["constant"] - means["best"]
    closed = (means["constant"] - means["g"]) / gap if gap > 0 else float("nan")
    out = ["| task | steps | batch | " + " | ".join(COLUMNS) + " |", "|---|---|---|" + "---|" * len(COLUMNS)]
    out += [f"| {r['task'][:48]} | {r['steps']} | {r['batch']} | " + " | ".join(f"{r[c]:.3f}" for c in COLUMNS)
            + " |" for r in rows]
    out += ["| **mean** | | | " + " | ".join(f"**{means[c]:.3f}**" for c in COLUMNS) + " |", "",
            f"g closes {closed:.0%} of the gap between the constant and the best random configuration "
            f"(g better than the constant on {sum(r['g'] < r['constant'] for r in rows)} of {len(rows)})."]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a meta-learner file from meta-train (default: the pretrained one)")
    p.add_argument("--out", help="default: benchmarks/results/meta_headroom.md")
    p.add_argument("--unseen", type=int, default=N_VALIDATION, help="unseen distribution tasks (default 32)")
    p.add_argument("--random", type=int, default=N_RANDOM, help="random configurations per task (default 64)")
    p.add_argument("--seeds", type=int, default=3, help="splits of each held-out dataset (default 3)")
    args = p.parse_args(argv)
    argv_shown = [a for a in (sys.argv[1:] if argv is None else argv)]
    args.out = args.out or str(ROOT / "benchmarks" / "results" / "meta_headroom.md")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    g = MetaLearner.load(args.model) if args.model else MetaLearner.pretrained()
    random_u = g.space.sample_u(args.random, seed=RANDOM_SEED).to(g.constant.dtype)
    dist = TaskDistribution(seed=0)
    unseen = [score(g, mt, random_u) for mt in dist.tasks(args.unseen, start=VALIDATION_OFFSET)]
    held = [{**score(g, MetaTask(load_task(s.data, seed=seed), s.steps, s.batch_size), random_u),
             "task": f"{s.data} (seed {seed})"} for s in META_TASKS for seed in range(args.seeds)]
    seconds = time.perf_counter() - t0
    command = "python benchmarks/meta_headroom.py" + (" " + " ".join(argv_shown) if argv_shown else "")
    lines = [f"# Meta-learner headroom ({g.config.optimizer})", "",
             f"Made by `{command}` ({seconds / 60:.1f} min, 1 torch thread, CPU). Each "
             "number: a configuration's validation loss over the prior predictor's (the loss of predicting the "
             f"class frequencies; clipped at {CLIP}), lower is better. `g`: the pretrained meta-learner's "
             "prediction (" + (f"`{args.model}`" if args.model else "the pretrained one") + "); `constant`: the single best "
             "average configuration over its meta-training tasks; `best` / "
             f"`median`: of {args.random} random configurations from the search space (seed {RANDOM_SEED}) trained "
             "on the same task, same initial weights and batches. `best` picks on the very losses it is scored by, "
             "so it is an optimistic bound on what any prediction could reach.", "",
             f"## {args.unseen} unseen tasks of the meta-training distribution", "",
             "Indices from 100000 of the distribution (seed 0), never used in meta-training "
             "(the same tasks as the sidecar's `unseen_tasks`).", "", *table(unseen), "",
             f"## Held-out datasets ({', '.join(HELD_OUT)}), seeds 0-{args.seeds - 1}, the quality harness's budget",
             "",
             *table(held), ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
