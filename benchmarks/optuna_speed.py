"""Optuna trials per second: batched through ``metahp_fast.optuna`` against plain Optuna, and 2 local workers
against 1 on one study.

    python benchmarks/optuna_speed.py            # a few minutes on a 2-core CPU; writes results/optuna_speed.md

Part 1, one process, one torch thread: the same study (digits, 64-128-10 MLP, SGD over lr/momentum/weight decay
from the default space, ``--steps`` steps of minibatch 128, ``--trials`` trials, TPESampler(seed=0)) run by
plain Optuna (``study.optimize`` with an objective that trains one ``nn.Sequential`` with ``torch.optim.SGD``,
the loop one writes without this library) and by :func:`metahp_fast.optuna.optimize_batched` with K=64 trials
per batch, each with no pruner and with the same SuccessiveHalvingPruner (reports at the same rungs; the
plain loop raises TrialPruned), interleaved per seed. The batched runs write every finished trial's model file
(``model_files="best"`` rows: only improving trials'); the plain ones write none. A batched row with
``TPESampler(constant_liar=False)`` shows the sampler option's effect on the batches. Time to quality: the
default batched study continued until it reaches the plain study's best (``--ttq-trials`` at most), wall time to
get there on both sides. A cProfile split of one batched study (ask, train, validate, tell, model files).

Part 2: ``metahp_fast.workers`` on one SQLite study of ``--worker-trials`` trials (K=32, SHA pruner, TPE with
constant liar), 1 worker with one torch thread against 2 workers with one thread each. Trials per second over
the study's own clock (first trial start to last trial end) and over the wall clock (process starts included),
and a control: two independent one-worker studies of half the size at once, which share nothing but the
machine (the most a second process can add while other jobs use the cores).

Also draws results/optuna_history.png (optimization history of the batched study with the pruner) and
results/optuna_time_to_quality.png (best so far against wall seconds, seed 0).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402

from metahp_fast import Population, SearchSpace  # noqa: E402
from metahp_fast.optuna import default_rungs, optimize_batched, optuna_distributions  # noqa: E402
from metahp_fast.seeds import derive_seed  # noqa: E402
from metahp_fast.tasks import load_task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
K = 64
WORKER_K = 32  # part 2: 1024 trials make 32 batches, so two workers stay busy to the end


def plain_objective(task, steps: int, rungs: list[int], seed: int = 0):
    """The usual Optuna objective: one torch MLP (``nn.Sequential`` + ``torch.optim.SGD``) per trial. It trains
    the very function the batched side trains: the same initial weights (drawn as ``nn.Linear`` draws them, from
    ``seed`` as a population does) and the same minibatches (a seeded permutation per epoch, reseeded at each
    report step as ``optimize_batched`` does), so equal hyperparameters score equal values on both sides and
    best values differ only by what each search tried."""
    space = SearchSpace.default("sgd")
    dists = optuna_distributions(space)
    x, y, xv, yv = task.x_train, task.y_train, task.x_val, task.y_val
    init = Population(task.layers([128]), 1, "sgd", seed=seed).to_module(0).state_dict()
    starts = [0] + list(rungs)  # a new data order (segment seed) from each of these steps on

    def objective(trial: optuna.Trial) -> float:
        hp = {name: trial.suggest_float(name, d.low, d.high, log=d.log) for name, d in dists.items()}
        model = nn.Sequential(nn.Linear(task.n_features, 128), nn.ReLU(), nn.Linear(128, task.n_classes))
        model.load_state_dict(init)
        opt = torch.optim.SGD(model.parameters(), **hp)
        for t in range(1, steps + 1):
            if t - 1 in starts:
                gen, pos = torch.Generator().manual_seed(derive_seed(seed, starts.index(t - 1))), len(x)
            if pos + 128 > len(x):
                order, pos = torch.randperm(len(x), generator=gen), 0
            idx = order[pos:pos + 128]
            pos += 128
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if t in rungs or t == steps:
                with torch.no_grad():
                    val = float(nn.functional.cross_entropy(model(xv), yv))
                if t == steps:
                    return val  # nan (diverged): Optuna records the trial as FAIL
                trial.report(val, t)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        raise AssertionError("unreachable")
    return objective


def sha(steps: int):
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=default_rungs(steps)[0], reduction_factor=3)


def summary(study, seconds: float, n: int) -> dict:
    states = [t.state.name for t in study.trials]
    return {"seconds": seconds, "trials_per_s": n / seconds, "best": study.best_value,
            "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"), "failed": states.count("FAIL")}


def batched_variants() -> list[tuple[str, bool, dict]]:
    """(label, with SHA, options) of the batched rows: the defaults, model files for the best trials only, and
    TPE without the constant liar (a sequential loop draws the same trials either way, so the plain rows serve)."""
    return [("metahp_fast.optuna", False, {}), ("metahp_fast.optuna, model_files=best", False, {"files": "best"}),
            ("metahp_fast.optuna, TPE constant_liar=False", False, {"liar": False}),
            ("metahp_fast.optuna", True, {}), ("metahp_fast.optuna, model_files=best", True, {"files": "best"})]


def time_to(study, start: datetime.datetime, target: float) -> Optional[float]:
    """Seconds from ``start`` until the first trial of ``study`` with a value <= ``target`` completed."""
    hits = [t.datetime_complete for t in study.trials if t.value is not None and t.value <= target]
    return None if not hits else (min(hits) - start).total_seconds()


def best_curve(study, start: datetime.datetime) -> tuple[list[float], list[float]]:
    """(seconds, best value so far) at each completed trial, for the time-to-quality plot."""
    xs, ys, best = [], [], math.inf
    for t in sorted((t for t in study.trials if t.value is not None), key=lambda t: t.datetime_complete):
        best = min(best, t.value)
        xs.append((t.datetime_complete - start).total_seconds())
        ys.append(best)
    return xs, ys


def continue_to(study, start: datetime.datetime, elapsed: float, plain: tuple, task, steps: int, seed: int,
                out_dir: Path, ttq_trials: int, k: int = K) -> dict:
    """Time to quality: the default batched ``study`` (run ``elapsed`` seconds since ``start``) continued ``k``
    trials at a time, right away, until it reaches the best of the ``plain`` (study, start, seconds) run."""
    plain_study, plain_start, plain_seconds = plain
    target = plain_study.best_value
    done = lambda: [t.value for t in study.trials if t.value is not None]  # noqa: E731
    while min(done(), default=math.inf) > target and len(study.trials) < ttq_trials:
        t1 = time.perf_counter()
        optimize_batched(study, task, k, batch_size=k, steps=steps, seed=seed, rungs=[],
                         out_dir=out_dir / f"models_{seed}_ttq_{k}")
        elapsed += time.perf_counter() - t1
    row = {"seed": seed, "plain_best": target, "plain_seconds": plain_seconds,
           "plain_seconds_to_best": time_to(plain_study, plain_start, target),
           "batched_trials": len(study.trials), "batched_best": study.best_value,
           "batched_seconds_to_best": time_to(study, start, target), "batched_seconds": elapsed}
    print(row, flush=True)
    return row


def part1(task, trials: int, steps: int, seeds: int, out_dir: Path,
          ttq_trials: int) -> tuple[list[dict], list[dict], optuna.Study, dict]:
    """Per seed, interleaved: plain, then each batched variant, without and then with SHA; the default batched
    study without pruner is continued at once until it reaches the plain study's best (:func:`continue_to`)."""
    rows, ttq, keep, curves = [], [], None, {}
    warm = optuna.create_study()  # first calls (allocations, lazy imports) stay out of the timings
    warm.optimize(plain_objective(task, 10, [5]), n_trials=2)
    optimize_batched(optuna.create_study(), task, 4, batch_size=4, steps=10)
    for seed in range(seeds):  # the seed of the sampler, the initial weights and the data order, on both sides
        plain = None  # (study, start, seconds) of this seed's plain run without pruner
        for pruned in (False, True):
            runs = [("plain Optuna", pruned, {})] + [v for v in batched_variants() if v[1] == pruned]
            for method, _, opt in runs:
                sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=opt.get("liar", True))
                study = optuna.create_study(sampler=sampler,
                                            pruner=sha(steps) if pruned else optuna.pruners.NopPruner())
                start, t0 = datetime.datetime.now(), time.perf_counter()
                if method == "plain Optuna":
                    study.optimize(plain_objective(task, steps, default_rungs(steps) if pruned else [], seed),
                                   n_trials=trials)
                else:
                    optimize_batched(study, task, trials, batch_size=K, steps=steps, seed=seed,
                                     rungs=None if pruned else [], model_files=opt.get("files", "all"),
                                     out_dir=out_dir / f"models_{seed}_{int(pruned)}_{len(rows)}")
                row = {"method": method, "pruner": "SHA" if pruned else "none", "seed": seed,
                       **summary(study, time.perf_counter() - t0, trials)}
                print(row, flush=True)
                rows.append(row)
                if method == "plain Optuna" and not pruned:
                    plain = (study, start, row["seconds"])
                elif method == "metahp_fast.optuna" and not pruned:  # continued at once: no gap in its clock
                    ttq.append(continue_to(study, start, row["seconds"], plain, task, steps, seed, out_dir,
                                           ttq_trials))
                    if seed == 0:
                        curves = {"plain Optuna": best_curve(plain[0], plain[1]),
                                  f"metahp_fast.optuna (K = {K})": best_curve(study, start)}
                if pruned and method == "metahp_fast.optuna" and seed == 0:
                    keep = study
    return rows, ttq, keep, curves


