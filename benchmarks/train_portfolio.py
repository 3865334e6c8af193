"""Build a shipped portfolio from a whole meta-dataset (``build_metadataset.py``'s output) and write it into the
package with its provenance: the conditioned one (meta-trained) or the nearest one (the default of tune
--portfolio and suggest --k).

    python benchmarks/train_portfolio.py --metadataset metadataset_m256 --variant kernel-reg
    python benchmarks/train_portfolio.py --metadataset metadataset_m256 --variant nearest

Writes metahp_fast/meta/pretrained_portfolio_<optimizer>.pt (pretrained_nearest_<optimizer>.pt for nearest; both
load with ``torch.load(weights_only=True)``) and the .json beside it: the command, seed, time, data (datasets, folds, M, protocol)
and meta-training curve. The held-out estimate of its quality is benchmarks/meta_eval.py's conditioned rows.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.build_metadataset import load_fold  # noqa: E402
from benchmarks.meta_eval import VARIANTS, fold_encodings, group_portfolio, load_parts, nearest_portfolio  # noqa: E402
from metahp_fast.meta.conditioned import curve_metadatasets  # noqa: E402
from metahp_fast.search_space import SearchSpace  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "metahp_fast" / "meta"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metadataset", required=True, help="a build_metadataset.py output directory")
    ap.add_argument("--variant", default="kernel", choices=sorted(VARIANTS) + ["nearest"],
                    help="a conditioned portfolio variant, or nearest (NearestPortfolio, the shipped default)")
    ap.add_argument("--es-fine-tune", type=int, default=0, metavar="N",
                    help="fine-tune with the ES hypergradient on the N smallest datasets (fold 0)")
    ap.add_argument("--out", default=None, help="the .pt to write (default: the package's pretrained file)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    manifest, parts = load_parts(args.metadataset)
    space = SearchSpace.from_dict(manifest["space"])
    metas, steps, names = curve_metadatasets(parts, space, torch.tensor(manifest["u"], dtype=torch.float64))
    if args.variant == "nearest":
        write_nearest(args, argv, manifest, parts, metas, steps, names, t0)
        return
    enc = fold_encodings(args.metadataset, names, steps[-1], manifest)
    p = group_portfolio(metas, steps, enc, names, VARIANTS[args.variant], manifest)
    es = []
    if args.es_fine_tune:
        rows = {q["dataset"]: int(q["rows"]) for q in parts}
        small = sorted(names, key=lambda n: rows[n])[:args.es_fine_tune]
        es = p.fine_tune_es([load_fold(n, 0) for n in small], k=8, meta_steps=4, hidden=tuple(manifest["hidden"]),
                            seed=manifest["seed"])
        p.info["es_fine_tune_tasks"] = small
    out = Path(args.out) if args.out else PACKAGE / f"pretrained_portfolio_{manifest['optimizer']}.pt"
    p.save(out)
    prov = provenance(args, argv, manifest, parts, names, t0)
    prov.update({"config": {k: v for k, v in vars(p.config).items()},
                 "es_fine_tune": {"tasks": p.info.get("es_fine_tune_tasks", []), "log": es},
                 "meta_training_curve": p.history})
    out.with_suffix(".json").write_text(json.dumps(prov, indent=1) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json').name} ({prov['seconds']:.0f} s)")


def write_nearest(args, argv, manifest, parts, metas, steps, names, t0) -> None:
    """The shipped NearestPortfolio: every dataset's complete trainings, bandwidths chosen leaving each out."""
    p = nearest_portfolio(manifest, parts, metas, steps, names, names)
    out = Path(args.out) if args.out else PACKAGE / f"pretrained_nearest_{manifest['optimizer']}.pt"
    p.save(out)
    prov = provenance(args, argv, manifest, parts, names, t0)
    prov["bandwidths"] = {str(k): h for k, h in p.bandwidths.items()}
    out.with_suffix(".json").write_text(json.dumps(prov, indent=1) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json').name} ({prov['seconds']:.0f} s)")


def provenance(args, argv, manifest: dict, parts: list, names: list, t0: float) -> dict:
    """Command, seed, time and data of a shipped portfolio (written beside it)."""
    folds = sorted({int(q["fold"]) for q in parts})
    return {"command": "python benchmarks/train_portfolio.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "seed": manifest["seed"], "seconds": time.perf_counter() - t0, "torch_threads": args.threads,
            "torch": torch.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "variant": args.variant,
            "data": {"datasets": names, "folds": folds, "configurations": len(manifest["u"]),
                     "protocol": {k: manifest[k] for k in ("optimizer", "hidden", "epochs", "max_steps",
                                                            "batch_size", "checkpoints", "seed")},
                     "metadataset_command": f"python benchmarks/build_metadataset.py --out DIR --datasets keel "
                                            f"--min-rows 500 --folds {len(folds)} --configs {len(manifest['u'])} "
                                            f"--epochs {manifest['epochs']:g} --max-steps {manifest['max_steps']} "
                                            f"--checkpoints {manifest['checkpoints']} --seed {manifest['seed']}"}}


if __name__ == "__main__":
    main()
