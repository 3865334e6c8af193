"""The quality harness: how good and how cheap each tuner's pick is, against a 256-candidate random search.

Per task and seed, a reference random search of 256 candidates trained the full ``steps`` gives ``L_best``
(the lowest test loss of the 256) and ``L_median`` (their median test loss). Each method's pick (its
candidate with the lowest validation loss) is scored by its test loss and accuracy, its normalized regret
``(L - L_best) / (L_median - L_best)`` (0: as good as the best of the 256, 1: as good as a typical one), its
cost in candidate-steps and its wall-clock seconds. ``val_regret`` is the same ratio on validation losses (the
quantity the tuners minimise, free of the validation-to-test noise of small splits).
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from .search_space import SearchSpace
from .tasks import Task, load_task
from .training import TrainConfig, fit, make_population, prepare_task
from .files import json_safe
from .objectives import model_metrics
from .tuners import TUNERS, optuna_available
from .validation import check_device

REFERENCE_SIZE = 256


@dataclass(frozen=True)
class HarnessTask:
    """One task of the harness and how its candidates are trained."""

    data: str
    steps: int = 300
    hidden: tuple[int, ...] = (128,)
    batch_size: int = 128
    optimizer: str = "sgd"


@dataclass(frozen=True)
class Method:
    """A tuner by name (:data:`metahp_fast.tuners.TUNERS`), its budget in full trainings and its options;
    ``init``: ``"meta"`` centers it on the pretrained meta-learner's prediction (warm start), ``"constant"`` on
    the single best average configuration over the meta-training tasks (shipped with it)."""

    tuner: str
    budget: float
    options: dict[str, Any] = field(default_factory=dict)
    init: Optional[str] = None


#: The task set of ``benchmarks/quality.py`` and ``metahp-fast evaluate``.
DEFAULT_TASKS = (HarnessTask("digits"), HarnessTask("wine"), HarnessTask("breast_cancer"), HarnessTask("iris"),
                 HarnessTask("mnist1d", steps=600), HarnessTask("teacher"))
#: The methods compared, by the label used in the tables.
METHODS = {
    "random16": Method("random", 16), "random64": Method("random", 64), "sh16": Method("sh", 16),
    "sh": Method("sh", 64),
    "hyperband": Method("hyperband", 64), "pbt": Method("pbt", 64), "es": Method("es", 64),
    "tpe16": Method("tpe", 16), "tpe64": Method("tpe", 64),
}
#: Cross-validated scoring (``folds``: cuts of train+val, each candidate ``folds`` trainings) at the budgets of
#: their plain counterparts; not in the default run (``--methods``), see benchmarks/results/cross_validation/quality.md.
CV_METHODS = {f"{label}-cv{f}": Method(m.tuner, m.budget, {**m.options, "folds": f})
              for f in (2, 4) for label, m in METHODS.items() if label in ("random64", "sh", "hyperband", "es")}
#: The meta-learner's methods: zero-shot (one training at g's prediction), g + a 16-candidate successive-halving
#: round warm-started from it (half the first rung around the prediction, half drawn from the space: the tuners'
#: ``init_mix``), and the constant predictor (one training at the best average configuration).
META_METHODS = {
    "meta0": Method("random", 1, init="meta"), "meta+sh16": Method("sh", 16, init="meta"),
    "constant": Method("random", 1, init="constant"),
}
#: Every method the harness knows, by label.
ALL_METHODS = {**METHODS, **META_METHODS, **CV_METHODS}
#: The held-out datasets of the meta-learner's evaluation (never seen in meta-training).
META_TASKS = (HarnessTask("wine"), HarnessTask("breast_cancer"), HarnessTask("iris"))


def _device_name(device: str) -> str:
    """``CPU``, or the GPU's name for a CUDA device (what the markdown says the timings ran on)."""
    d = torch.device(device)
    return torch.cuda.get_device_name(d) if d.type == "cuda" else d.type.upper()


