"""Leave-datasets-out evaluation of portfolios on a meta-dataset (``build_metadataset.py``'s output).

    python benchmarks/meta_eval.py --metadataset metadataset --out benchmarks/results/meta_eval
    python benchmarks/meta_eval.py --metadataset metadataset --out ... --conditioned kernel,mlp --es-fine-tune 4

The datasets (KEEL's, where the meta-dataset has others too: those are meta-training data only) are split into
5 fixed groups (seeded, recorded in the results); each group is held out once while the portfolios are built on
the other four and the meta-training-only datasets. Per held-out dataset and method: on every fold, the member
with the lowest validation loss is picked and its test loss taken; the mean over folds is normalized against
the dataset's whole pool of M configurations (0: the pool's best fold-mean test loss, 1: its median). Averaging
over folds before comparing is what keeps small test splits from deciding. Reported: medians and means over
datasets with 90% bootstrap intervals, and per pair of methods the win rate with a paired sign test.

Always evaluated from the pool (no training): ``constant``, ``greedy``, ``random`` (expected value over draws),
the whole pool, and ``nearest`` (:class:`~metahp_fast.meta.nearest.NearestPortfolio`: the greedy portfolio of the
training datasets weighted by closeness in size and steps; its group files go to METADATASET/portfolios/nearest/).
Where the build's parts/ are absent (a clone), its committed curves.pt is read instead.

``--conditioned VARIANT,...``: per held-out group, a :class:`~metahp_fast.meta.conditioned.ConditionedPortfolio`
meta-trained on the other groups' datasets (every point of their learning curves) proposes k = 1 and k = 8
configurations for each held-out fold; they are not in the pool, so they are trained for real, as one
population with the meta-dataset's own protocol (same initial weights, minibatches and steps), and scored like
the others. The group portfolios are saved under METADATASET/portfolios/VARIANT/ (the tuner warm-start
comparison in realworld.py reads them), the trained proposals under METADATASET/conditioned/VARIANT/.
``--es-fine-tune N`` adds the variant VARIANT+es: the same portfolios fine-tuned with the ES hypergradient on
the N smallest training datasets of their group (fold 0) before proposing.
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

from benchmarks.build_metadataset import load_fold  # noqa: E402
from metahp_fast.files import load_file, save_file  # noqa: E402
from metahp_fast.meta.conditioned import ConditionedPortfolio, PortfolioConfig, curve_metadatasets  # noqa: E402
from metahp_fast.meta.encoder import encode  # noqa: E402
from metahp_fast.meta.metadataset import (CURVES_KIND, MetaDataset, normalize, part_name, train_pool,  # noqa: E402
                                          unpack_curves)
from metahp_fast.meta.nearest import NearestPortfolio  # noqa: E402
from metahp_fast.meta.portfolio import constant_portfolio, greedy_portfolio  # noqa: E402
from metahp_fast.search_space import SearchSpace  # noqa: E402
from metahp_fast.training import TrainConfig  # noqa: E402

N_GROUPS = 5


def groups(names: list[str], n_groups: int = N_GROUPS, seed: int = 0) -> list[list[str]]:
    """Datasets in ``n_groups`` fixed groups: a seeded permutation of the sorted names, dealt round-robin."""
    order = np.random.default_rng(seed).permutation(sorted(names))
    return [sorted(order[g::n_groups].tolist()) for g in range(n_groups)]


def evaluated(names: list[str]) -> list[str]:
    """The datasets held out in turn: KEEL's where the meta-dataset has any (its other datasets, such as
    scikit-learn's sets, MNIST-1D and the synthetic families, are meta-training data only), else all."""
    keel = [n for n in names if n.startswith("keel:")]
    return keel or list(names)


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
    gs = groups(evaluated(meta.datasets), n_groups, seed)
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


#: Conditioned-portfolio variants: PortfolioConfig options.
VARIANTS = {"kernel": {}, "mlp": {"surrogate": "mlp"}, "kernel-wide": {"bandwidth": 0.25, "prior": 1.0},
            "kernel-reg": {"noise": 0.5, "weight_decay": 0.05}}


def load_parts(directory: str) -> tuple[dict, list[dict]]:
    """The manifest and every part record of a build: its parts/, or the committed curves.pt where the parts
    are absent (a clone of the repository)."""
    manifest = json.loads((Path(directory) / "manifest.json").read_text())
    parts = [load_file(p, "meta-dataset-part") for p in sorted(glob.glob(str(Path(directory) / "parts" / "*.pt")))]
    if not parts and (Path(directory) / "curves.pt").is_file():
        parts = unpack_curves(load_file(Path(directory) / "curves.pt", CURVES_KIND),
                              torch.tensor(manifest["u"], dtype=torch.float64))
    if not parts:
        raise SystemExit(f"{directory}: no parts and no curves.pt")
    return manifest, parts


