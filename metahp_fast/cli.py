"""The ``metahp-fast`` command: ``tune`` with one of the tuners, warm-started by the pretrained meta-learner, and
write a report (the default command), ``train`` K candidates and save the best, ``evaluate`` the tuners with the
quality harness, ``meta-train`` a meta-learner, ``suggest`` hyperparameters with one, and ``predict`` with a
saved model.

Parse, call, print: the arguments come from :mod:`metahp_fast.cli_args`, data from :mod:`metahp_fast.tasks`,
tuning from :mod:`metahp_fast.tuners` (whose :class:`~metahp_fast.tuners.TuneResult` writes the report and draws
the leaderboard), training from :class:`metahp_fast.Population`. Each command is one function taking the
parsed arguments: :data:`COMMANDS` maps the names to them, ``cli_args.PARSERS`` to their arguments.
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

from .cli_args import UsageError, build_parser, usage
from .preprocessing import DEFAULT_SCALING
from .search_space import STRUCTURAL
from .tuners.result import fmt_hparams, leaderboard

#: How to use a saved best.pt, printed after writing one.
LOAD_HINT = ("use it on new rows with metahp-fast predict --model PATH --data rows.csv, or in Python with "
             "metahp_fast.load_model(path).predict(csv_path_or_array)")


#: Below this many validation rows, ``tune`` suggests ``--folds`` (wine, iris and breast cancer have 30-114).
FOLDS_HINT_ROWS = 150
#: What ``tune`` and ``evaluate`` write into ``--out``: a run stops before any work if one is there (``--overwrite``;
#: a checkpoint.pt beside them, of a run started with ``--overwrite``, resumes and replaces them).
TUNE_OUTPUTS = ("report.json", "best.pt", "learning_curves.png", "hparams.png")
QUALITY_OUTPUTS = ("quality.md", "quality.json", "quality.png")


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
        raise usage(e) from None
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
    from .tuners.base import DEFAULT_EPOCHS, DEFAULT_STEPS
    from .tuners.lock import LockedError, OutputLock

    study = bool(args.study or args.storage or args.workers)
    if args.steps is None:  # a run sized to the data (epochs) unless --steps fixes it; a study's trials: steps
        args.epochs = DEFAULT_EPOCHS if args.epochs is None and not study else args.epochs
        args.steps = DEFAULT_STEPS
    if study:
        return _tune_study(args)
    space, tuner = _tuner(args)  # every option is checked before the data loads and --out is created
    if args.ensemble < 0:
        raise UsageError(f"--ensemble: expected 0 (off) or a positive number of additions; got {args.ensemble}")
    if args.ensemble and args.refit not in (None, "off"):
        raise UsageError("--ensemble and --refit: choose one (an ensemble is made of the models trained on the "
                         "train rows)")
    if args.refit is None:
        args.refit = "off" if args.ensemble else "best"
    learner = _meta_model(args) if args.meta_model else None
    task, caught = _load_task(args)
    if args.epochs is not None:  # one full training is this many steps on this task (the tuner resolves the same)
        args.steps = tuner.steps_for(task)
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


def _tune_study(args: argparse.Namespace) -> int:
    """``tune --study NAME [--storage URL] [--workers N]``: worker processes on one Optuna study."""
    from .workers import cli_tune_workers
    if not args.study:
        raise UsageError("--study: name the study that --storage/--workers work on (the same name on every machine)")
    for flag, given in (("--method", args.method != "sh"), ("--epochs", args.epochs is not None),
                        ("--early-stopping", args.early_stopping),
                        ("--ensemble", bool(args.ensemble)), ("--folds", args.folds != 1),
                        ("--scaling", args.scaling != DEFAULT_SCALING)):
        if given:
            raise UsageError(f"{flag}: applies to a single tuning run, not to a study's workers (--study)")
    return cli_tune_workers(args)


def _tune_in(out: Path, args: argparse.Namespace, task, space, tuner, learner) -> int:
    """The tuning run of ``tune`` in ``out`` (locked): warm start, resume or start over, tune, write."""
    init, prediction, meta_note = (_meta_init(task, args, space, learner) if args.meta else
                                   (None, None, "off (--meta turns it on)"))
    if getattr(args, "portfolio", False):
        init, meta_note = _portfolio_init(task, args, space)
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
          + (f"({args.epochs:g} epochs of {len(task.y_train)} train rows, at most {args.max_steps}) "
             if args.epochs is not None else "")
          + f"({int(args.budget * args.steps)} candidate-steps), {args.optimizer}, layers "
          f"{'-'.join(map(str, task.layers(_hidden(args))))} ({args.activation})"
          + "".join(f", {n} {space[n].bounds()[0]:g}..{space[n].bounds()[1]:g}" for n in STRUCTURAL if n in space.dims)
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
        raise UsageError(f"{e} (or add --overwrite to start over)" if str(ckpt) in str(e) else str(usage(e))) \
            from None
    if args.ensemble:
        result = result.ensemble(args.ensemble)
        e = result.config["ensemble"]
        print(f"ensemble: {len(e['members'])} of the run's best models (weights "
              f"{', '.join(f'{w:.2f}' for w in e['weights'])}), validation loss {e['val_loss']:.4f} against "
              f"{e['single_val_loss']:.4f} for the best single one")
    if args.refit != "off":
        result = result.refit(args.refit)
        r = result.config.get("refit")
        if r:
            print(f"refit: the pick retrained on {r['rows']} train+validation rows for {r['steps']} steps "
                  f"(its chosen length, step {r['chosen_step']}, in epochs)")
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
                                    folds=args.folds, progress=not args.no_progress, init=init,
                                    epochs=args.epochs, max_steps=args.max_steps,
                                    early_stopping=args.early_stopping)
        tuner.check_budget(args.budget)
    except (ValueError, TypeError, ImportError) as e:
        raise usage(e, ranges="--space") from None
    if args.meta_model and args.meta is False:
        raise UsageError("--meta-model: given with --no-meta, which turns the warm start off; drop one of them")
    if getattr(args, "portfolio", False):
        if args.meta or args.meta_model:
            raise UsageError("--portfolio: a second warm start besides --meta/--meta-model; choose one")
        if args.optimizer != "adamw":
            raise UsageError(f"--portfolio: the shipped portfolio is built for AdamW; add --optimizer adamw "
                             f"(got {args.optimizer})")
    args.meta = bool(args.meta_model) if args.meta is None else args.meta
    return space, tuner


def _hidden(args: argparse.Namespace) -> list[int]:
    return [w for group in (args.hidden or [[128]]) for w in group]


def _load_task(args: argparse.Namespace):
    """The task ``--data`` names, read as the file options say, and the warnings reading it raised."""
    from .tasks import load_task

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            task = load_task(args.data, seed=args.seed, target=args.target, kind=args.kind, missing=args.missing,
                             scaling=args.scaling)
        except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
            raise usage(e) from None
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
        raise usage(e, path="--meta-model") from None
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
    mid = [k for k in hp if k not in g.space.params]  # structural dims it does not predict: their middle
    start = ("ES starts its center there" if args.method == "es" else
             "half the initial candidates start around it, the first exactly at it")
    who = f"the meta-learner {args.meta_model}" if args.meta_model else "the pretrained meta-learner"
    caveat = "" if args.activation == "relu" else f" (meta-trained on relu networks, used here for {args.activation})"
    shown = fmt_hparams({k: v for k, v in hp.items() if k not in mid})
    middle = f" ({', '.join(f'{k} {hp[k]:.3g}' for k in mid)}: the middle of their ranges)" if mid else ""
    return u, hp, f"{who} predicts {shown} (zero-shot){caveat}{middle}; {start}"


def _portfolio_init(task, args: argparse.Namespace, space):
    """The pretrained portfolio (a tuner's ``init``) and a line saying what it proposes."""
    from .meta.portfolio import pretrained_portfolio
    from .tuners.base import portfolio_members

    try:
        p = pretrained_portfolio(args.optimizer)
    except ValueError as e:
        raise usage(e, optimizer="--optimizer") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a regression task: the tuner warns once when it proposes
        lrs = portfolio_members(p, space, task, 8, args.steps, args.batch_size)[:, space.dims.index("lr")].exp()
    return p, (f"the pretrained portfolio's 8 configurations for this dataset's size and budget (zero-shot; "
               f"lr {float(lrs.min()):.2g} to {float(lrs.max()):.2g}) start the first round, with fresh draws")


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
        raise usage(e) from None
    g.save(out)
    ckpt.unlink(missing_ok=True)
    last = g.history[-min(10, len(g.history)):]
    print(f"meta-objective (val loss at g's u / prior loss, mean of the last {len(last)} meta-steps): "
          f"{sum(h['objective'] for h in last) / len(last):.4f}")
    print(f"saved the meta-learner to {out}; use it with: metahp-fast suggest --meta-model {out} --data ..., or "
          f"metahp-fast tune --meta-model {out} ...")
    return 0


def suggest(args: argparse.Namespace, learner=None) -> int:
    """Print the meta-learner's hyperparameters for ``--data`` as JSON (notes on stderr); with ``--k`` > 1 the
    conditioned portfolio's k configurations."""
    from .meta import MetaLearner
    from .tasks import load_task

    if args.optimizer is None:
        args.optimizer = "adamw" if args.k > 1 else "sgd"
    if args.k > 1:
        return _suggest_portfolio(args)
    if getattr(args, "portfolio", None):
        raise UsageError("--portfolio: applies to a portfolio of configurations (--k > 1)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            g = learner or (MetaLearner.load(args.meta_model) if args.meta_model else
                            MetaLearner.pretrained(args.optimizer))
            task = load_task(args.data, seed=args.seed, target=args.target, kind=args.kind, missing=args.missing)
            hp = g.predict(task, steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer)
        except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
            raise usage(e, path="--meta-model") from None
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
    if args.proba and model.class_names is None:
        raise UsageError("--proba: class probabilities need a classification model; this one is a regression")
    try:
        rows = _rows(args.data)
        labels = model.predict_proba(rows) if args.proba else model.predict(rows)
    except (ValueError, TypeError, FileNotFoundError) as e:  # the rows do not fit the model
        raise UsageError(f"--data: {e}") from None
    text = _predictions_csv(labels, model.class_names if args.proba else None)
    if out is None:
        sys.stdout.write(text)
    else:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
        print(f"wrote {len(labels)} {'probability rows' if args.proba else 'predictions'} to {out}")
    return 0


def _suggest_portfolio(args: argparse.Namespace) -> int:
    """``suggest --k K``: the pretrained (or ``--portfolio``) portfolio's K configurations for ``--data`` as JSON."""
    from .meta.portfolio import load_portfolio, pretrained_portfolio
    from .tasks import load_task

    if args.meta_model:
        raise UsageError("--meta-model: a meta-learner predicts one configuration; --k > 1 asks the conditioned "
                         "portfolio (--portfolio PATH for another one than the pretrained)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            p = load_portfolio(args.portfolio) if args.portfolio else pretrained_portfolio(args.optimizer)
        except (ValueError, FileNotFoundError) as e:
            raise usage(e, path="--portfolio", optimizer="--optimizer") from None
        if p.space.optimizer not in (None, args.optimizer):
            raise UsageError(f"--optimizer: the portfolio proposes for {p.space.optimizer!r}, not {args.optimizer!r}")
        try:
            task = load_task(args.data, seed=args.seed, target=args.target, kind=args.kind, missing=args.missing)
            hp = p.propose(task, args.k, budget=args.steps, batch_size=args.batch_size)
        except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
            raise usage(e, k="--k") from None
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    members = [{n: float(hp[n][j]) for n in p.space.dims} for j in range(args.k)]
    print(json.dumps({"data": args.data, "steps": args.steps, "batch_size": args.batch_size,
                      "optimizer": args.optimizer, "k": args.k, "portfolio": members}, indent=1))
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
        raise usage(e) from None
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


def upgrade(args: argparse.Namespace) -> int:
    """Convert an earlier-format file in place (the original kept as a backup) and say what was done."""
    from .files import upgrade as upgrade_file
    try:
        backup = upgrade_file(args.file, trust=args.trust)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"{args.file}: {e}" if str(args.file) not in str(e) else str(e)) from None
    print(f"{args.file} is already in the current format" if backup is None
          else f"converted {args.file} to the current format; the original is kept as {backup}")
    return 0


#: The commands by name, with the function that runs each (its arguments parsed by :data:`PARSERS`' entry).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": train, "tune": tune, "evaluate": evaluate, "meta-train": meta_train, "suggest": suggest,
    "predict": predict, "upgrade": upgrade}


if __name__ == "__main__":
    raise SystemExit(main())