def normalized_regret(loss: float, best: float, median: float) -> float:
    """``(loss - best) / (median - best)``; ``nan`` when the reference has no spread."""
    den = median - best
    return (loss - best) / den if den > 0 and math.isfinite(den) else math.nan


def _config(spec: HarnessTask, device: str = "cpu") -> TrainConfig:
    """How the harness trains a task's candidates: the torch backend on the CPU, the fastest backend elsewhere
    (``auto``: triton on CUDA)."""
    return TrainConfig(hidden=spec.hidden, steps=spec.steps, batch_size=spec.batch_size, optimizer=spec.optimizer,
                       backend="torch" if device == "cpu" else "auto", device=device)


def reference(task: Task, spec: HarnessTask, seed: int, size: int = REFERENCE_SIZE,
              device: str = "cpu") -> dict[str, Any]:
    """The 256-candidate random search at full budget (one population): ``L_best``, ``L_median`` and more."""
    config, space = _config(spec, device), SearchSpace.default(spec.optimizer)
    t0 = time.perf_counter()
    pop = make_population(task, space, space.sample_u(size, seed=seed), config, seed)
    fit(pop, task, spec.steps, TrainConfig(**{**asdict(config), "eval_every": spec.steps}), seed)
    val = pop.evaluate(task.x_val, task.y_val)
    test = pop.evaluate(task.x_test, task.y_test)
    seconds = time.perf_counter() - t0
    vloss, tloss = val["loss"].double(), test["loss"].double()
    pick = int(torch.argmin(torch.nan_to_num(vloss, nan=math.inf)))
    return {"L_best": float(torch.nan_to_num(tloss, nan=math.inf).min()), "L_median": float(tloss.median()),
            "V_best": float(torch.nan_to_num(vloss, nan=math.inf).min()), "V_median": float(vloss.median()),
            "L_pick": float(tloss[pick]),
            "accuracy_pick": float(test["accuracy"][pick]) if "accuracy" in test else None,
            "diverged": int((~pop.alive).sum()), "cost_steps": size * spec.steps, "seconds": seconds}


def _warm_start(task: Task, spec: HarnessTask, init: Optional[str]) -> tuple[Optional[torch.Tensor], float]:
    """The center ``u`` for ``init`` (None, "meta" or "constant") and the seconds its prediction took."""
    if init is None:
        return None, 0.0
    if init not in ("meta", "constant"):
        raise ValueError(f"Method.init must be None, 'meta' or 'constant'; got {init!r}")
    from .meta import MetaLearner
    g = MetaLearner.pretrained(spec.optimizer)
    t0 = time.perf_counter()
    u = g.constant if init == "constant" else g.predict_u(task, spec.steps, spec.batch_size)
    if u is None:
        raise ValueError("the pretrained meta-learner has no constant configuration")
    return u, time.perf_counter() - t0


def run_method(task: Task, spec: HarnessTask, label: str, method: Method, seed: int,
               device: str = "cpu") -> dict[str, Any]:
    """Run one method on one task and score its pick on the test split (a warm start's prediction time counts
    in its seconds)."""
    init, predict_seconds = _warm_start(task, spec, method.init)
    config = _config(spec, device)
    tuner = TUNERS[method.tuner](SearchSpace.default(spec.optimizer), hidden=spec.hidden, steps=spec.steps,
                                 batch_size=spec.batch_size, backend=config.backend, device=device, init=init,
                                 **method.options)
    result = tuner.run(task, method.budget, seed=seed)
    test = model_metrics(result.best_model, task)
    # the pick's loss on the task's own validation split (a cross-validated tuner's best_val is a mean over cuts)
    val = model_metrics(result.best_model, task, split="val")["loss"] if tuner.folds > 1 else result.best_val["loss"]
    return {"method": label, "test_loss": test["loss"], "test_accuracy": test.get("accuracy"),
            "val_loss": val, "hparams": result.best_hparams, "cost_steps": result.cost_steps,
            "trainings": result.cost_steps / spec.steps, "seconds": result.seconds + predict_seconds}