def nearest_portfolio(manifest: dict, parts: list[dict], metas: list[MetaDataset], steps: list[torch.Tensor],
                      names: list[str], train: list[str]) -> NearestPortfolio:
    """A :class:`NearestPortfolio` of the ``train`` datasets' complete trainings (the curves' end: an earlier
    point is a training cut short, not one planned for that budget)."""
    rows = {p["dataset"]: int(p["rows"]) for p in parts if int(p["fold"]) == 0}
    keep = [names.index(n) for n in train]
    return NearestPortfolio.fit([metas[-1].subset(train)], [steps[-1][keep]], rows, float(manifest["epochs"]),
                                int(manifest["max_steps"]), int(manifest["batch_size"]))


def nearest_scores(directory: str, result: dict, meta: MetaDataset, ks=(1, 8)) -> None:
    """Add ``nearest-k`` scores to ``result`` in place: per held-out group a :class:`NearestPortfolio` of the
    other groups (saved under METADATASET/portfolios/nearest/); its members for each held-out dataset's size and
    steps are taken from the pool."""
    manifest, parts = load_parts(directory)
    metas, steps, names = curve_metadatasets(parts, meta.space, meta.u)
    rows = {p["dataset"]: int(p["rows"]) for p in parts if int(p["fold"]) == 0}
    pdir = Path(directory) / "portfolios" / "nearest"
    pdir.mkdir(parents=True, exist_ok=True)
    for g, held in enumerate(result["groups"]):
        p = nearest_portfolio(manifest, parts, metas, steps, names, [n for n in names if n not in held])
        p.save(pdir / f"group{g}.pt")
        for name in held:
            d = meta.datasets.index(name)
            final = steps[-1][names.index(name)]
            n_steps = int(round(float(final[final > 0].double().log().mean().exp())))
            for k in ks:
                result["scores"][name][f"nearest-{k}"] = normalized_test(
                    meta, d, pick_and_test(meta, d, p.members(rows[name], n_steps, k)))
        print(f"nearest: group {g} done, bandwidths {p.bandwidths}", flush=True)


def fold_encodings(directory: str, names: list[str], steps: torch.Tensor, manifest: dict) -> torch.Tensor:
    """(D, F, features) task encodings of every (dataset, fold) at its final steps (cached in the build)."""
    path = Path(directory) / "encodings.pt"
    if path.exists():
        f = load_file(path, "meta-encodings")
        if f["datasets"] == names and f["steps"].shape == steps.shape and torch.equal(f["steps"], steps):
            return f["encodings"]
    enc = []
    for d, name in enumerate(names):
        enc.append(torch.stack([encode(load_fold(name, f), max(1, int(steps[d, f])), manifest["batch_size"],
                                       manifest["optimizer"]).cpu() for f in range(steps.shape[1])]))
    enc = torch.stack(enc)
    save_file(path, "meta-encodings", {"datasets": names, "steps": steps, "encodings": enc})
    return enc


def group_portfolio(metas: list[MetaDataset], steps: list[torch.Tensor], enc: torch.Tensor, train: list[str],
                    options: dict, manifest: dict) -> ConditionedPortfolio:
    """A conditioned portfolio meta-trained on the ``train`` datasets only."""
    names = metas[0].datasets
    rows = [names.index(n) for n in train]
    cfg = PortfolioConfig(**{"epochs": float(manifest["epochs"]), "max_steps": int(manifest["max_steps"]),
                             "batch_size": int(manifest["batch_size"]), "seed": int(manifest["seed"]), **options})
    p = ConditionedPortfolio(metas[0].space, cfg)
    return p.fit([m.subset(train) for m in metas], [s[rows] for s in steps], enc[rows])


def train_proposals(p: ConditionedPortfolio, name: str, fold: int, steps: int, ks, manifest: dict,
                    path: Path) -> dict:
    """Propose k configurations for each k in ``ks`` on (name, fold) and train them all as one population with
    the meta-dataset's protocol; cached at ``path`` (reused only for the same proposals)."""
    task = load_fold(name, fold)
    u = torch.cat([p.propose_u(task, k, budget=steps, batch_size=manifest["batch_size"]) for k in ks])
    if path.exists():
        cached = load_file(path, "conditioned-eval")
        if cached["u"].shape == u.shape and torch.equal(cached["u"], u):
            return cached
    config = TrainConfig(hidden=tuple(manifest["hidden"]), steps=steps, batch_size=manifest["batch_size"],
                         optimizer=manifest["optimizer"])
    rec = train_pool(task, p.space, u, config, seed=manifest["seed"], n_checkpoints=manifest["checkpoints"])
    out = {"dataset": name, "fold": fold, "ks": list(ks), "u": u, "val": rec["val_loss"][-1],
           "test": rec["test_loss"][-1], "seconds": rec["seconds"]}
    save_file(path, "conditioned-eval", out)
    return out


