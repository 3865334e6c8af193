"""Meta-train the shipped conditioned portfolio on a whole meta-dataset (``build_metadataset.py``'s output) and
write it into the package with its provenance.

    python benchmarks/train_portfolio.py --metadataset metadataset_m256 --es-fine-tune 4

Writes metahp_fast/meta/pretrained_portfolio_<optimizer>.pt (loads with ``torch.load(weights_only=True)``) and
pretrained_portfolio_<optimizer>.json beside it: the command, seed, time, data (datasets, folds, M, protocol)
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
from benchmarks.meta_eval import VARIANTS, fold_encodings, group_portfolio, load_parts  # noqa: E402
from metahp_fast.meta.conditioned import curve_metadatasets  # noqa: E402
from metahp_fast.search_space import SearchSpace  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "metahp_fast" / "meta"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metadataset", required=True, help="a build_metadataset.py output directory")
    ap.add_argument("--variant", default="kernel", choices=sorted(VARIANTS))
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
    folds = sorted({int(q["fold"]) for q in parts})
    prov = {"command": "python benchmarks/train_portfolio.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "seed": manifest["seed"], "seconds": time.perf_counter() - t0, "torch_threads": args.threads,
            "torch": torch.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "variant": args.variant, "config": {k: v for k, v in vars(p.config).items()},
            "data": {"datasets": names, "folds": folds, "configurations": len(manifest["u"]),
                     "protocol": {k: manifest[k] for k in ("optimizer", "hidden", "epochs", "max_steps",
                                                            "batch_size", "checkpoints", "seed")},
                     "metadataset_command": f"python benchmarks/build_metadataset.py --out DIR --datasets keel "
                                            f"--min-rows 500 --folds {len(folds)} --configs {len(manifest['u'])} "
                                            f"--epochs {manifest['epochs']:g} --max-steps {manifest['max_steps']} "
                                            f"--checkpoints {manifest['checkpoints']} --seed {manifest['seed']}"},
            "es_fine_tune": {"tasks": p.info.get("es_fine_tune_tasks", []), "log": es},
            "meta_training_curve": p.history}
    out.with_suffix(".json").write_text(json.dumps(prov, indent=1) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json').name} ({prov['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
