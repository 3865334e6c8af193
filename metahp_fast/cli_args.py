"""The ``metahp-fast`` command's arguments: one parser per command (:data:`PARSERS`), the argument types, and
:func:`usage`, which turns a library error into a one-line usage error naming the flag the user typed.
:mod:`metahp_fast.cli` runs the commands."""
from __future__ import annotations

import argparse
from typing import Any, Callable

from .backends.base import PRECISIONS
from .model import ACTIVATIONS
from .preprocessing import DEFAULT_SCALING, SCALINGS
from .tuners.base import DEFAULT_EPOCHS, DEFAULT_MAX_STEPS, DEFAULT_STEPS


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


#: Python argument names in the library's messages, and the flag a command-line user typed for each.
FLAGS = {"backend": "--backend", "seed": "--seed", "device": "--device", "optimizer": "--optimizer",
         "steps": "--steps", "batch_size": "--batch-size", "budget": "--budget", "hidden": "--hidden",
         "target": "--target", "objective": "--objective", "path": "--model", "folds": "--folds"}


def usage(e: Exception, **flags: str) -> UsageError:
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
    p.add_argument("--scaling", choices=SCALINGS, default=DEFAULT_SCALING,
                   help="how features are scaled, fitted on the train split and saved with the model: standard "
                   "(mean/std), robust (median/IQR, smooth clip at 3) or quantile (normal scores of the training "
                   f"quantiles at midpoint ranks) (default {DEFAULT_SCALING})")
    p.add_argument("--steps", type=_positive, default=DEFAULT_STEPS,
                   help=f"steps of one full training (default {DEFAULT_STEPS}; tune: sized by --epochs)")
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
                   "weight_decay 1e-06:0.01 log); the structural ones width, depth (whole numbers) and dropout "
                   "(within [0, 1)) are added when named: --space depth=1:3,width=64:256,dropout=0:0.3 (a "
                   "candidate of depth d takes the first d --hidden widths, the last repeated; width sets every "
                   "hidden layer's)")
    u.add_argument("--objective", choices=("loss", "error"), default="loss",
                   help="validation objective to minimise: loss, or error = 1 - accuracy (default loss)")
    u.add_argument("--folds", type=_positive, default=1,
                   help="score every candidate by its mean validation objective over FOLDS cuts of train+val "
                   "(the dataset's own split first; each candidate costs FOLDS trainings of the budget): steadier "
                   "picks on small validation splits (default 1: the validation split alone)")
    u.set_defaults(steps=None)
    u.add_argument("--epochs", type=float, default=None,
                   help=f"size one full training to the data: this many passes over the train split in minibatches, "
                   f"at most --max-steps (default {DEFAULT_EPOCHS:g} unless --steps is given, which fixes the steps "
                   f"instead; a --study's trials: {DEFAULT_STEPS} steps)")
    u.add_argument("--max-steps", type=_positive, default=DEFAULT_MAX_STEPS,
                   help=f"cap on the steps --epochs gives (default {DEFAULT_MAX_STEPS})")
    u.add_argument("--early-stopping", action="store_true",
                   help="judge every candidate at its best validation evaluation so far instead of its last (with "
                   "--refit best the pick is retrained for that length); off by default: on the real-table "
                   "benchmark it changed little")
    u.add_argument("--refit", choices=("off", "best", "full"), default=None,
                   help="retrain the pick on the train and validation rows together before saving it: for the "
                   "length of its best validation evaluation (best, the default without --ensemble) or the full "
                   "steps (full), in epochs; off saves the model trained on the train rows")
    u.add_argument("--ensemble", type=int, default=0, metavar="M",
                   help="save an ensemble of the run's best models instead of the single pick: M greedy additions "
                   "(with replacement) chosen on the validation split (default 0: the single pick)")
    u.add_argument("--out", default="tune-out", help="output directory (default tune-out)")
    u.add_argument("--plot", action="store_true", help="also write learning_curves.png and hparams.png")
    u.add_argument("--overwrite", action="store_true",
                   help="replace the report.json, best.pt and plots an earlier run left in --out (without it such files "
                   "stop the run), and start over where an interrupted run left a checkpoint.pt")
    u.add_argument("--meta", action=argparse.BooleanOptionalAction, default=None,
                   help="warm start: half the initial candidates around the pretrained meta-learner's prediction "
                   "(or --meta-model's) for this dataset and budget, half drawn from the search space (default: "
                   "on with --meta-model, else off: on 29 KEEL tables the pretrained one's "
                   "the warm start did worse than a cold start on 20, better on 7; "
                   "benchmarks/results/realworld/report.md)")
    u.add_argument("--meta-model", metavar="PATH",
                   help="a meta-learner file from meta-train for the warm start (default: the pretrained one)")
    u.add_argument("--portfolio", action="store_true",
                   help="warm start from the pretrained portfolio (opt-in; --optimizer adamw): the first round trains "
                   "its 8 configurations for this dataset's size and budget plus fresh draws "
                   "(benchmarks/results/meta_eval/portfolio.md measures it)")
    u.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = u.add_argument_group("one Optuna study, many workers (metahp_fast.workers): with --study, the trials are "
                             "asked from the study's sampler K at a time, trained as one population, and its pruner "
                             "decides at rungs; the same command on other machines with the same --storage joins it")
    g.add_argument("--study", metavar="NAME", help="the study's name (created if new)")
    g.add_argument("--storage", metavar="URL",
                   help="Optuna RDB storage: sqlite:///path.db (default: --out/study.db) or "
                   "postgresql://user:password@host:port/db for workers on several machines")
    g.add_argument("--workers", type=_positive, help="worker processes on this machine (default 1; with --device "
                   "cuda, one per GPU)")
    g.add_argument("--trials", type=_positive, default=256, help="trials the study should finish (default 256)")
    g.add_argument("--size", type=_positive, default=64, help="trials trained together in one batch (default 64)")
    g.add_argument("--pruner", choices=("sha", "hyperband", "median", "none"), default="sha",
                   help="the study's pruner (default sha: successive halving)")
    g.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="the study's sampler (default tpe)")


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
                   help="how many configurations: 1 (default) is the meta-learner's prediction; k > 1 prints the "
                   "pretrained portfolio's k configurations for the dataset's size and budget (built for AdamW, "
                   "so --optimizer defaults to adamw then)")
    s.add_argument("--portfolio", metavar="PATH",
                   help="a portfolio file (nearest or conditioned) for --k > 1 (default: the pretrained one)")
    s.set_defaults(optimizer=None)  # sgd for one suggestion, adamw for a portfolio (see suggest)


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


def _upgrade_parser(sub: Any) -> None:
    u = sub.add_parser("upgrade", help="convert a file written by an earlier metahp_fast to the safe format, once",
                       description="Convert a best.pt, meta-learner file or meta-training checkpoint written by an "
                       "earlier metahp_fast to the current format, which loads with torch.load(weights_only=True). "
                       "The original is kept as FILE.bak. Earlier files hold pickled Python objects that run code "
                       "when read: pass --trust only for files you made or whose origin you trust.")
    u.add_argument("file", metavar="FILE", help="the file to convert in place")
    u.add_argument("--trust", action="store_true",
                   help="read the old file with pickle (it can run code): only for files you trust")


#: The commands by name, each with the function that adds its arguments (``cli.COMMANDS`` has the function that
#: runs it): a new command is one entry in each.
PARSERS: dict[str, Callable[[Any], None]] = {"train": _train_parser, "tune": _tune_parser,
                                               "evaluate": _evaluate_parser, "meta-train": _meta_train_parser,
                                               "suggest": _suggest_parser, "predict": _predict_parser,
                                               "upgrade": _upgrade_parser}


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


__all__ = ["FLAGS", "PARSERS", "UsageError", "build_parser", "usage"]