def part2(trials: int, steps: int, tmp: Path) -> list[dict]:
    from metahp_fast.workers import WorkerConfig, open_study, start_workers

    def config(name: str, n_trials: int) -> WorkerConfig:
        return WorkerConfig(storage=f"sqlite:///{tmp / f'{name}.db'}", study=name, data="digits", n_trials=n_trials,
                            batch_size=WORKER_K, steps=steps, threads=1, pruner="sha",
                            out_dir=str(tmp / f"models_{name}"))

    rows = []
    # the third setup is the machine's own ceiling: two independent one-worker studies of half the size at once
    for label, cfgs, n in (("1 worker", [config("one", trials)], 1),
                           ("2 workers, one study", [config("two", trials)], 2),
                           ("control: 2 separate 1-worker studies at once",
                            [config("a", trials // 2), config("b", trials // 2)], 1)):
        t0 = time.perf_counter()
        procs = [p for cfg in cfgs for p in start_workers(cfg, n, log_dir=str(tmp))]
        if any(p.wait() for p in procs):
            raise RuntimeError(f"a worker failed; logs in {tmp}")
        wall = time.perf_counter() - t0
        done = [t for cfg in cfgs for t in open_study(cfg).trials if t.datetime_complete is not None]
        span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
        row = {"setup": label, "trials": len(done), "study_seconds": span, "wall_seconds": wall,
               "trials_per_s": len(done) / span, "wall_trials_per_s": len(done) / wall,
               "best": min(open_study(cfg).best_value for cfg in cfgs)}
        print(row, flush=True)
        rows.append(row)
    return rows


def plot_history(study, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import warnings
    from optuna.visualization.matplotlib import plot_optimization_history
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_optimization_history(study)
    ax.set_title(f"optimize_batched: {len(study.trials)} trials, K = {K}, SHA pruner (digits)")
    ax.set_ylabel("validation loss")
    ax.figure.set_size_inches(8, 4.5)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110)


def profile_split(task, trials: int, steps: int, out_dir: Path) -> dict:
    """Where a default batched study's time goes (cProfile, seed 0, no pruner): the sampler's asks, training the
    populations, validation, tells and model files (cProfile slows Python-heavy parts such as the sampler most)."""
    import cProfile
    import pstats
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(optimize_batched, study, task, trials, batch_size=K, steps=steps, seed=0, rungs=[],
                 out_dir=out_dir / "models_profile")
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (calls, primitive calls, tottime, cumtime, callers)

    def cum(path_end: str, name: str) -> float:
        return sum(v[3] for (f, _, n), v in stats.items() if f.endswith(path_end) and n == name)
    split = {"sampler (ask + suggest)": cum("metahp_fast/optuna.py", "ask"),
             "training (Population.fit)": cum("metahp_fast/population.py", "fit"),
             "validation (Population.evaluate)": cum("metahp_fast/population.py", "evaluate"),
             "model files (to_module + save_model)": cum("metahp_fast/population.py", "to_module")
             + cum("metahp_fast/model_file.py", "save_model"),
             "tell": cum("optuna/study/study.py", "tell")}
    split["other"] = total - sum(split.values())
    return {"total": total, "split": split}


def plot_time_to_quality(curves: dict, path: Path) -> None:
    """Best validation loss so far against wall seconds, plain Optuna and the batched study (seed 0)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, (xs, ys) in curves.items():
        ax.step(xs, ys, where="post", label=label)
    ax.set_xlabel("wall seconds")
    ax.set_ylabel("best validation loss so far")
    ax.set_ylim(top=min(0.2, max(max(ys) for _, ys in curves.values())))
    ax.set_title("time to quality, digits, TPESampler(seed=0), no pruner")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=128, help="trials per study in part 1 (default 128)")
    p.add_argument("--steps", type=int, default=300, help="steps of one training (default 300)")
    p.add_argument("--seeds", type=int, default=3, help="part 1 runs per setup, seeds 0..N-1 (default 3)")
    p.add_argument("--worker-trials", type=int, default=1024, help="trials of the part-2 study (default 1024)")
    p.add_argument("--out", default=str(RESULTS), help="where optuna_speed.md and optuna_history.png go")
    p.add_argument("--skip-workers", action="store_true", help="part 1 only")
    p.add_argument("--ttq-trials", type=int, default=640,
                   help="time to quality: most trials the batched study may run to reach plain's best (default 640)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = load_task("digits")
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        rows1, ttq, study, curves = part1(task, args.trials, args.steps, args.seeds, Path(tmp), args.ttq_trials)
        prof = profile_split(task, args.trials, args.steps, Path(tmp))
        rows2 = [] if args.skip_workers else part2(args.worker_trials, args.steps, Path(tmp))
        took = time.time() - t0
    plot_history(study, out / "optuna_history.png")
    plot_time_to_quality(curves, out / "optuna_time_to_quality.png")
    load1 = os.getloadavg()

    groups: dict = {}
    for r in rows1:
        groups.setdefault((r["method"], r["pruner"]), []).append(r)
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    by = {key: {"trials_per_s": len(rs) * args.trials / sum(r["seconds"] for r in rs), "best": mean(rs, "best"),
                "bests": [r["best"] for r in rs]} for key, rs in groups.items()}
    lines = ["# Optuna trials per second: batched (metahp_fast.optuna) vs plain Optuna; 2 workers vs 1", "",
             f"**Command:** `python benchmarks/optuna_speed.py --trials {args.trials} --steps {args.steps} "
             f"--seeds {args.seeds} --worker-trials {args.worker_trials}` ({took:.0f} s), "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"**Machine:** {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, optuna {optuna.__version__}, one torch thread per process; load average "
             f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (other jobs share the cores).", "",
             f"## 1. One process: plain Optuna vs `optimize_batched` (K = {K})", "",
             f"digits (64-128-10), SGD over the default space, {args.steps} steps of minibatch 128, "
             f"{args.trials} trials, TPESampler(seed=s), initial weights and data order from s too, "
             f"s = 0..{args.seeds - 1}; "
             f"SHA = SuccessiveHalvingPruner(min_resource={default_rungs(args.steps)[0]}, reduction_factor=3), "
             f"reports at steps {default_rungs(args.steps)} in both. The batched runs write a model file per "
             "finished trial unless `model_files=best` (then only for trials that beat the study's best so far); "
             "the plain ones write none. `TPE constant_liar=False`: the batched study's sampler without Optuna 5's "
             "default constant liar (a sequential loop draws exactly the same trials with either setting). Runs "
             "interleaved per seed: plain, then the batched variants, without and then with SHA. trials/s: all "
             "seeds' trials over all seeds' seconds; best: the mean over seeds of each study's best validation "
             "loss (each seed's in brackets).", "",
             "| method | pruner | trials/s | best val loss, mean (per seed) | complete | pruned | failed |",
             "|---|---|---|---|---|---|---|"]
    for key, rs in groups.items():
        b = by[key]
        lines.append(f"| {key[0]} | {key[1]} | {b['trials_per_s']:.2f} | {b['best']:.4f} "
                     f"({', '.join(f'{v:.4f}' for v in b['bests'])}) | {sum(r['complete'] for r in rs)} | "
                     f"{sum(r['pruned'] for r in rs)} | {sum(r['failed'] for r in rs)} |")
    lines += ["", "Ratios: trials/s over all seeds, and per seed (plain's seconds / batched seconds of the same "
              "seed, run next to each other).", "",
              "| comparison | trials/s ratio | per seed | mean best val loss (batched vs plain) |", "|---|---|---|---|"]
    seconds = {(r["method"], r["pruner"], r["seed"]): r["seconds"] for r in rows1}
    pairs = [(m, "SHA" if pr else "none", "SHA" if pr else "none") for m, pr, _ in batched_variants()]
    pairs += [("metahp_fast.optuna", "SHA", "none"), ("metahp_fast.optuna, model_files=best", "SHA", "none")]
    for mb, pb, pp in pairs:
        b, q = by[(mb, pb)], by[("plain Optuna", pp)]
        per = ", ".join(f"{seconds[('plain Optuna', pp, s)] / seconds[(mb, pb, s)]:.1f}x" for s in range(args.seeds))
        lines.append(f"| {mb} ({pb}) vs plain ({pp}) | {b['trials_per_s'] / q['trials_per_s']:.1f}x | {per} | "
                     f"{b['best']:.4f} vs {q['best']:.4f} |")
    lines += ["", "### Time to quality (no pruner)", "",
              f"The default batched study of each seed (the `metahp_fast.optuna` row above), continued {K} trials at "
              f"a time (at most {args.ttq_trials}) until its best reaches the plain study's final best of the same "
              "seed. Seconds are wall time from the study's start to the completion of the first trial at or below "
              "that value; for plain Optuna, to its own best trial.", "",
              "| seed | plain best | plain: s to its best (s for all trials) | batched trials run | batched best | "
              "batched: s to plain's best | speed-up to that quality |", "|---|---|---|---|---|---|---|"]
    for r in ttq:
        hit = r["batched_seconds_to_best"]
        lines.append(f"| {r['seed']} | {r['plain_best']:.4f} | {r['plain_seconds_to_best']:.1f} "
                     f"({r['plain_seconds']:.1f}) | {r['batched_trials']} | {r['batched_best']:.4f} | "
                     + (f"{hit:.1f} | {r['plain_seconds_to_best'] / hit:.1f}x |" if hit is not None else
                        f"not reached in {r['batched_seconds']:.1f} s | - |"))
    lines += ["", "![time to quality](optuna_time_to_quality.png)", "",
              f"### Where the batched study's time goes (cProfile, seed 0, no pruner, {args.trials} trials)", "",
              f"Total {prof['total']:.2f} s under the profiler.", "", "| part | seconds | share |", "|---|---|---|"]
    for part, sec in prof["split"].items():
        lines.append(f"| {part} | {sec:.2f} | {100 * sec / prof['total']:.0f}% |")
    if rows2:
        one, two, control = rows2
        lines += ["", "## 2. `metahp_fast.workers`: 2 local workers vs 1 on one SQLite study", "",
                  f"{args.worker_trials} trials, K = {WORKER_K}, {args.steps} steps, SHA pruner, TPE (constant liar), "
                  "one "
                  "torch thread per worker. Study clock: first trial's start to last trial's end; wall clock: "
                  "from starting the workers to their exit (process starts, imports, data loading included).", "",
                  "| setup | trials | study s | trials/s (study clock) | wall s | trials/s (wall) | best |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows2:
            lines.append(f"| {r['setup']} | {r['trials']} | {r['study_seconds']:.1f} | {r['trials_per_s']:.2f} | "
                         f"{r['wall_seconds']:.1f} | {r['wall_trials_per_s']:.2f} | {r['best']:.4f} |")
        lines += ["", f"2 workers / 1 worker: {two['trials_per_s'] / one['trials_per_s']:.2f}x (study clock), "
                  f"{two['wall_trials_per_s'] / one['wall_trials_per_s']:.2f}x (wall clock). The control (two "
                  "processes that share nothing but the machine) / 1 worker: "
                  f"{control['trials_per_s'] / one['trials_per_s']:.2f}x: what a second process can gain on this "
                  "machine at this load."]
    lines += ["", "![optimization history](optuna_history.png)", ""]
    (out / "optuna_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
