"""Tuner quality on this machine: runs the harness of :mod:`metahp_fast.quality` on the default task set and the
MNIST-1D accuracy run, and writes benchmarks/results/quality.{md,json,png}.

    python benchmarks/quality.py                 # the full run (about 20 minutes on 2 CPU cores)
    python benchmarks/quality.py --seeds 1 --tasks iris,wine --no-mnist1d   # a quick look
    python benchmarks/quality.py --meta          # the meta-learner on the held-out datasets -> meta_quality.*
    python benchmarks/quality.py --render benchmarks/results/quality.json   # tables and plot again, no training

Timings use one torch thread (``--threads``): on a machine shared with other jobs, several threads spin
against each other and make wall-clock comparisons meaningless.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from metahp_fast import LogUniform, MetaLearner, SearchSpace, Uniform
from metahp_fast.quality import (ALL_METHODS, DEFAULT_TASKS, META_METHODS, META_TASKS, METHODS, HarnessTask,
                                 run_harness, summarize, write)
from metahp_fast.tasks import load_task
from metahp_fast.objectives import model_metrics
from metahp_fast.validation import check_device
from metahp_fast.tuners import SuccessiveHalving

RESULTS = Path(__file__).resolve().parent / "results"

#: The MNIST-1D run: a one-hidden-layer MLP, tuned for validation accuracy by successive halving over a space
#: that reaches the large learning rates this dataset rewards.
MNIST1D = dict(hidden=(512,), steps=2000, batch_size=128, budget=96, eta=3, rungs=4)
MNIST1D_SPACE = SearchSpace({"lr": LogUniform(0.05, 5.0), "momentum": Uniform(0.0, 0.95),
                             "weight_decay": LogUniform(1e-6, 1e-2)}, optimizer="sgd")


def mnist1d_accuracy(seed: int = 0, device: str = "cpu") -> dict:
    """Tune on MNIST-1D (default split: its own 1000 test rows) and report the pick's test accuracy."""
    task = load_task("mnist1d", seed=seed)
    cfg = dict(MNIST1D)
    budget = cfg.pop("budget")
    tuner = SuccessiveHalving(MNIST1D_SPACE, objective="error", backend="torch" if device == "cpu" else "auto",
                              device=device, **cfg)
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


#: The meta-learner's evaluation: its methods against the baselines at equal trial counts, on held-out datasets.
META_COMPARED = (*META_METHODS, "random16", "sh16", "sh", "tpe16")
META_NOTE = ("wine, breast_cancer and iris are held out: the pretrained meta-learner (metahp_fast/meta/"
             "pretrained_sgd.pt, see its .json sidecar) never saw them. meta0 trains one candidate at g's "
             "prediction; meta+sh16 is a 16-training successive-halving round warm-started from it (half its first rung "
             "around the prediction, half drawn from the space; sh16 is the same round without g); constant trains one "
             "candidate at the single best average configuration over the meta-training tasks. Their seconds "
             "include g's prediction (task encoding and forward pass).")


def meta_training_note(optimizer: str = "sgd") -> str:
    """What the pretrained learner's sidecar says about g against the constant on unseen distribution tasks."""
    side = json.loads((Path(__file__).resolve().parent.parent / "metahp_fast" / "meta" /
                       f"pretrained_{optimizer}.json").read_text())
    fresh = side["unseen_tasks"]
    return (f"Meta-training (`{side['command']}`, seed {side['seed']}, {side['seconds'] / 60:.1f} min): on "
            f"{fresh['tasks']} unseen tasks of the meta-training distribution, the validation loss at g's "
            f"prediction over the prior predictor's is {fresh['g_mean_loss_over_prior']:.3f} against the constant's "
            f"{fresh['constant_mean_loss_over_prior']:.3f}, g better on {100 * fresh['g_better_fraction']:.0f}% of "
            f"them; during meta-training g's loss over the constant's on the meta-batch went from "
            f"{side['first50_vs_constant']:.3f} (first 50 meta-steps) to {side['last50_vs_constant']:.3f} (last 50).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=None, help="comma list (default: the default task set, or with --meta the "
                   "held-out datasets)")
    p.add_argument("--methods", default=None, help="comma list (default: the tuners, or with --meta "
                   + ",".join(META_COMPARED) + ")")
    p.add_argument("--meta", action="store_true", help="evaluate the meta-learner: write meta_quality.{md,json,png}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd",
                   help="the optimizer every task trains with (default sgd; with --meta: whose pretrained learner)")
    p.add_argument("--device", default="cpu", help="where candidates train (default cpu; cuda: the triton backend)")
    p.add_argument("--no-mnist1d", action="store_true", help="skip the MNIST-1D accuracy run")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--render", metavar="JSON", help="write the markdown, plot and summary of an earlier run again "
                   "from its .json (after a change to the report), without training; into its own folder")
    args = p.parse_args(argv)
    if args.render:
        return render(Path(args.render))
    try:
        check_device(args.device)
    except ValueError as e:
        p.error(str(e))
    if args.meta:
        try:
            MetaLearner.pretrained(args.optimizer)
        except ValueError as e:
            p.error(str(e))
    torch.set_num_threads(args.threads)
    known = {t.data: t for t in DEFAULT_TASKS}
    default_tasks = META_TASKS if args.meta else DEFAULT_TASKS
    names = args.tasks.split(",") if args.tasks else [t.data for t in default_tasks]
    tasks = [dataclasses.replace(known.get(n, HarnessTask(n)), optimizer=args.optimizer) for n in names if n]
    methods = {m: ALL_METHODS[m] for m in (args.methods.split(",") if args.methods else
                                           META_COMPARED if args.meta else list(METHODS)) if m}
    extra = [] if args.no_mnist1d or args.meta else [mnist1d_accuracy(device=args.device)]
    results = run_harness(tasks, methods, seeds=range(args.seeds), device=args.device)
    results["extra"] = extra
    results["total_seconds"] += sum(e["seconds"] for e in extra)
    if args.meta:
        results["notes"].append(META_NOTE.replace("pretrained_sgd", f"pretrained_{args.optimizer}"))
        results["notes"].append(meta_training_note(args.optimizer))
    command = "python benchmarks/quality.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    name = ("meta_quality" if args.meta else "quality") + ("" if args.optimizer == "sgd" else f"_{args.optimizer}")
    for path in write(results, args.out, command, name=name, title=title_of(name)):
        print(f"wrote {path}")
    return 0


def title_of(name: str) -> str:
    """The report's title from its file name (quality, meta_quality, and their _adamw variants)."""
    title = "Meta-learner quality (held-out datasets)" if name.startswith("meta") else "Tuner quality"
    return title + (", adamw" if name.endswith("_adamw") else "")


def render(path: Path) -> int:
    """Summary, markdown and plot of an earlier run again from its JSON: the runs themselves are kept as measured,
    and so is the command that measured them."""
    if not path.is_file():
        print(f"quality.py: error: --render: no such file {path}", file=sys.stderr)
        return 2
    results = json.loads(path.read_text())
    if not isinstance(results, dict) or "rows" not in results or "references" not in results:
        print(f"quality.py: error: --render: {path} is not a quality report (.json with rows and references)",
              file=sys.stderr)
        return 2
    command = results.pop("command", "")
    results["summary"] = summarize(results["rows"])
    for out in write(results, path.parent, command, name=path.stem, title=title_of(path.stem)):
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