def run_harness(tasks: Sequence[HarnessTask] = DEFAULT_TASKS, methods: Optional[dict[str, Method]] = None,
                seeds: Sequence[int] = (0, 1, 2), log: Callable[[str], None] = print,
                device: str = "cpu") -> dict[str, Any]:
    """Every method on every task and seed, with the reference search, on ``device`` (the torch backend on the
    CPU, triton on CUDA); returns the JSON-ready results."""
    device = str(check_device(device))  # an unusable device fails here, before any work
    methods = dict(METHODS if methods is None else methods)
    notes = []
    if any(m.tuner == "tpe" for m in methods.values()) and not optuna_available():
        skipped = [k for k, m in methods.items() if m.tuner == "tpe"]
        methods = {k: m for k, m in methods.items() if m.tuner != "tpe"}
        notes.append(f"optuna is not installed: {', '.join(skipped)} skipped (pip install optuna)")
        log(notes[-1])
    rows, refs = [], []
    t_start = time.perf_counter()
    for spec in tasks:
        for seed in seeds:
            task = prepare_task(load_task(spec.data, seed=seed), _config(spec, device))
            ref = reference(task, spec, seed, device=device)
            refs.append({"task": spec.data, "seed": seed, **ref})
            log(f"{spec.data} seed {seed}: reference L_best {ref['L_best']:.4f} L_median {ref['L_median']:.4f} "
                f"({ref['seconds']:.1f}s)")
            for label, method in methods.items():
                row = run_method(task, spec, label, method, seed, device)
                row.update(task=spec.data, seed=seed,
                           regret=normalized_regret(row["test_loss"], ref["L_best"], ref["L_median"]),
                           val_regret=normalized_regret(row["val_loss"], ref["V_best"], ref["V_median"]))
                rows.append(row)
                log(f"  {label:>10}: test loss {row['test_loss']:.4f} regret {row['regret']:+.3f} "
                    f"cost {row['trainings']:.1f} trainings {row['seconds']:.1f}s")
    return {"tasks": [asdict(t) for t in tasks], "methods": {k: asdict(m) for k, m in methods.items()},
            "seeds": list(seeds), "reference_size": REFERENCE_SIZE, "references": refs, "rows": rows,
            "summary": summarize(rows), "notes": notes, "torch_threads": torch.get_num_threads(),
            "device": _device_name(device),
            "total_seconds": time.perf_counter() - t_start}


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: the median over tasks of the per-task median (over seeds) regret, test accuracy, cost and
    seconds, the worst regret of any run, and the median per-run speed-ups over TPE-64 and TPE-16 when they
    ran."""
    out: dict[str, dict[str, Any]] = {}
    by = _group(rows, ("method", "task"))
    tpe = {(r["task"], r["seed"]): r["seconds"] for r in rows if r["method"] == "tpe64"}
    tpe16 = {(r["task"], r["seed"]): r["seconds"] for r in rows if r["method"] == "tpe16"}
    for method in dict.fromkeys(r["method"] for r in rows):
        per_task = {task: rs for (m, task), rs in by.items() if m == method}

        def med(key: str) -> float:
            vals = [_median([r[key] for r in rs if r[key] is not None]) for rs in per_task.values()]
            return _median([v for v in vals if not math.isnan(v)])
        def speedup(ref: dict) -> Optional[float]:
            sp = [ref[(r["task"], r["seed"])] / r["seconds"] for rs in per_task.values() for r in rs
                  if (r["task"], r["seed"]) in ref and r["seconds"] > 0]
            return _median(sp) if sp else None
        finite = [r["regret"] for rs in per_task.values() for r in rs
                  if r["regret"] is not None and not math.isnan(r["regret"])]
        out[method] = {"regret": med("regret"), "regret_interval": bootstrap_interval(per_task),
                       "regret_worst": max(finite) if finite else math.nan,
                       "val_regret": med("val_regret"),
                       "test_accuracy": med("test_accuracy"), "trainings": med("trainings"),
                       "seconds": med("seconds"), "speedup_vs_tpe64": speedup(tpe),
                       "speedup_vs_tpe16": speedup(tpe16),
                       "regret_by_task": {t: _median([r["regret"] for r in rs]) for t, rs in per_task.items()}}
    return out


def bootstrap_interval(per_task: dict[str, list[dict[str, Any]]], key: str = "regret", level: float = 0.9,
                       n: int = 2000, seed: int = 0) -> list[float]:
    """A ``level`` bootstrap interval of the median over tasks of the per-task median over seeds: tasks drawn
    with replacement, then runs within each task. How far the headline number could move with other tasks and
    seeds of the same kind: with six small tasks and three seeds, far."""
    groups = [[r[key] for r in rs if r[key] is not None and not math.isnan(r[key])] for rs in per_task.values()]
    groups = [g for g in groups if g]
    if not groups:
        return [math.nan, math.nan]
    gen = torch.Generator().manual_seed(seed)
    stats = []
    for _ in range(n):
        picks = torch.randint(len(groups), (len(groups),), generator=gen).tolist()
        meds = []
        for i in picks:
            g = groups[i]
            meds.append(statistics.median(g[j] for j in torch.randint(len(g), (len(g),), generator=gen).tolist()))
        stats.append(statistics.median(meds))
    stats.sort()
    lo, hi = (1 - level) / 2, (1 + level) / 2
    return [stats[round(lo * (n - 1))], stats[round(hi * (n - 1))]]  # as many draws outside on each side


def reference_pick_regret(results: dict[str, Any]) -> dict[str, Any]:
    """The normalized test regret of each reference search's own pick (its lowest validation loss): per task the
    median over seeds, and the median over tasks, like a method's. What choosing on the validation split costs
    even with 256 full trainings: a floor for the methods' test regret."""
    by: dict[str, list[float]] = {}
    for r in results["references"]:
        by.setdefault(r["task"], []).append(normalized_regret(r["L_pick"], r["L_best"], r["L_median"]))
    per_task = {t: _median(v) for t, v in by.items()}
    return {"by_task": per_task, "median": _median(list(per_task.values()))}


