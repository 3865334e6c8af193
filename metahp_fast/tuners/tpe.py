"""Optuna's TPE sampler as a baseline tuner: one trial at a time, each trained by this library with K=1.

Needs the optional ``optuna`` package (``pip install optuna``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..search_space import Fixed, IntUniform, LogUniform, SearchSpace
from .base import Tuner, TuningRun
from .checkpoint import TunerState


def optuna_available() -> bool:
    """Whether the optional ``optuna`` package can be imported."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


def require_optuna(who: str = "the TPE tuner"):
    """The optuna module, its logging quieted; an ImportError saying what needs it and how to install it."""
    try:
        import optuna
    except ImportError as e:
        raise ImportError(f"{who} needs optuna: pip install 'metahp-fast[tune]'") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna distributions for the non-fixed hyperparameters of ``space`` (log-uniform as ``log=True``)."""
    optuna = require_optuna()
    out = {}
    for name in space.dims:
        d = space[name]
        if isinstance(d, IntUniform):
            out[name] = optuna.distributions.IntDistribution(d.low, d.high)
        else:
            out[name] = optuna.distributions.FloatDistribution(d.low, d.high, log=isinstance(d, LogUniform))
    return out


@dataclass
class TPEState(TunerState):
    """The number of trials to run and those told to Optuna so far, ``[params, objective]`` (None: failed)."""

    n_trials: int
    told: list[list[Any]] = field(default_factory=list)


class TPE(Tuner):
    """``int(budget)`` sequential trials proposed by Optuna's TPE sampler (the first ``n_startup`` at random,
    or the first at ``init`` when given), each one candidate trained the full ``steps``; diverged trials are
    reported to Optuna as failed."""

    name = "tpe"
    State = TPEState

    def __init__(self, space: Optional[SearchSpace] = None, *, n_startup: int = 10, **kwargs: Any):
        super().__init__(space, **kwargs)
        if isinstance(n_startup, bool) or not isinstance(n_startup, int) or n_startup < 1:
            raise ValueError(f"n_startup must be a positive int; got {n_startup!r}")
        self.n_startup = n_startup
        require_optuna()  # fail at construction, not mid-run, if optuna is missing

    def settings(self) -> dict[str, Any]:
        return {"n_startup": self.n_startup}

    def check_budget(self, budget: float) -> None:
        super().check_budget(budget)
        self.require_trainings(budget, 1, "for TPE: every trial trains one candidate the full steps")

    def _start(self, run: TuningRun) -> TPEState:
        return TPEState(n_trials=int(run.plan_budget))  # >= 1: run() checked the budget

    def _study(self, run: TuningRun):
        """The Optuna study of this run, rebuilt from the trials told so far after a resume."""
        if "study" not in run.cache:
            optuna = require_optuna()
            study = optuna.create_study(direction="minimize")
            dists = optuna_distributions(run.space)
            for params, value in run.own.told:
                state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
                study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value,
                                                          state=state))
            if not run.own.told and run.init is not None:
                rows = run.init.reshape(-1, run.init.shape[-1])  # a center, or a portfolio's members
                init = run.space.from_unconstrained(rows, round_ints=True, include_fixed=False)
                for j in range(len(rows)):
                    study.enqueue_trial({k: float(v.reshape(-1)[j]) for k, v in init.items()})
            run.cache.update(study=study, dists=dists)
        return run.cache["study"], run.cache["dists"]

    def _advance(self, run: TuningRun) -> None:
        optuna = require_optuna()
        study, dists = self._study(run)
        n = len(run.own.told)
        study.sampler = optuna.samplers.TPESampler(seed=run.seed_for(n, 3), n_startup_trials=self.n_startup)
        trial = study.ask(dists)
        values = {k: torch.tensor([float(v)], dtype=torch.float64) for k, v in trial.params.items()}
        values.update({k: torch.tensor([d.value], dtype=torch.float64)
                       for k, d in run.space.params.items() if isinstance(d, Fixed)})
        u = run.space.to_unconstrained(run.space.clip(values))
        pop = run.population(u)
        ids = run.new_ids(1)
        metrics = run.train(pop, ids, run.config.steps, key=n)
        run.observe(pop, ids, metrics, final=True)
        value = float(run.objective(metrics)[0])
        if math.isfinite(value):
            study.tell(trial, value)
            run.own.told.append([dict(trial.params), value])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            run.own.told.append([dict(trial.params), None])
        run.state.done = len(run.own.told) >= run.own.n_trials
