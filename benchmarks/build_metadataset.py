"""Build the meta-dataset: M quasi-random configurations trained as one population on every (dataset, fold),
validation and test loss/accuracy recorded at several points of training.

    python benchmarks/build_metadataset.py --out metadataset --datasets keel --folds 10 --configs 256
    python benchmarks/build_metadataset.py --out metadataset ... --shard 0/4     # in 4 processes or machines
    python benchmarks/build_metadataset.py --out metadataset --single 8          # cost of the same, one at a time

One safe file per (dataset, fold) under OUT/parts/ (written atomically: a killed build resumes, shards never
collide); OUT/manifest.json fixes the configurations and training settings (a build with other settings into
the same OUT is refused); OUT/curves.pt holds every part's curves in one small file (the form committed).
OUT/cost.md says what the parts cost, and with --single what training the same
configurations one at a time (one nn.Sequential + torch.optim each, the reference backend) would cost.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from metahp_fast.files import load_file, save_file  # noqa: E402
from metahp_fast.meta.metadataset import (CURVES_KIND, pack_curves, part_name, quasi_random_u,  # noqa: E402
                                          train_pool)
from metahp_fast.search_space import SearchSpace  # noqa: E402
from metahp_fast.tasks import load_task  # noqa: E402
from metahp_fast.training import TrainConfig  # noqa: E402


def keel_names(min_rows: int = 0) -> list[str]:
    """Every KEEL dataset (``keel:NAME``) with at least ``min_rows`` rows."""
    from metahp_fast.tasks import list_tasks
    return [t.name for t in list_tasks() if t.name.startswith("keel:") and t.rows >= min_rows]


def dataset_names(spec: str, min_rows: int) -> list[str]:
    """``keel`` (every KEEL dataset with >= min_rows rows) or a comma-separated list of task names."""
    names: list[str] = []
    for part in spec.split(","):
        names += keel_names(min_rows) if part == "keel" else [part]
    if not names:
        raise SystemExit(f"--datasets {spec!r} names no dataset")
    return names


def load_fold(name: str, fold: int):
    """KEEL's fixed folds; for other tasks the fold is the split seed."""
    return load_task(name, fold=fold) if name.startswith("keel:") else load_task(name, seed=fold)


def steps_for(n_train: int, args) -> int:
    """``--epochs`` over the train rows in batches of ``--batch-size``, capped at ``--max-steps``."""
    return max(args.checkpoints, min(args.max_steps, math.ceil(args.epochs * n_train / args.batch_size)))


def manifest_for(args, space: SearchSpace, u: torch.Tensor) -> dict:
    return {"configs": args.configs, "seed": args.seed, "optimizer": args.optimizer, "space": space.to_dict(),
            "u": u.tolist(), "hidden": args.hidden, "epochs": args.epochs, "max_steps": args.max_steps,
            "batch_size": args.batch_size, "checkpoints": args.checkpoints}


def write_manifest(out: Path, manifest: dict) -> None:
    path = out / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in manifest} != manifest:
            raise SystemExit(f"{out} holds a meta-dataset built with other settings (see {path}); "
                             f"use another --out")
        return
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, path)


def build_part(name: str, fold: int, args, space: SearchSpace, u: torch.Tensor, out: Path) -> dict:
    task = load_fold(name, fold)
    config = TrainConfig(hidden=tuple(args.hidden), steps=steps_for(len(task.y_train), args),
                         batch_size=args.batch_size, optimizer=args.optimizer)
    rec = train_pool(task, space, u, config, seed=args.seed, n_checkpoints=args.checkpoints)
    save_file(out / "parts" / part_name(name, fold), "meta-dataset-part",
              {"dataset": name, "fold": fold, "u": u, "steps": config.steps, "rows": len(task.y_train), **rec})
    return rec