def check_targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 4's quality targets against the summary: regret <= 0.05 for SH or ES at 64 trainings, and TPE-64's
    quality reached >= 20x faster."""
    out = []
    sh_es = {m: summary[m]["regret"] for m in ("sh", "es") if m in summary}
    if sh_es:
        best = min(sh_es, key=lambda m: sh_es[m])
        val = ", ".join(f"{m} {summary[m]['val_regret']:.3f}" for m in sh_es)
        out.append({"target": "SH or ES at 64 trainings: median normalized regret <= 0.05",
                    "measured": f"{best}: {sh_es[best]:.3f}{_interval(summary[best])} (on validation losses: {val})",
                    "met": sh_es[best] <= 0.05})
    if "tpe64" in summary:
        bar = summary["tpe64"]["regret"]
        ok = {m: s["speedup_vs_tpe64"] for m, s in summary.items()
              if m not in ("tpe64", "tpe16") and s["speedup_vs_tpe64"] and s["regret"] <= bar}
        best = max(ok, key=lambda m: ok[m]) if ok else None
        out.append({"target": f"TPE-64's quality (median regret {bar:.3f}) reached >= 20x faster",
                    "measured": f"{best}: {ok[best]:.1f}x faster" if best else "no method matched TPE-64's regret",
                    "met": bool(best and ok[best] >= 20)})
    return out + check_meta_targets(summary)


def check_meta_targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 5's targets: zero-shot regret <= 0.15 and below the constant's; meta + a 16-candidate round <= 0.05,
    better than TPE-16 and >= 20x faster than it."""
    out = []
    if "meta0" in summary:
        m0 = summary["meta0"]["regret"]
        const = summary.get("constant", {}).get("regret")
        out.append({"target": "meta-learner zero-shot: median normalized regret <= 0.15",
                    "measured": f"meta0: {m0:.3f}{_interval(summary['meta0'])} (on validation losses "
                                f"{summary['meta0']['val_regret']:.3f})",
                    "met": m0 <= 0.15})
        if const is not None:
            out.append({"target": "zero-shot below the constant best-average configuration",
                        "measured": f"meta0 {m0:.3f} vs constant {const:.3f} (validation: "
                                    f"{summary['meta0']['val_regret']:.3f} vs {summary['constant']['val_regret']:.3f})",
                        "met": m0 < const})
    if "meta+sh16" in summary:
        ms = summary["meta+sh16"]
        out.append({"target": "meta + 16-candidate round: median normalized regret <= 0.05",
                    "measured": f"meta+sh16: {ms['regret']:.3f}{_interval(ms)} (validation {ms['val_regret']:.3f})",
                    "met": ms["regret"] <= 0.05})
        if "tpe16" in summary:
            t16, sp = summary["tpe16"]["regret"], ms["speedup_vs_tpe16"]
            out.append({"target": "meta + 16-candidate round better than TPE-16 and >= 20x faster",
                        "measured": f"regret {ms['regret']:.3f} vs TPE-16 {t16:.3f}, "
                                    f"{sp:.1f}x faster" if sp else "TPE-16 timing missing",
                        "met": bool(ms["regret"] < t16 and sp and sp >= 20)})
    return out