def conditioned_scores(directory: str, result: dict, meta: MetaDataset, variants: list[str], es_tasks: int = 0,
                       ks=(1, 8)) -> None:
    """Add ``conditioned-<variant>-k`` scores (and ``+es`` ones with ``es_tasks``) to ``result`` in place."""
    manifest, parts = load_parts(directory)
    u = torch.tensor(manifest["u"], dtype=torch.float64)
    metas, steps, names = curve_metadatasets(parts, meta.space, u)
    final_steps = steps[-1]
    enc = fold_encodings(directory, names, final_steps, manifest)
    rows = {p["dataset"]: int(p["rows"]) for p in parts}
    for variant in variants:
        if variant.removesuffix("+es") not in VARIANTS:
            raise SystemExit(f"--conditioned: unknown variant {variant!r}; choose from {list(VARIANTS)}")
        tags = [variant] + ([variant + "+es"] if es_tasks else [])
        for g, held in enumerate(result["groups"]):
            train = [n for n in names if n not in held]
            p = group_portfolio(metas, steps, enc, train, VARIANTS[variant], manifest)
            pdir = Path(directory) / "portfolios" / variant
            pdir.mkdir(parents=True, exist_ok=True)
            p.save(pdir / f"group{g}.pt")
            portfolios = {variant: p}
            if es_tasks:
                q = ConditionedPortfolio.load(pdir / f"group{g}.pt")
                small = sorted(train, key=lambda n: rows[n])[:es_tasks]
                log = q.fine_tune_es([load_fold(n, 0) for n in small], k=max(ks), meta_steps=4,
                                     hidden=tuple(manifest["hidden"]), seed=manifest["seed"])
                q.info["es_fine_tune_tasks"] = small
                q.save(Path(directory) / "portfolios" / variant / f"group{g}+es.pt")
                portfolios[variant + "+es"] = q
                print(f"group {g} ES fine-tune on {small}: soft-min val {[round(r['soft_min_val'], 4) for r in log]}",
                      flush=True)
            for tag in tags:
                cdir = Path(directory) / "conditioned" / tag
                cdir.mkdir(parents=True, exist_ok=True)
                for name in held:
                    d = meta.datasets.index(name)
                    picks = {k: [] for k in ks}
                    for f in range(meta.val.shape[1]):
                        if torch.isnan(meta.val[d, f]).all():
                            continue
                        rec = train_proposals(portfolios[tag], name, f, int(final_steps[names.index(name), f]), ks,
                                              manifest, cdir / part_name(name, f))
                        start = 0
                        for k in ks:
                            v = torch.nan_to_num(rec["val"][start:start + k].double(), nan=math.inf)
                            picks[k].append(float(rec["test"][start + int(v.argmin())]))
                            start += k
                    for k in ks:
                        result["scores"][name][f"conditioned-{tag}-{k}"] = normalized_test(meta, d,
                                                                                          float(np.mean(picks[k])))
                print(f"{tag}: group {g} done", flush=True)


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
    if result.get("training_only"):
        lines += ["", f"Meta-training data only (never held out): {', '.join(result['training_only'])}"]
    lines += ["", "| dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    lines += [f"| {d} | " + " | ".join(f"{scores[d][m]:.3f}" for m in methods) + " |" for d in sorted(scores)]
    return "\n".join(lines) + "\n"


def load_metadataset(directory: str) -> MetaDataset:
    """The build's losses at the end of training (every fold of every dataset)."""
    manifest, parts = load_parts(directory)
    space, u = SearchSpace.from_dict(manifest["space"]), torch.tensor(manifest["u"], dtype=torch.float64)
    return curve_metadatasets(parts, space, u)[0][-1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metadataset", required=True, help="a build_metadataset.py output directory")
    ap.add_argument("--out", required=True, help="directory for meta_eval.json and meta_eval.md")
    ap.add_argument("--groups", type=int, default=N_GROUPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--conditioned", default="", help=f"conditioned-portfolio variants to add, comma-separated "
                    f"({', '.join(VARIANTS)}); their proposals are trained for real on the held-out folds")
    ap.add_argument("--es-fine-tune", type=int, default=0, metavar="N",
                    help="also each variant fine-tuned with the ES hypergradient on N training datasets (+es)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = load_metadataset(args.metadataset)
    if len(evaluated(meta.datasets)) < args.groups:
        ap.error(f"--groups {args.groups} needs at least that many datasets to hold out; the meta-dataset has "
                 f"{len(evaluated(meta.datasets))}")
    result = evaluate(meta, args.groups, seed=args.seed)
    result["training_only"] = [n for n in meta.datasets if n not in evaluated(meta.datasets)]
    nearest_scores(args.metadataset, result, meta)
    if args.conditioned:
        conditioned_scores(args.metadataset, result, meta, args.conditioned.split(","), args.es_fine_tune)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta_eval.json").write_text(json.dumps(result, indent=1))
    text = report(result, "python benchmarks/meta_eval.py " + " ".join(sys.argv[1:] if argv is None else argv))
    (out / "meta_eval.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