def time_one_at_a_time(name: str, fold: int, args, space: SearchSpace, u: torch.Tensor) -> float:
    """Seconds per configuration when each trains alone (reference backend: nn.Sequential + torch.optim)."""
    task = load_fold(name, fold)
    config = TrainConfig(hidden=tuple(args.hidden), steps=steps_for(len(task.y_train), args),
                         batch_size=args.batch_size, optimizer=args.optimizer, backend="reference")
    train_pool(task, space, u[:1], config, seed=args.seed, n_checkpoints=args.checkpoints)  # warm-up, untimed
    start = time.perf_counter()
    for i in range(args.single):
        train_pool(task, space, u[i:i + 1], config, seed=args.seed, n_checkpoints=args.checkpoints)
    return (time.perf_counter() - start) / args.single


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory of the build (manifest.json, parts/, cost.md)")
    ap.add_argument("--datasets", default="keel", help="'keel' (every KEEL dataset) and/or task names, comma-separated")
    ap.add_argument("--min-rows", type=int, default=0, help="with 'keel': only datasets with at least this many rows")
    ap.add_argument("--folds", type=int, default=10, help="folds 0..F-1 of every dataset")
    ap.add_argument("--configs", type=int, default=256, help="M, the configurations (one population)")
    ap.add_argument("--optimizer", default="adamw", choices=("sgd", "adamw"))
    ap.add_argument("--hidden", type=lambda s: [int(h) for h in s.split(",")], default=[128])
    ap.add_argument("--epochs", type=float, default=30.0)
    ap.add_argument("--max-steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--checkpoints", type=int, default=4, help="points of each learning curve")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard", default="0/1", help="i/n: this process builds every n-th part from the i-th")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--single", type=int, default=0,
                    help="also time this many configurations trained one at a time on the first part")
    args = ap.parse_args(argv)
    try:
        i, n = (int(v) for v in args.shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        ap.error(f"--shard must be i/n with 0 <= i < n; got {args.shard!r}")
    args.shard_i, args.shard_n = i, n
    for name in ("folds", "configs", "max_steps", "batch_size", "checkpoints", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    space = SearchSpace.default(args.optimizer)
    u = quasi_random_u(space, args.configs, seed=args.seed)
    write_manifest(out, manifest_for(args, space, u))
    jobs = [(d, f) for d in dataset_names(args.datasets, args.min_rows) for f in range(args.folds)]
    mine = jobs[args.shard_i::args.shard_n]
    for j, (name, fold) in enumerate(mine):
        path = out / "parts" / part_name(name, fold)
        if path.exists():
            load_file(path, "meta-dataset-part")  # a damaged part stops the build instead of being trusted
            continue
        rec = build_part(name, fold, args, space, u, out)
        print(f"[{j + 1}/{len(mine)}] {name} fold {fold}: {rec['candidate_steps']:,} candidate-steps in "
              f"{rec['seconds']:.1f} s", flush=True)
    write_cost(out, jobs, args, space, u)
    write_curves(out, jobs)


def write_curves(out: Path, jobs) -> None:
    """OUT/curves.pt: every built part's learning curves in one compact safe file (the form committed; meta_eval.py
    reads it where the parts are absent)."""
    paths = [out / "parts" / part_name(d, f) for d, f in jobs]
    parts = [load_file(p, "meta-dataset-part") for p in paths if p.exists()]
    if parts:
        save_file(out / "curves.pt", CURVES_KIND, pack_curves(parts))


def write_cost(out: Path, jobs, args, space: SearchSpace, u: torch.Tensor) -> None:
    """OUT/cost.md: the parts built so far, their seconds and candidate-steps, and one-at-a-time estimates."""
    done = [load_file(out / "parts" / part_name(d, f), "meta-dataset-part") for d, f in jobs
            if (out / "parts" / part_name(d, f)).exists()]
    secs, steps = sum(p["seconds"] for p in done), sum(p["candidate_steps"] for p in done)
    lines = [f"# Meta-dataset build cost ({len(done)} of {len(jobs)} parts)", "",
             f"Command: `python benchmarks/build_metadataset.py {' '.join(sys.argv[1:])}`", "",
             f"- {args.configs} configurations per part, trained as one population, {args.threads} torch thread(s)",
             f"- {secs:.1f} s of training for {steps:,} candidate-steps "
             f"({steps / max(secs, 1e-9):,.0f} candidate-steps/s)"]
    if args.single and done:
        per = time_one_at_a_time(*jobs[0], args, space, u)
        first = done[0]
        lines.append(f"- one at a time (reference backend, {args.single} configurations of part "
                     f"{jobs[0][0]} fold {jobs[0][1]}): {per:.2f} s per configuration, so "
                     f"{per * args.configs:.1f} s for that part's {args.configs} against "
                     f"{first['seconds']:.1f} s as one population ({per * args.configs / first['seconds']:.1f}x)")
    (out / "cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))


if __name__ == "__main__":
    main()