def to_markdown(results: dict[str, Any], command: str = "", title: str = "Tuner quality") -> str:
    """The summary table, per-task regrets and the targets, as markdown."""
    s = results["summary"]
    tasks = [t["data"] for t in results["tasks"]]
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Made by `{command}` ({results['total_seconds'] / 60:.1f} min, {results['torch_threads']} "
                  f"torch thread(s), {results.get('device', 'CPU')}).", ""]
    lines += [f"Tasks: {', '.join(tasks)}; seeds {results['seeds']}. Reference: a {results['reference_size']}-"
              "candidate random search at full budget per task and seed. `regret` = (L - L_best) / (L_median - "
              "L_best) with L the test loss of the method's pick and L_best, L_median the lowest and the median "
              "test loss of the 256; `val regret`: the same on validation losses (what the tuners minimise). "
              "Medians over seeds, then over tasks; `90% interval`: a bootstrap interval of the median regret "
              "(tasks resampled, then seeds within each), how far it could move on other tasks and seeds of the "
              "same kind; `worst`: the largest regret of any task and seed (a pick that overfits a small validation "
              "split lands far above the median). Cost in full trainings (candidate-steps / steps); wall seconds "
              "of the tuning run.", ""]
    lines += ["| method | median regret | 90% interval | worst | median val regret | test accuracy | cost (trainings) "
              "| wall s | speed-up vs TPE-64 | speed-up vs TPE-16 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m, v in s.items():
        sp = f"{v['speedup_vs_tpe64']:.1f}x" if v["speedup_vs_tpe64"] else "-"
        sp16 = f"{v['speedup_vs_tpe16']:.1f}x" if v.get("speedup_vs_tpe16") else "-"
        lo, hi = v.get("regret_interval", (None, None))
        lines.append(f"| {m} | {v['regret']:.3f} | {_fmt(lo)} to {_fmt(hi)} | {_fmt(v.get('regret_worst'))} | "
                     f"{v['val_regret']:.3f} | "
                     f"{_fmt(v['test_accuracy'])} | "
                     f"{v['trainings']:.1f} | {v['seconds']:.2f} | {sp} | {sp16} |")
    floor = reference_pick_regret(results)
    lines += ["", "On small splits the test regret is dominated by the noise of choosing on a small validation "
              "split: the reference search's own pick (\"test loss of pick\" below) is often far from L_best, "
              "so `val regret` is the measure of the search itself. The noise floor: the 256-candidate reference "
              f"search, choosing by validation loss among 4x the trainings of a 64-training method, has a median "
              f"test regret of {floor['median']:.3f} itself (per task: "
              + ", ".join(f"{t} {v:.3f}" for t, v in floor["by_task"].items()) + ").", ""]
    lines += ["Median regret per task:", "", "| method | " + " | ".join(tasks) + " |",
              "|---|" + "---|" * len(tasks)]
    for m, v in s.items():
        lines.append(f"| {m} | " + " | ".join(_fmt(v["regret_by_task"].get(t)) for t in tasks) + " |")
    lines += ["", "Reference searches (pick: the candidate with the lowest validation loss):", "",
              "| task | seed | L_best | L_median | test loss of pick | accuracy of pick | diverged | wall s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results["references"]:
        lines.append(f"| {r['task']} | {r['seed']} | {r['L_best']:.4f} | {r['L_median']:.4f} | {r['L_pick']:.4f} "
                     f"| {_fmt(r['accuracy_pick'])} | {r['diverged']} | {r['seconds']:.1f} |")
    targets = check_targets(s)
    if targets or results.get("extra"):
        lines += ["", "Targets:", ""]
        for t in targets:
            lines.append(f"- {t['target']}: {t['measured']} -> **{'met' if t['met'] else 'missed'}**")
        for t in results.get("extra", []):
            lines.append(f"- {t['target']}: {t['measured']} -> **{'met' if t['met'] else 'missed'}**")
    for n in results.get("notes", []):
        lines += ["", f"Note: {n}"]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: str | Path) -> None:
    """Test and validation regret against wall-clock seconds: one point per run, per-method medians large."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import readable_log_axis
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key, title in ((axes[0], "regret", "test loss"), (axes[1], "val_regret", "validation loss")):
        for i, (m, v) in enumerate(results["summary"].items()):
            rs = [r for r in results["rows"] if r["method"] == m and math.isfinite(r[key])]
            c = colors[i % len(colors)]
            ax.scatter([r["seconds"] for r in rs], [r[key] for r in rs], s=10, alpha=0.35, color=c)
            ax.scatter([v["seconds"]], [v[key]], s=90, color=c, edgecolor="black", label=m, zorder=3)
        ax.set_xscale("log")
        secs = [r["seconds"] for r in results["rows"] if r["seconds"] > 0]
        if secs:
            readable_log_axis(ax.xaxis, min(secs), max(secs))
        ax.set_yscale("symlog", linthresh=0.1)
        ax.axhline(0.05, color="gray", lw=0.8, ls="--", label="target 0.05" if key == "regret" else None)
        ax.set_xlabel("wall-clock seconds per run (log)")
        ax.set_ylabel(f"normalized regret on {title} (symlog)")
        ax.set_title(f"regret on {title} vs wall-clock (large: median)")
    axes[0].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out_dir: str | Path, command: str = "", name: str = "quality",
          title: str = "Tuner quality") -> list[Path]:
    """<name>.md, <name>.json and <name>.png into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.json", out / f"{name}.png"]
    paths[0].write_text(to_markdown(results, command, title))
    paths[1].write_text(json.dumps(json_safe({**results, "command": command}), indent=1, default=str,
                                   allow_nan=False))  # strict JSON: an empty interval's NaN as null
    plot(results, paths[2])
    return paths


def _group(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def _median(values: list[float]) -> float:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else math.nan


def _interval(summary_row: dict[str, Any]) -> str:
    """`` (90% interval a to b)`` for a method's summary row, empty for rows written before intervals existed."""
    lo, hi = summary_row.get("regret_interval", (None, None))
    return "" if lo is None else f" (90% interval {_fmt(lo)} to {_fmt(hi)})"


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


__all__ = ["HarnessTask", "Method", "DEFAULT_TASKS", "METHODS", "META_METHODS", "ALL_METHODS", "META_TASKS",
           "REFERENCE_SIZE", "normalized_regret", "reference", "reference_pick_regret", "run_method", "run_harness",
           "summarize", "check_targets", "check_meta_targets", "to_markdown", "plot", "write"]
