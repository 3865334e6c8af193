"""The ``metahp-fast`` command: train K candidates on a dataset, print a leaderboard, save the best model.

Thin on purpose: data comes from :mod:`metahp_fast.tasks`, hyperparameters from
:mod:`metahp_fast.search_space`, training from :class:`metahp_fast.Population`. Nothing imports this module.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

COMMANDS = ("train",)


class UsageError(Exception):
    """A bad argument: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(message)


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return v


def _widths(text: str) -> list[int]:
    """``"128"`` or ``"128,64"`` -> hidden widths."""
    return [_positive(w.strip()) for w in text.split(",") if w.strip()] or [_positive(text)]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="metahp-fast", description="Tune small dense networks by training a population of "
                     "hyperparameter candidates at once. 'train' is the default command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    t = sub.add_parser("train", help="train K candidates from the default search space, save the best",
                       description="Train K candidates with hyperparameters sampled from the default search "
                       "space, print a leaderboard, test the best (by validation loss) and save it.")
    t.add_argument("--data", default="digits",
                   help="built-in dataset (digits, wine, breast_cancer, iris) or a .npz/.csv file (default digits)")
    t.add_argument("--target", help="target column of a .csv file (default: the last column)")
    t.add_argument("--size", type=_positive, default=32, help="number of candidates K (default 32)")
    t.add_argument("--steps", type=_positive, default=300, help="training steps (default 300)")
    t.add_argument("--batch-size", type=_positive, default=128, help="minibatch size (default 128)")
    t.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    t.add_argument("--hidden", type=_widths, action="append",
                   help="hidden layer widths, repeatable or a comma list: --hidden 128,64 (default 128)")
    t.add_argument("--seed", type=int, default=0, help="seeds the split, the sampling and the training")
    t.add_argument("--backend", default="auto", help="auto, torch, reference or triton (default auto)")
    t.add_argument("--device", default="cpu", help="torch device (default cpu)")
    t.add_argument("--top", type=_positive, default=5, help="leaderboard rows (default 5)")
    t.add_argument("--out", default="best.pt", help="where to save the best model (default best.pt)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 nothing usable trained, 2 bad arguments)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS + ("-h", "--help", "--version"):
        argv.insert(0, "train")
    try:
        args = build_parser().parse_args(argv)
        return train(args)
    except UsageError as e:
        print(f"metahp-fast: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print("metahp-fast: interrupted", file=sys.stderr)
        return 130


def train(args: argparse.Namespace) -> int:
    from . import Population, SearchSpace
    from .tasks import load_task

    hidden = [w for group in (args.hidden or [[128]]) for w in group]
    try:
        task = load_task(args.data, seed=args.seed, target=args.target)
        space = SearchSpace.default(args.optimizer)
        hp = space.sample(args.size, seed=args.seed)
        layers = task.layers(hidden)
        pop = Population(layers, args.size, args.optimizer, hparams=hp, loss=task.loss, seed=args.seed,
                         device=args.device, backend=args.backend)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        raise UsageError(str(e)) from None
    out = _check_out(args.out)
    task = task.to(pop.device)
    print(f"{task!r}")
    print(f"training {args.size} candidates: {args.optimizer}, layers {'-'.join(map(str, layers))}, "
          f"backend {pop.backend}, {args.steps} steps of batch {args.batch_size}")
    pop.fit(task.x_train, task.y_train, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
            progress=not args.no_progress, x_val=task.x_val, y_val=task.y_val)

    val = {k: v.cpu() for k, v in pop.evaluate(task.x_val, task.y_val).items()}
    usable = pop.alive.cpu() & torch.isfinite(val["loss"])
    hps = {k: v.detach().cpu().double() for k, v in pop.hparams.items() if k in space.names}
    print(_leaderboard(val, usable, {k: hps[k] for k in space.dims}, args.top))
    if not usable.any():
        print("metahp-fast: every candidate diverged; try a smaller learning-rate range or more data",
              file=sys.stderr)
        return 1
    best = int(torch.where(usable, val["loss"], torch.inf).argmin())
    model = pop.to_module(best).cpu().eval()
    test = _test_metrics(model, task.to("cpu"))
    best_hp = {k: float(v[best]) for k, v in hps.items()}
    print(f"best: candidate {best} ({_fmt_hp(best_hp)}): val loss {float(val['loss'][best]):.4f}"
          + (f", val accuracy {float(val['accuracy'][best]):.4f}" if "accuracy" in val else ""))
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
    payload = {"model": model, "hparams": best_hp, "optimizer": args.optimizer, "layers": list(layers),
               "loss": task.loss, "mean": task.mean.cpu(), "std": task.std.cpu(), "class_names": task.class_names,
               "task": task.name, "seed": args.seed, "steps": args.steps, "candidate": best,
               "val_loss": float(val["loss"][best]),
               "val_accuracy": float(val["accuracy"][best]) if "accuracy" in val else None,
               "test_loss": test["loss"], "test_accuracy": test.get("accuracy")}
    replaced = out.exists()
    _atomic_save(payload, out)
    print(f"saved the best model to {out}" + (" (replaced the previous file)" if replaced else "")
          + "; load it with torch.load(path, weights_only=False) and feed it (x - mean) / std")
    return 0


def _check_out(path: str) -> Path:
    """Fail before training, not after, if the model cannot be written to ``path``."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise UsageError(f"--out {path!r} is a directory; give a file name such as {os.path.join(path, 'best.pt')}")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--out {path!r}: {parent} is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {path!r}: cannot create {parent}: {e.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {path!r}: {parent} is not writable")
    return out


def _atomic_save(obj: Any, out: Path) -> None:
    """torch.save into a temporary file next to ``out``, then rename it over ``out`` in one step."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@torch.no_grad()
def _test_metrics(model: nn.Module, task) -> dict[str, float]:
    """Loss (and accuracy) of the exported model itself on the test split: what the saved file gives."""
    out = model(task.x_test)
    if task.is_classification:
        return {"loss": float(nn.functional.cross_entropy(out, task.y_test)),
                "accuracy": float((out.argmax(1) == task.y_test).float().mean())}
    return {"loss": float(nn.functional.mse_loss(out, task.y_test))}


def _fmt_hp(hp: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in hp.items())


def _leaderboard(val: dict[str, Tensor], usable: Tensor, hps: dict[str, Tensor], top: int) -> str:
    """The best ``top`` candidates by validation loss, then the diverged ones."""
    order = [int(i) for i in torch.argsort(torch.where(usable, val["loss"], torch.inf)) if usable[i]]
    dead = [int(i) for i in torch.nonzero(~usable).flatten()]
    headers = ["rank", "id", *hps, "val_loss"] + (["val_acc"] if "accuracy" in val else [])
    rows = []
    for r, i in enumerate(order[:top], 1):
        row = [str(r), str(i), *(f"{float(v[i]):.3g}" for v in hps.values()), f"{float(val['loss'][i]):.4f}"]
        if "accuracy" in val:
            row.append(f"{float(val['accuracy'][i]):.4f}")
        rows.append(row)
    for i in dead[:top]:
        rows.append(["-", str(i), *(f"{float(v[i]):.3g}" for v in hps.values()), "diverged"]
                    + (["-"] if "accuracy" in val else []))
    widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    note = []
    if len(order) > top:
        note.append(f"{len(order) - top} more trained")
    if len(dead) > top:
        note.append(f"{len(dead) - top} more diverged")
    title = f"leaderboard ({len(order)} of {len(order) + len(dead)} candidates trained, {len(dead)} diverged)"
    return "\n".join([title, *lines] + ([f"({', '.join(note)} not shown)"] if note else []))


if __name__ == "__main__":
    raise SystemExit(main())
