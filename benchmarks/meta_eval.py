"""Leave-datasets-out evaluation of portfolios on a meta-dataset (``build_metadataset.py``'s output).

    python benchmarks/meta_eval.py --metadataset metadataset --out benchmarks/results/meta_eval

The datasets are split into 5 fixed groups (seeded, recorded in the results); each group is held out once
while the portfolios are built on the other four. Per held-out dataset and method: on every fold, the member
with the lowest validation loss is picked and its test loss taken; the mean over folds is normalized against
the dataset's whole pool of M configurations (0: the pool's best fold-mean test loss, 1: its median). Averaging
over folds before comparing is what keeps small test splits from deciding. Reported: medians and means over
datasets with 90% bootstrap intervals, and per pair of methods the win rate with a paired sign test.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from metahp_fast.meta.metadataset import MetaDataset, assemble, normalize  # noqa: E402
from metahp_fast.meta.portfolio import constant_portfolio, greedy_portfolio  # noqa: E402
from metahp_fast.search_space import SearchSpace  # noqa: E402

N_GROUPS = 5


def groups(names: list[str], n_groups: int = N_GROUPS, seed: int = 0) -> list[list[str]]:
    """Datasets in ``n_groups`` fixed groups: a seeded permutation of the sorted names, dealt round-robin."""
    order = np.random.default_rng(seed).permutation(sorted(names))
    return [sorted(order[g::n_groups].tolist()) for g in range(n_groups)]


def pick_and_test(meta: MetaDataset, d: int, members: list[int]) -> float:
    """Fold-mean test loss on dataset ``d`` of the member picked by validation loss on each fold."""
    val, test = meta.val[d][:, members], meta.test[d][:, members]
    losses = []
    for f in range(val.shape[0]):
        if torch.isnan(val[f]).all():
            continue  # a fold this dataset lacks
        v = torch.nan_to_num(val[f], nan=math.inf)
        losses.append(float(test[f, int(v.argmin())]))
    return float(np.mean(losses))


def normalized_test(meta: MetaDataset, d: int, loss: float) -> float:
    """``loss`` on dataset ``d`` against its pool: 0 the pool's best fold-mean test loss, 1 its median."""
    pool = normalize(torch.cat([meta.fold_mean("test")[d:d + 1], torch.tensor([[loss]], dtype=torch.float64)], 1))
    return float(pool[0, -1])


def evaluate(meta: MetaDataset, n_groups: int = N_GROUPS, ks=(1, 8), random_ks=(8, 64), draws: int = 200,
             seed: int = 0) -> dict:
    """Normalized test loss per held-out dataset and method (see the module docstring)."""
    rng = np.random.default_rng(seed)
    gs = groups(meta.datasets, n_groups, seed)
    m = meta.u.shape[0]
    scores: dict[str, dict[str, float]] = {}
    for held in gs:
        train = meta.subset([n for n in meta.datasets if n not in held])
        norm = train.normalized("val")
        portfolios = {f"constant-{k}": constant_portfolio(norm, k) for k in ks if k <= m}
        portfolios.update({f"greedy-{k}": greedy_portfolio(norm, k) for k in ks if k <= m and k > 1})
        for name in held:
            d = meta.datasets.index(name)
            row = {method: normalized_test(meta, d, pick_and_test(meta, d, members))
                   for method, members in portfolios.items()}
            for k in random_ks:  # k configurations drawn from the pool, picked by validation: expected value
                if k <= m:
                    row[f"random-{k}"] = float(np.mean([normalized_test(meta, d, pick_and_test(
                        meta, d, rng.choice(m, k, replace=False).tolist())) for _ in range(draws)]))
            row[f"pool-{m}"] = normalized_test(meta, d, pick_and_test(meta, d, list(range(m))))
            scores[name] = row
    return {"groups": gs, "scores": scores}


def bootstrap_median(x: np.ndarray, seed: int = 0, n: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(x, (n, len(x)), replace=True), axis=1)
    return float(np.quantile(meds, 0.05)), float(np.quantile(meds, 0.95))


def sign_test(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """Wins of a over b (lower is better), losses, and the two-sided sign test p-value (ties dropped)."""
    from scipy.stats import binomtest
    wins, losses = int((a < b).sum()), int((a > b).sum())
    return wins, losses, float(binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0


def report(result: dict, command: str) -> str:
    scores = result["scores"]
    methods = list(next(iter(scores.values())))
    table = {mth: np.array([scores[d][mth] for d in scores]) for mth in methods}
    lines = ["# Portfolios, leave datasets out", "", f"Command: `{command}`", "",
             "Normalized fold-mean test loss of each method's pick (0: the pool's best configuration, 1: its "
             "median), per held-out dataset.", "",
             "| method | median | 90% interval of the median | mean |", "|---|---|---|---|"]
    for mth, x in table.items():
        lo, hi = bootstrap_median(x)
        lines.append(f"| {mth} | {np.median(x):.3f} | {lo:.3f}-{hi:.3f} | {x.mean():.3f} |")
    lines += ["", "Win rates (row beats column on a dataset; ties dropped; sign-test p):", "",
              "| | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for a in methods:
        cells = []
        for b in methods:
            if a == b:
                cells.append("-")
                continue
            w, l_, p = sign_test(table[a], table[b])
            cells.append(f"{w}/{w + l_} (p={p:.2f})")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += ["", "Groups (each held out once):", ""] + [f"{i}. {', '.join(g)}" for i, g in enumerate(result["groups"])]
    lines += ["", "| dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    lines += [f"| {d} | " + " | ".join(f"{scores[d][m]:.3f}" for m in methods) + " |" for d in sorted(scores)]
    return "\n".join(lines) + "\n"


def load_metadataset(directory: str) -> MetaDataset:
    manifest = json.loads((Path(directory) / "manifest.json").read_text())
    parts = sorted(glob.glob(str(Path(directory) / "parts" / "*.pt")))
    return assemble(parts, SearchSpace.from_dict(manifest["space"]), torch.tensor(manifest["u"], dtype=torch.float64))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metadataset", required=True, help="a build_metadataset.py output directory")
    ap.add_argument("--out", required=True, help="directory for meta_eval.json and meta_eval.md")
    ap.add_argument("--groups", type=int, default=N_GROUPS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    meta = load_metadataset(args.metadataset)
    if len(meta.datasets) < args.groups:
        ap.error(f"--groups {args.groups} needs at least that many datasets; the meta-dataset has "
                 f"{len(meta.datasets)}")
    result = evaluate(meta, args.groups, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta_eval.json").write_text(json.dumps(result, indent=1))
    text = report(result, "python benchmarks/meta_eval.py " + " ".join(sys.argv[1:] if argv is None else argv))
    (out / "meta_eval.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
