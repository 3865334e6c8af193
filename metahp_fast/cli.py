"""The ``metahp-fast`` command: ``tune`` with one of the tuners, warm-started by the pretrained meta-learner, and
write a report (the default command), ``train`` K candidates and save the best, ``evaluate`` the tuners with the
quality harness, ``meta-train`` a meta-learner, ``suggest`` hyperparameters with one, and ``predict`` with a
saved model.

Parse, call, print: data comes from :mod:`metahp_fast.tasks`, tuning from :mod:`metahp_fast.tuners` (whose
:class:`~metahp_fast.tuners.TuneResult` writes the report and draws the leaderboard), training from
:class:`metahp_fast.Population`. Each command is one function taking the parsed arguments; :data:`COMMANDS`
maps the names to them and :data:`PARSERS` to their argument builders. Nothing imports this module.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from .backends.base import ACTIVATIONS, PRECISIONS
from .tuners.result import fmt_hparams, leaderboard

#: How to use a saved best.pt, printed after writing one.
LOAD_HINT = ("use it on new rows with metahp-fast predict --model PATH --data rows.csv, or in Python with "
             "metahp_fast.load_model(path).predict(csv_path_or_array)")


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


def _seed(text: str) -> int:
    """A seed torch's generators take: a whole number from 0 to 2**63 - 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63 - 1; got {text!r}") from None
    if not 0 <= v < 2 ** 63:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63 - 1; got {text!r}")
    return v


def _budget(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of full trainings; got {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of full trainings; got {text!r}")
    return v


#: Below this many validation rows, ``tune`` suggests ``--folds`` (wine, iris and breast cancer have 30-114).
FOLDS_HINT_ROWS = 150
#: What ``tune`` and ``evaluate`` write into ``--out``: a run stops before any work if one is there (``--overwrite``;
#: a checkpoint.pt beside them, of a run started with ``--overwrite``, resumes and replaces them).
TUNE_OUTPUTS = ("report.json", "best.pt", "learning_curves.png", "hparams.png")
QUALITY_OUTPUTS = ("quality.md", "quality.json", "quality.png")

#: Python argument names in the library's messages, and the flag a command-line user typed for each.
FLAGS = {"backend": "--backend", "seed": "--seed", "device": "--device", "optimizer": "--optimizer",
         "steps": "--steps", "batch_size": "--batch-size", "budget": "--budget", "hidden": "--hidden",
         "target": "--target", "objective": "--objective", "path": "--model", "folds": "--folds"}


def _usage(e: Exception, **flags: str) -> UsageError:
    """A library error as a usage error that names the flag: ``backend must be ...`` -> ``--backend: backend
    must be ...`` (``flags`` overrides :data:`FLAGS`, e.g. ``path="--meta-model"``)."""
    msg = str(e)
    for name, flag in {**FLAGS, **flags}.items():
        if msg.startswith(name) and msg[len(name):len(name) + 1] in (" ", ":", "="):
            return UsageError(f"{flag}: {msg[len(name) + 1:].lstrip()}" if msg[len(name)] == ":" else
                              f"{flag}: {msg}")
    return UsageError(msg)


def _ranges(text: str) -> dict[str, tuple[float, float]]:
    """``"lr=1e-4:3,momentum=0:0.9"`` -> ``{"lr": (1e-4, 3.0), "momentum": (0.0, 0.9)}``."""
    out = {}
    for part in (w.strip() for w in text.split(",") if w.strip()):
        name, _, rng = part.partition("=")
        low, sep, high = rng.partition(":")
        try:
            out[name.strip()] = (float(low), float(high))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME=LOW:HIGH, e.g. lr=1e-4:3; got {part!r}") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=LOW:HIGH, e.g. lr=1e-4:3; got {part!r}")
    if not out:
        raise argparse.ArgumentTypeError("expected NAME=LOW:HIGH,...; got nothing")
    return out


def _names(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def _widths(text: str) -> list[int]:
    """``"128"`` or ``"128,64"`` -> hidden widths."""
    return [_positive(w.strip()) for w in text.split(",") if w.strip()] or [_positive(text)]


def _add_file_args(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """How a data file is read: its target column, what the target is, its missing cells (every command that
    takes --data reads a file the same way)."""
    p.add_argument("--target", help="target column of a .csv file (default: the last column)")
    p.add_argument("--kind", choices=("auto", "classification", "regression"), default="auto" if defaults else None,
                   help="what the target is (default auto: strings, integers and whole numbers are classes)")
    p.add_argument("--missing", choices=("drop", "fill"), default="drop" if defaults else None,
                   help="a .csv file's missing cells: drop their rows, or fill them (numbers: the training "
                   "split's median; categories: a '(missing)' category) (default drop)")


def _add_common_args(p: argparse.ArgumentParser) -> None:
    """The data, model, training and run options that ``train`` and ``tune`` share."""
    p.add_argument("--data", default="digits",
                   help="built-in or generated dataset (digits, wine, breast_cancer, iris, mnist1d, teacher, "
                   "gaussian_mixture; families take key=value parameters: teacher:noise=0.2) or a .npz/.csv file "
                   "(default digits)")
    _add_file_args(p)
    p.add_argument("--steps", type=_positive, default=300, help="steps of one full training (default 300)")
    p.add_argument("--batch-size", type=_positive, default=128, help="minibatch size (default 128)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="sgd or adamw (default sgd)")
    p.add_argument("--hidden", type=_widths, action="append",
                   help="hidden layer widths, repeatable or a comma list: --hidden 128,64 (default 128)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="the hidden layers' nonlinearity (default relu)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seeds the split, the sampling and the training (default 0)")
    p.add_argument("--backend", default="auto", help="auto, torch, reference or triton (default auto)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="the triton backend's dot precision on a GPU: tf32 (its default), ieee (exact fp32) or bf16 "
                   "(bf16 inputs, fp32 accumulation); the CPU backends compute in fp32")
    p.add_argument("--top", type=_positive, default=5, help="leaderboard rows (default 5)")


def _add_suggest_args(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The options of a hyperparameter suggestion: ``suggest``'s, and the deprecated ``predict`` without a model's
    (``defaults=False``: None unless given, so that predicting with a model can refuse them)."""
    p.add_argument("--data", default="digits" if defaults else None,
                   help="built-in or generated dataset, or a .npz/.csv file (default digits)" if defaults else
                   "a .csv file of new rows (columns by name, as in training) or a .npz file with an array 'x'")
    _add_file_args(p, defaults)
    for flag, kw in (("--steps", dict(type=_positive, default=300, help="training steps (default 300)")),
                     ("--batch-size", dict(type=_positive, default=128, help="minibatch size (default 128)")),
                     ("--optimizer", dict(choices=("sgd", "adamw"), default="sgd",
                                          help="whose pretrained learner, and the space of the suggestion "
                                          "(default sgd)")),
                     ("--seed", dict(type=_seed, default=0, help="seeds the split (default 0)"))):
        p.add_argument(flag, **{**kw, "default": kw["default"] if defaults else None})


def _train_parser(sub: Any) -> None:
    t = sub.add_parser("train", help="train K candidates from the default search space, save the best",
                       description="Train K candidates with hyperparameters sampled from the default search "
                       "space, print a leaderboard, test the best (by validation loss) and save it.")
    _add_common_args(t)
    t.add_argument("--size", type=_positive, default=32, help="number of candidates K (default 32)")
    t.add_argument("--out", default="best.pt",
                   help="where to save the best model: a file, or a directory to hold best.pt (default best.pt)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the model file an earlier run left in --out (without it such files stop the run)")


def _tune_parser(sub: Any) -> None:
    from .tuners import TUNERS
    u = sub.add_parser("tune", help="tune with random search, successive halving, Hyperband, PBT, ES or TPE",
                       description="Tune the hyperparameters of an MLP with one of the tuners, print a leaderboard, "
                       "and write report.json, best.pt (and with --plot, PNG plots) into --out. A killed run "
                       "resumes from --out/checkpoint.pt when started again with the same arguments (Ctrl-C prints "
                       "the command). One run at a time writes to an --out: a second is refused while it runs.")
    _add_common_args(u)
    u.add_argument("--method", choices=sorted(TUNERS), default="sh", help="the tuner (default sh)")
    u.add_argument("--budget", type=_budget, default=16.0,
                   help="budget in full trainings: at most budget * steps candidate-steps (default 16: a short "
                   "round after the meta-learner's prediction)")
    u.add_argument("--space", type=_ranges, metavar="NAME=LOW:HIGH,...",
                   help="new ranges for hyperparameters of the default search space, each keeping its scale: "
                   "--space lr=1e-4:3,weight_decay=1e-7:1e-2 (default sgd: lr 0.001:1 log, momentum 0:0.99, "
                   "weight_decay 1e-06:0.01 log)")
    u.add_argument("--objective", choices=("loss", "error"), default="loss",
                   help="validation objective to minimise: loss, or error = 1 - accuracy (default loss)")
    u.add_argument("--folds", type=_positive, default=1,
                   help="score every candidate by its mean validation objective over FOLDS cuts of train+val "
                   "(the dataset's own split first; each candidate costs FOLDS trainings of the budget): steadier "
                   "picks on small validation splits (default 1: the validation split alone)")
    u.add_argument("--out", default="tune-out", help="output directory (default tune-out)")
    u.add_argument("--plot", action="store_true", help="also write learning_curves.png and hparams.png")
    u.add_argument("--overwrite", action="store_true",
                   help="replace the report.json, best.pt and plots an earlier run left in --out (without it such files "
                   "stop the run), and start over where an interrupted run left a checkpoint.pt")
    u.add_argument("--meta", action=argparse.BooleanOptionalAction, default=True,
                   help="warm start: half the initial candidates around the pretrained meta-learner's prediction "
                   "for this dataset and budget (the first exactly at it), half drawn from the search space "
                   "(default on; --no-meta draws them all from the space)")
    u.add_argument("--meta-model", metavar="PATH",
                   help="a meta-learner file from meta-train for the warm start (default: the pretrained one)")
    u.add_argument("--no-progress", action="store_true", help="no progress bar")


def _evaluate_parser(sub: Any) -> None:
    from .quality import ALL_METHODS, DEFAULT_TASKS, METHODS
    e = sub.add_parser("evaluate", help="run the quality harness: every tuner against a 256-candidate search",
                       description="Run the quality harness: for each task and seed, a 256-candidate random search "
                       "gives L_best and L_median; each method's pick is scored by test loss, normalized regret, "
                       "cost and wall-clock. Writes quality.md, quality.json and quality.png into --out. The default "
                       "run takes about 15 minutes on one CPU thread; --tasks iris --seeds 1 is a quick look.")
    e.add_argument("--tasks", type=_names, default=[t.data for t in DEFAULT_TASKS],
                   help=f"comma list of datasets (default {','.join(t.data for t in DEFAULT_TASKS)})")
    e.add_argument("--methods", type=_names, default=list(METHODS),
                   help=f"comma list of methods (default {','.join(METHODS)}; also {','.join(ALL_METHODS.keys() - METHODS.keys())})")
    e.add_argument("--seeds", type=_positive, default=3, help="number of seeds, 0..N-1 (default 3)")
    e.add_argument("--steps", type=_positive, help="steps of one full training for every task (default: per task)")
    e.add_argument("--threads", type=_positive, default=1,
                   help="torch CPU threads (default 1: robust timings on a shared machine)")
    e.add_argument("--device", default="cpu",
                   help="torch device the candidates train on (default cpu; on cuda the triton backend)")
    e.add_argument("--out", default="quality-results", help="output directory (default quality-results)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace the quality.md, quality.json and quality.png an earlier run left in --out (without it such files stop the run)")


def _meta_train_parser(sub: Any) -> None:
    from .meta.train import META_STEPS, N_TASKS
    m = sub.add_parser("meta-train", help="meta-train a meta-learner on the task distribution",
                       description="Meta-train a meta-learner g(x, y) -> hyperparameters (sgd) on tasks drawn from "
                       "the meta-training distribution (synthetic families, digits and MNIST-1D variants; wine, "
                       "breast_cancer and iris are held out) and save it. A killed run resumes from "
                       "<out>.checkpoint when started again with the same arguments. The defaults take about 4 minutes "
                       "on one CPU thread.")
    m.add_argument("--tasks", type=_positive, default=N_TASKS, help=f"training tasks (default {N_TASKS})")
    m.add_argument("--meta-steps", type=_positive, default=META_STEPS, help=f"meta-steps (default {META_STEPS})")
    m.add_argument("--seed", type=_seed, default=0, help="seeds the task distribution and meta-training")
    m.add_argument("--out", default="meta.pt",
                   help="where to save the learner: a file, or a directory to hold meta.pt (default meta.pt)")
    m.add_argument("--plot", help="also write the meta-training curve to this PNG file")
    m.add_argument("--overwrite", action="store_true",
                   help="replace the meta-learner file an earlier run left in --out (without it such files stop the run)")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")


def _suggest_parser(sub: Any) -> None:
    s = sub.add_parser("suggest", help="suggest hyperparameters for a dataset with a meta-learner (zero-shot)",
                       description="Print the hyperparameters a meta-learner predicts for a dataset and a training "
                       "budget, as JSON (default: the pretrained learner shipped with the package).")
    _add_suggest_args(s)
    s.add_argument("--meta-model", metavar="PATH",
                   help="a meta-learner file from meta-train (default: the pretrained one)")
    s.add_argument("--k", type=_positive, default=1,
                   help="how many suggestions (default 1; a portfolio of k > 1 is not shipped yet)")


def _predict_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="predict labels (or class probabilities) for new rows with a saved model",
                       description="Predict with a model that tune or train saved: one label (or with --proba, "
                       "one probability per class) for each row of --data, printed as CSV or written to --out. "
                       "(Without --model, predict suggests hyperparameters as 'suggest' does: deprecated, kept "
                       "for one release.)")
    p.add_argument("--model", metavar="PATH", help="a model file (best.pt) from tune or train")
    p.add_argument("--proba", action="store_true",
                   help="class probabilities, one column per class named by the class, instead of labels")
    p.add_argument("--out", metavar="PATH", help="write the predictions to this CSV file (default: print them)")
    p.add_argument("--overwrite", action="store_true", help="replace the file --out names if it exists")
    _add_suggest_args(p, defaults=False)  # deprecated: read only when predict stands in for suggest


#: The commands by name, each with the function that adds its arguments (:data:`COMMANDS` has the function that
#: runs it): a new command is one entry in each.
PARSERS: dict[str, Callable[[Any], None]] = {"train": _train_parser, "tune": _tune_parser,
                                               "evaluate": _evaluate_parser, "meta-train": _meta_train_parser,
                                               "suggest": _suggest_parser, "predict": _predict_parser}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="metahp-fast", description="Tune small dense networks by training a population of "
                     "hyperparameter candidates at once. 'tune' is the default command: the pretrained meta-learner's "
                     "zero-shot prediction plus a short successive-halving round.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for add in PARSERS.values():
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 nothing usable trained, 2 bad arguments, 130
    interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        import difflib
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        print(f"metahp-fast: error: unknown command {argv[0]!r}"
              + (f"; did you mean {close[0]!r}?" if close else f"; the commands are {', '.join(COMMANDS)}")
              + " (options alone run 'tune')", file=sys.stderr)
        return 2
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help", "--version"):
        argv.insert(0, "tune")
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv  # what was run, for the command that resumes it
        return COMMANDS[args.command](args)
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
    from .model_file import save_model
    from .objectives import model_metrics

    hidden = _hidden(args)
    task, caught = _load_task(args)
    try:
        space = SearchSpace.default(args.optimizer)
        layers = task.layers(hidden)
        pop = Population(layers, args.size, args.optimizer, hparams=space.sample(args.size, seed=args.seed),
                         loss=task.loss, seed=args.seed, activation=args.activation, device=args.device,
                         backend=args.backend, precision=args.precision)
    except (ValueError, TypeError, ImportError) as e:
        raise _usage(e) from None
    out = _check_out(args.out, "best.pt", args.overwrite, data=args.data)
    task = task.to(pop.device)
    _print_task(task, args, caught)
    print(f"training {args.size} candidates: {args.optimizer}, layers {'-'.join(map(str, layers))} "
          f"({args.activation}), backend {pop.backend}, {args.steps} steps of batch {args.batch_size}")
    pop.fit(task.x_train, task.y_train, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
            progress=not args.no_progress, x_val=task.x_val, y_val=task.y_val)

    val = {k: v.cpu() for k, v in pop.evaluate(task.x_val, task.y_val).items()}
    usable = pop.alive.cpu() & torch.isfinite(val["loss"])
    hps = {k: v.detach().cpu().double() for k, v in pop.hparams.items() if k in space.names}
    print(leaderboard(val, usable, {k: hps[k] for k in space.dims}, args.top))
    if not usable.any():
        print("metahp-fast: every candidate diverged; try a smaller learning-rate range or more data",
              file=sys.stderr)
        return 1
    best = int(torch.where(usable, val["loss"], torch.inf).argmin())
    model = pop.to_module(best).cpu().eval()
    test = model_metrics(model, task.to("cpu"))
    best_hp = {k: float(v[best]) for k, v in hps.items()}
    print(f"best: candidate {best} ({fmt_hparams(best_hp)}): val loss {float(val['loss'][best]):.4f}"
          + (f", val accuracy {float(val['accuracy'][best]):.4f}" if "accuracy" in val else ""))
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
    replaced = out.exists()
    save_model(out, model, task, hparams=best_hp, optimizer=args.optimizer, layers=list(layers), loss=task.loss,
               activation=args.activation, task=task.name, seed=args.seed, steps=args.steps, candidate=best,
               val_loss=float(val["loss"][best]),
               val_accuracy=float(val["accuracy"][best]) if "accuracy" in val else None,
               test_loss=test["loss"], test_accuracy=test.get("accuracy"))
    print(f"saved the best model to {out}" + (" (replaced the previous file)" if replaced else "") + "; " + LOAD_HINT)
    return 0


def tune(args: argparse.Namespace) -> int:
    """One tuner in this process, holding --out's lock: checks, the task, the run (:func:`_tune_in`). A study on
    shared storage (``--storage``/``--study``/``--workers``) is another path and would branch off first."""
    from .tuners.lock import LockedError, OutputLock

    space, tuner = _tuner(args)  # every option is checked before the data loads and --out is created
    learner = _meta_model(args) if args.meta_model else None
    task, caught = _load_task(args)
    out, created = _out_dir(args.out)
    try:
        with OutputLock(out, "metahp-fast " + shlex.join(args.argv)) as lock:
            _refuse_earlier(out, TUNE_OUTPUTS, args.overwrite or (out / "checkpoint.pt").exists(), args.out)
            _print_task(task, args, caught)
            if lock.note:
                print(f"note: {lock.note}")
            return _tune_in(out, args, task, space, tuner, learner)
    except LockedError as e:
        raise UsageError(f"--out {args.out!r}: {e}") from None
    finally:
        _remove_if_empty(out, created)


def _tune_in(out: Path, args: argparse.Namespace, task, space, tuner, learner) -> int:
    """The tuning run of ``tune`` in ``out`` (locked): warm start, resume or start over, tune, write."""
    init, prediction, meta_note = (_meta_init(task, args, space, learner) if args.meta else
                                   (None, None, "off (--no-meta)"))
    if init is not None:
        tuner = _tuner(args, init)[1]
    print(f"warm start: {meta_note}")
    if args.folds == 1 and len(task.y_val) < FOLDS_HINT_ROWS:
        print(f"note: only {len(task.y_val)} validation rows: the lowest validation loss can belong to a model that "
              "overfits them; --folds 2 scores every candidate on two cuts of train+val instead (on the quality "
              "harness's small datasets it cut the worst test regret of successive halving from 10.9 to 1.2 at the "
              "same budget: benchmarks/results/cross_validation/quality.md)")
    ckpt = out / "checkpoint.pt"
    if args.overwrite and ckpt.exists():
        ckpt.unlink()
        print(f"note: removed the checkpoint.pt an interrupted run left in {out} (--overwrite starts over)")
    print(f"tuning with {args.method}: budget {args.budget:g} full trainings of {args.steps} steps "
          f"({int(args.budget * args.steps)} candidate-steps), {args.optimizer}, layers "
          f"{'-'.join(map(str, task.layers(_hidden(args))))} ({args.activation})"
          + (f", every candidate scored over {args.folds} cuts of train+val (val columns: their mean)"
             if args.folds > 1 else "")
          + (" (resuming from checkpoint.pt)" if ckpt.exists() else ""))
    try:
        result = tuner.run(task, args.budget, seed=args.seed, checkpoint=ckpt)
    except KeyboardInterrupt:
        _interrupted(ckpt, [a for a in args.argv if a != "--overwrite"])  # --overwrite would start over
        return 130
    except RuntimeError as e:
        print(f"metahp-fast: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # e.g. a checkpoint.pt of another run
        raise UsageError(f"{e} (or add --overwrite to start over)" if str(ckpt) in str(e) else str(_usage(e))) \
            from None
    _print_result(result, args)
    try:
        _write_outputs(result, out, args, meta_note, prediction is not None)
    except KeyboardInterrupt:
        _interrupted(ckpt, [a for a in args.argv if a != "--overwrite"])
        return 130
    ckpt.unlink(missing_ok=True)
    return 0


def _interrupted(ckpt: Path, resume: list[str]) -> None:
    """Say what an interrupted run saved in ``ckpt`` and the exact command (``resume``) that resumes it."""
    if ckpt.exists():
        print(f"metahp-fast: interrupted; the rounds finished so far are saved in {ckpt}\n"
              f"resume with: metahp-fast {shlex.join(resume)}", file=sys.stderr)
    else:
        print("metahp-fast: interrupted before the first round finished; nothing was saved", file=sys.stderr)


def _print_result(result, args: argparse.Namespace) -> None:
    """The leaderboard, the warm start's own trial, the pick with its validation and test metrics, notes, cost."""
    print(result.leaderboard(args.top))
    zero_shot = result.init_trial()
    if zero_shot is not None:
        print(f"zero-shot: the meta-learner's prediction, trained as candidate {zero_shot['id']}, reached val loss "
              f"{zero_shot['val_loss']:.4f} after {zero_shot['steps']} steps"
              + (", where the round stopped it" if zero_shot["steps"] < args.steps else ""))
    print(f"best: candidate {result.best_id} ({fmt_hparams(result.best_hparams)}): "
          + ", ".join(f"val {k} {v:.4f}" for k, v in result.best_val.items()))
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in result.test_metrics().items()))
    for line in result.notes():
        print(f"note: {line}")
    print(f"cost: {result.cost_steps} candidate-steps ({result.cost_steps / args.steps:.1f} full trainings), "
          f"{result.seconds:.1f} s")


def _write_outputs(result, out: Path, args: argparse.Namespace, meta_note: str, from_meta: bool) -> None:
    """report.json, best.pt and with --plot the plots, then what was written and replaced."""
    from .plots import plot_hparams, plot_learning_curves

    replaced = [n for n in TUNE_OUTPUTS if (out / n).exists()]
    # meta_prediction and zero_shot_trial: the report's init_hparams and init_trial under their earlier names
    result.save_report(out / "report.json", data=args.data, warm_start=meta_note,
                       meta_prediction=result.init_hparams if from_meta else None,
                       zero_shot_trial=result.init_trial() if from_meta else None)
    result.save(out / "best.pt")
    written = ["report.json", "best.pt"]
    if args.plot:
        try:
            from .search_space import SearchSpace
            plot_learning_curves(result, out / "learning_curves.png")
            plot_hparams(result, SearchSpace.from_dict(result.config["space"]), out / "hparams.png")
            written += ["learning_curves.png", "hparams.png"]
        except ImportError as e:
            print(f"metahp-fast: no plots: {e}", file=sys.stderr)
    stale = [n for n in ("learning_curves.png", "hparams.png") if n not in written and (out / n).exists()]
    if stale:
        print(f"note: {', '.join(stale)} in {out} {'are' if len(stale) > 1 else 'is'} from an earlier run (this one "
              "drew no plots; add --plot)")
    print(f"wrote {', '.join(written)} to {out}"
          + (f" (replacing the previous run's {', '.join(n for n in replaced if n in written)})"
             if any(n in written for n in replaced) else "")
          + "; " + LOAD_HINT)


def _tuner(args: argparse.Namespace, init: Optional[Tensor] = None):
    """The search space and the tuner ``tune``'s options ask for (usage errors naming the flag)."""
    from .search_space import SearchSpace
    from .tuners import TUNERS

    try:
        space = SearchSpace.default(args.optimizer)
        if args.space:
            space = space.with_ranges(args.space)
        tuner = TUNERS[args.method](space, optimizer=args.optimizer, hidden=_hidden(args), activation=args.activation,
                                    steps=args.steps, batch_size=args.batch_size, objective=args.objective,
                                    backend=args.backend, device=args.device, precision=args.precision,
                                    folds=args.folds, progress=not args.no_progress, init=init)
        tuner.check_budget(args.budget)
    except (ValueError, TypeError, ImportError) as e:
        raise _usage(e, ranges="--space") from None
    if args.meta_model and not args.meta:
        raise UsageError("--meta-model: given with --no-meta, which turns the warm start off; drop one of them")
    return space, tuner


def _hidden(args: argparse.Namespace) -> list[int]:
    return [w for group in (args.hidden or [[128]]) for w in group]


def _load_task(args: argparse.Namespace):
    """The task ``--data`` names, read as the file options say, and the warnings reading it raised."""
    from .tasks import load_task

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            task = load_task(args.data, seed=args.seed, target=args.target, kind=args.kind, missing=args.missing)
        except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
            raise _usage(e) from None
    return task, caught


def _print_task(task, args: argparse.Namespace, caught) -> None:
    """The target column first when the user did not name it (a CSV's last column), then the task and the notes
    reading it gave (e.g. how many rows with missing values were dropped)."""
    target = task.meta.get("target")
    if target is not None and args.target is None:
        print(f"target: column {target!r}, the last of {args.data} (--target NAME picks another)")
    print(f"{task!r}")
    for w in caught:
        print(f"note: {w.message}")


def _meta_model(args: argparse.Namespace):
    """The learner in ``--meta-model``, checked against ``--optimizer``."""
    from .meta import MetaLearner

    try:
        g = MetaLearner.load(args.meta_model)
    except (ValueError, FileNotFoundError) as e:
        raise _usage(e, path="--meta-model") from None
    if g.config.optimizer != args.optimizer:
        raise UsageError(f"--meta-model: {args.meta_model!r} predicts for {g.config.optimizer!r}, not "
                         f"--optimizer {args.optimizer!r}")
    return g


def _meta_init(task, args: argparse.Namespace, space, g=None) -> tuple[Optional[Tensor], Optional[dict], str]:
    """The meta-learner's prediction for the task and budget (``g``, else the pretrained one) as ``u`` of the
    tuner's ``space`` (clipped into its ranges), its natural hyperparameters, and a line describing the warm
    start (None, None and the reason where there is none)."""
    from .meta import MetaLearner
    from .tuners.base import meta_center

    if task.loss != "cross_entropy":
        return None, None, "none (the meta-learners are meta-trained on classification tasks only)"
    if g is None:
        try:
            g = MetaLearner.pretrained(args.optimizer)
        except ValueError as e:
            return None, None, f"none ({str(e).removeprefix('optimizer: ')})"
    u = meta_center(g, space, task, args.steps, args.batch_size)
    hp = {k: float(v) for k, v in space.from_unconstrained(u, include_fixed=False).items()}
    start = ("ES starts its center there" if args.method == "es" else
             "half the initial candidates start around it, the first exactly at it")
    who = f"the meta-learner {args.meta_model}" if args.meta_model else "the pretrained meta-learner"
    caveat = "" if args.activation == "relu" else f" (meta-trained on relu networks, used here for {args.activation})"
    return u, hp, f"{who} predicts {fmt_hparams(hp)} (zero-shot){caveat}; {start}"


def meta_train(args: argparse.Namespace) -> int:
    import dataclasses

    from .meta.train import DEFAULT_CONFIG, meta_train as run

    out = _check_out(args.out, "meta.pt", args.overwrite)
    ckpt = out.with_name(out.name + ".checkpoint")
    print(f"meta-training on {args.tasks} tasks for {args.meta_steps} meta-steps"
          + (f" (resuming from {ckpt.name})" if ckpt.exists() else ""))
    try:
        g, _ = run(dataclasses.replace(DEFAULT_CONFIG, seed=args.seed), args.tasks, args.meta_steps,
                   checkpoint=ckpt, progress=not args.no_progress, plot=args.plot)
    except KeyboardInterrupt:
        _interrupted(ckpt, args.argv)
        return 130
    except (ValueError, ImportError) as e:
        raise _usage(e) from None
    g.save(out)
    ckpt.unlink(missing_ok=True)
    last = g.history[-min(10, len(g.history)):]
    print(f"meta-objective (val loss at g's u / prior loss, mean of the last {len(last)} meta-steps): "
          f"{sum(h['objective'] for h in last) / len(last):.4f}")
    print(f"saved the meta-learner to {out}; use it with: metahp-fast suggest --meta-model {out} --data ..., or "
          f"metahp-fast tune --meta-model {out} ...")
    return 0


def suggest(args: argparse.Namespace, learner=None) -> int:
    """Print the meta-learner's hyperparameters for ``--data`` as JSON (notes on stderr)."""
    from .meta import MetaLearner
    from .tasks import load_task

    if args.k > 1:
        raise UsageError(f"--k: a portfolio of {args.k} suggestions is not shipped yet (the meta-learner predicts "
                         "one set of hyperparameters); use --k 1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            g = learner or (MetaLearner.load(args.meta_model) if args.meta_model else
                            MetaLearner.pretrained(args.optimizer))
            task = load_task(args.data, seed=args.seed, target=args.target, kind=args.kind, missing=args.missing)
            hp = g.predict(task, steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer)
        except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
            raise _usage(e, path="--meta-model") from None
    for w in caught:  # stdout is the JSON; notes go to stderr
        print(f"note: {w.message}", file=sys.stderr)
    print(json.dumps({"data": args.data, "steps": args.steps, "batch_size": args.batch_size,
                      "optimizer": args.optimizer, "hparams": hp}, indent=1))
    return 0


def predict(args: argparse.Namespace) -> int:
    """Labels (or with --proba class probabilities) for the rows of ``--data`` from the model in ``--model``, as
    CSV on stdout or in ``--out``. Without a model file it stands in for ``suggest`` (deprecated)."""
    from .model_file import load_model

    if args.model is None:
        return _deprecated_suggest(args, None, "without --model")
    try:
        model = load_model(args.model)
    except FileNotFoundError:
        raise UsageError(f"--model: no meta-learner file or model file at {args.model!r}") from None
    except ValueError:
        learner = _meta_learner_or_none(args.model)
        if learner is None:
            raise UsageError(f"--model: {args.model!r} is neither a model file (best.pt from tune or train) nor a "
                             "meta-learner file") from None
        return _deprecated_suggest(args, learner, f"--model {args.model} (a meta-learner file)")
    given = [f"--{k.replace('_', '-')}" for k, v in vars(args).items() if k in SUGGEST_DEFAULTS and v is not None]
    if given:
        raise UsageError(f"{given[0]}: applies to suggesting hyperparameters (metahp-fast suggest), not to "
                         "predicting with a model")
    if args.data is None:
        raise UsageError("--data: give the rows to predict for: a .csv file (columns by name, as in training) or a "
                         ".npz file with an array 'x'")
    out = _check_out(args.out, "predictions.csv", args.overwrite, data=args.data) if args.out else None
    try:
        rows = _rows(args.data)
        labels = model.predict_proba(rows) if args.proba else model.predict(rows)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise _usage(e, data="--data", predict_proba="--proba") from None
    text = _predictions_csv(labels, model.class_names if args.proba else None)
    if out is None:
        sys.stdout.write(text)
    else:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
        print(f"wrote {len(labels)} {'probability rows' if args.proba else 'predictions'} to {out}")
    return 0


#: The options ``predict`` takes only while it stands in for ``suggest``, with suggest's defaults.
SUGGEST_DEFAULTS = {"steps": 300, "batch_size": 128, "optimizer": "sgd", "seed": 0, "target": None, "kind": "auto",
                    "missing": "drop"}


def _deprecated_suggest(args: argparse.Namespace, learner, form: str) -> int:
    """``predict`` in its earlier meaning (hyperparameters for --data), with a note on stderr."""
    if args.proba or args.out:
        raise UsageError(f"{'--proba' if args.proba else '--out'}: needs --model, a model file (best.pt) from tune "
                         "or train")
    for k, v in SUGGEST_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.data = args.data or "digits"
    print(f"note: 'metahp-fast predict {form}' suggesting hyperparameters is deprecated and will be removed in the "
          f"next release; use 'metahp-fast suggest --data {args.data}"
          + (f" --meta-model {args.model}" if learner is not None else "") + "'", file=sys.stderr)
    args.meta_model, args.k = None, 1
    return suggest(args, learner)


def _meta_learner_or_none(path: str):
    """The meta-learner in ``path``, or None if it is not one."""
    from .meta import MetaLearner
    try:
        return MetaLearner.load(path)
    except (ValueError, FileNotFoundError):
        return None


def _rows(data: str) -> Any:
    """New rows for a saved model: a .csv path as it is (the model reads its columns by name), or a .npz file's
    array ``x``."""
    import numpy as np

    if data.endswith(".npz"):
        if not Path(data).is_file():
            raise FileNotFoundError(f"no such data file: {data!r}")
        with np.load(data) as f:
            if "x" not in f:
                raise ValueError(f"{data!r} has no array 'x' (it has {sorted(f.files)})")
            return f["x"]
    if not data.endswith(".csv"):
        raise ValueError(f"predict reads new rows from a .csv or .npz file; got {data!r}")
    return data


def _predictions_csv(values: Any, classes: Optional[list[str]]) -> str:
    """Predictions as CSV text: a column ``prediction`` (labels or values; ``prediction_i`` per regression output),
    or one column per class named by the class (probabilities)."""
    import csv
    import io

    import numpy as np

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if classes is not None:
        w.writerow(classes)
        w.writerows([[f"{p:.6g}" for p in row] for row in np.asarray(values)])
    elif isinstance(values, np.ndarray) and values.ndim == 2:
        w.writerow([f"prediction_{i}" for i in range(values.shape[1])])
        w.writerows([[f"{v:.6g}" for v in row] for row in values])
    elif isinstance(values, np.ndarray):  # one regression output
        w.writerow(["prediction"])
        w.writerows([[f"{float(v):.6g}"] for v in values])
    else:  # class labels as the model names them
        w.writerow(["prediction"])
        w.writerows([[v] for v in values])
    return buf.getvalue()


def evaluate(args: argparse.Namespace) -> int:
    from .quality import ALL_METHODS, DEFAULT_TASKS, HarnessTask, run_harness, write

    unknown = [m for m in args.methods if m not in ALL_METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown {unknown}; choose from {list(ALL_METHODS)}")
    known = {t.data: t for t in DEFAULT_TASKS}
    tasks = [known.get(name, HarnessTask(name)) for name in args.tasks]
    if args.steps:
        tasks = [HarnessTask(t.data, args.steps, t.hidden, t.batch_size, t.optimizer) for t in tasks]
    out = _check_dir(args.out, QUALITY_OUTPUTS, args.overwrite)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    command = (f"metahp-fast evaluate --tasks {','.join(args.tasks)} --methods {','.join(args.methods)} "
               f"--seeds {args.seeds} --threads {args.threads}" + (f" --steps {args.steps}" if args.steps else "")
               + (f" --device {args.device}" if args.device != "cpu" else ""))
    try:
        results = run_harness(tasks, {m: ALL_METHODS[m] for m in args.methods}, seeds=range(args.seeds),
                              device=args.device)
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise _usage(e) from None
    finally:
        torch.set_num_threads(threads)
    paths = write(results, out, command)
    print((out / "quality.md").read_text())
    print(f"wrote {', '.join(p.name for p in paths)} to {out}")
    return 0


def _check_dir(path: str, outputs: tuple[str, ...], overwrite: bool) -> Path:
    """An output directory for ``outputs``, created if needed; fails before any work if it cannot be written or
    already holds one of ``outputs`` and ``overwrite`` is off: nothing an earlier run saved is lost unasked."""
    out = _as_dir(path)
    _refuse_earlier(out, outputs, overwrite, path)
    _writable_dir(out, f"--out {path!r}")
    return out


def _as_dir(path: str) -> Path:
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {path!r} is a file; give a directory")
    return out


def _refuse_earlier(out: Path, outputs: tuple[str, ...], overwrite: bool, path: str) -> None:
    """A usage error if ``out`` (``--out path``) holds one of ``outputs`` and ``overwrite`` is off."""
    earlier = [n for n in outputs if (out / n).exists()]
    if earlier and not overwrite:
        raise UsageError(f"--out {path!r} already holds {', '.join(earlier)} from an earlier run; give another "
                         "--out, or add --overwrite to replace them")


def _out_dir(path: str) -> tuple[Path, Optional[Path]]:
    """The output directory ``path``, created (with its parents) if needed and checked writable, and the topmost
    directory this call created (None if it existed), for :func:`_remove_if_empty`."""
    out = _as_dir(path)
    top = None
    for d in (out, *out.parents):
        if d.exists():
            break
        top = d
    _writable_dir(out, f"--out {path!r}")
    return out, top


def _remove_if_empty(out: Path, top: Optional[Path]) -> None:
    """Remove ``out`` and its parents up to ``top`` (the directories a run created) if it left them empty."""
    if top is None:
        return
    for d in (out, *out.parents):
        try:
            d.rmdir()  # only an empty directory goes
        except OSError:
            return
        if d == top:
            return


def _same_file(out: Path, data: str) -> bool:
    """Whether ``out`` names the file ``data`` (a dataset file, not a built-in name)."""
    d = Path(data).expanduser()
    return d.exists() and out.exists() and os.path.samefile(out, d)


def _writable_dir(d: Path, what: str) -> None:
    """Create the directory ``d`` if needed; fail before any work if it cannot be written."""
    if d.exists() and not d.is_dir():
        raise UsageError(f"{what}: {d} is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{what}: cannot create {d}: {e.strerror}") from None
    if not os.access(d, os.W_OK):
        raise UsageError(f"{what}: {d} is not writable")


def _check_out(path: str, name: str, overwrite: bool, data: Optional[str] = None) -> Path:
    """Where to write a model file: ``path``, or ``path/name`` when ``path`` is a directory or ends with a slash
    (as ``tune --out DIR`` takes one); fails before training, not after, if it cannot be written there, if it
    is the ``data`` file, or if a file is there already and ``overwrite`` is off."""
    out = Path(path).expanduser()
    if out.is_dir() or path.endswith(("/", os.sep)):
        out = out / name
        if out.is_dir():
            raise UsageError(f"--out {path!r}: {out} is a directory; give a file name")
    if data is not None and _same_file(out, data):
        raise UsageError(f"--out {path!r} is the --data file; give another path for the model")
    if out.exists() and not overwrite:
        there = "the file" if out == Path(path).expanduser() else str(out)
        raise UsageError(f"--out {path!r}: {there} already exists; give another path, or add --overwrite to "
                         "replace it")
    _writable_dir(out.parent if str(out.parent) else Path("."), f"--out {path!r}")
    return out


#: The commands by name, with the function that runs each (its arguments parsed by :data:`PARSERS`' entry).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": train, "tune": tune, "evaluate": evaluate, "meta-train": meta_train, "suggest": suggest,
    "predict": predict}


if __name__ == "__main__":
    raise SystemExit(main())
