"""The tuners' common interface: ``tuner.run(task_or_data, budget, seed)`` -> :class:`TuneResult`.

A tuner advances in rounds (a chunk of training, a rung, an ES iteration, a trial); after each round its whole
state (populations, bookkeeping, cost) can be written to a checkpoint file, and a run given the same checkpoint
path resumes from the last finished round. ``budget`` counts full trainings (``steps`` steps of one
candidate): a tuner never spends more than ``budget * steps`` candidate-steps.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from ..backends import resolve_name
from ..population import Population
from ..search_space import STRUCTURAL, SearchSpace, check_u, u_bounds
from ..tasks import Task
from ..training import (TaskLike, TrainConfig, as_task, candidate_values, check_space, fit, make_population,
                        population_from_state, prepare_task)
from ..objectives import OBJECTIVES, check_objective, objective_values
from ..seeds import derive_seed
from ..validation import check_device
from .checkpoint import CHECKPOINT_VERSION, Best, NoState, RunState, TunerState, fingerprint, read_checkpoint, \
    write_checkpoint
from .cross_validation import FoldedPopulation, check_folds, fold_tasks, mean_metrics
from .result import TuneResult

#: How many of the best candidates trained the full steps a run keeps for ensembles (:meth:`TuneResult.ensemble`).
POOL_SIZE = 16
#: Steps of one full training when the training is not sized by epochs (the tuners' ``steps`` default).
DEFAULT_STEPS = 300
#: ``metahp-fast tune``'s and the estimators' training length: passes over the train split, at most
#: ``DEFAULT_MAX_STEPS`` steps (benchmarks/results/realworld/report.md measured it against fixed 300 steps).
DEFAULT_EPOCHS = 100.0
DEFAULT_MAX_STEPS = 5000


def _carried(values: Mapping[str, Tensor], space: SearchSpace, rows: int) -> Tensor:
    """Natural values a meta-learner or portfolio gave (name -> (rows,)) as ``u`` (rows, d) of ``space``, clipped
    into its ranges; a :data:`STRUCTURAL` dimension they do not give (they learned one architecture) sits at the
    middle of its range; any other missing one is a ValueError naming it."""
    missing = [n for n in space.dims if n not in values and n not in STRUCTURAL]
    if missing:
        raise ValueError(f"init: the warm start gives {sorted(values)}, not {missing} of this space")
    full = {}
    for n in space.dims:
        if n in values:
            full[n] = torch.as_tensor(values[n], dtype=torch.float64).reshape(-1).expand(rows)
        else:
            full[n] = space[n].from_u(torch.full((rows,), space[n].center_u(), dtype=torch.float64), round_ints=True)
    return space.to_unconstrained(space.clip(full))


def meta_center(meta: Any, space: SearchSpace, task: Task, steps: int, batch_size: int) -> Tensor:
    """A meta-learner's prediction for ``task`` at this budget as ``u`` (d,) of ``space``: carried over through
    the natural values (integers rounded) and clipped to ``space``'s ranges, which may differ from its own."""
    values = meta.space.from_unconstrained(meta.predict_u(task, steps, batch_size), round_ints=True,
                                           include_fixed=True)  # a value it keeps fixed is the one it learned with
    return _carried(values, space, 1)[0]


def portfolio_members(portfolio: Any, space: SearchSpace, task: Task, k: int, steps: int,
                      batch_size: int) -> Tensor:
    """A portfolio's k configurations for ``task`` at this budget as rows of ``u`` (k, d) of ``space``, carried
    over through the natural values and clipped to ``space``'s ranges (as :func:`meta_center`)."""
    u = portfolio.propose_u(task, k, budget=steps, batch_size=batch_size)
    return _carried(portfolio.space.from_unconstrained(u, round_ints=True, include_fixed=True), space, u.shape[0])


class Tuner:
    """Base of the tuners. Subclasses set ``name`` and ``State`` (the dataclass of their own part of a run's
    state, :class:`~metahp_fast.tuners.checkpoint.TunerState`) and implement ``_start`` (returns the first
    ``State``; may set ``run.state.pop`` and ``ids``) and ``_advance`` (one round; sets ``run.state.done`` at
    the end); ``settings`` lists their own options.

    Args:
        space: the :class:`SearchSpace` (default: the optimizer's default space).
        optimizer: ``"sgd"`` or ``"adamw"`` (default: the space's optimizer, else sgd).
        hidden, activation, nesterov: the architecture and update rule of every candidate.
        steps: steps of one full training, the same on every task; batch_size: its minibatch size.
        epochs: training sized to the data instead: one full training is ``epochs`` passes over the train
            split (``ceil(epochs * train rows / batch_size)`` steps), at most ``max_steps``; ``steps`` is then
            ignored. With neither given: :data:`DEFAULT_EPOCHS`, as ``metahp-fast tune``.
        objective: what to minimise on the validation split: ``"loss"`` or ``"error"`` (1 - accuracy).
        init: a warm start: a center ``u`` (d,) for the initial candidates, natural values as a dict (``{"lr":
            0.05, "momentum": 0.9, ...}``, every tuned hyperparameter of the space), or a meta-learner
            (:class:`~metahp_fast.meta.MetaLearner`, anything with ``predict_u(task, steps, batch_size)`` and a
            ``space``) whose prediction for each task tuned becomes the center. Spread by ``init_spread`` in u;
            ``init_mix`` of them (a fraction) are drawn from the space instead, a hedge against a poor center
            (a prediction for a dataset unlike any seen in meta-training).
            Or a portfolio (:class:`~metahp_fast.meta.conditioned.ConditionedPortfolio`, anything with
            ``propose_u(task, k, budget, batch_size)`` and a ``space``): the first round then trains its ``init_k``
            configurations for the task and budget plus fresh draws from the space (ES starts at its first
            member; TPE enqueues them all).
        init_k: how many configurations a portfolio ``init`` proposes (default 8).
        eval_every: steps between validation evaluations for learning curves (default: 10 per training).
        early_stopping: judge every candidate by its best validation evaluation so far (the best point of its
            learning curve) instead of its last, so tuners compare candidates each at its own best length and
            ``TuneResult.refit("best")`` retrains the pick for that length.
        folds: score every candidate by its mean validation objective over ``folds`` cuts of train+val (the
            task's own split first; see :mod:`~metahp_fast.tuners.cross_validation`): steadier picks on small
            validation splits, at ``folds`` trainings per candidate (the tuner plans ``budget / folds``
            candidates' worth). 1 (default): the validation split alone.
        backend, device, dtype, precision: where and how the populations run (``precision``: the triton
            backend's dot precision, see :class:`~metahp_fast.Population`).
        progress: show a progress bar over the budget."""

    name: ClassVar[str] = "tuner"
    State: ClassVar[type[TunerState]] = NoState

    def __init__(self, space: Optional[SearchSpace] = None, *, optimizer: Optional[str] = None,
                 hidden: Sequence[int] = (128,), steps: Optional[int] = None, batch_size: int = 128,
                 activation: str = "relu",
                 nesterov: bool = False, objective: str = "loss", init: Any = None, init_spread: float = 0.5,
                 init_mix: float = 0.5, init_k: int = 8, eval_every: Optional[int] = None, folds: int = 1,
                 backend: str = "auto", device: str = "cpu", dtype: torch.dtype = torch.float32,
                 precision: Optional[str] = None, progress: bool = False, epochs: Optional[float] = None,
                 max_steps: int = DEFAULT_MAX_STEPS, early_stopping: bool = False):
        opt = optimizer or (space.optimizer if isinstance(space, SearchSpace) and space.optimizer else "sgd")
        if opt not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw'; got {opt!r}")
        self.space = check_space(space, opt)
        resolve_name(backend, check_device(device))  # an unknown backend or unusable device fails here
        if steps is None and epochs is None:  # sized to the data, as `metahp-fast tune` by default
            epochs = DEFAULT_EPOCHS
        self.config = TrainConfig(hidden=tuple(hidden) if isinstance(hidden, (list, tuple)) else hidden,
                                  steps=DEFAULT_STEPS if steps is None else steps, batch_size=batch_size, optimizer=opt, activation=activation,
                                  nesterov=nesterov, eval_every=eval_every, backend=backend, device=str(device),
                                  dtype=dtype, precision=precision)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
        self.objective = objective
        self.meta = init if hasattr(init, "predict_u") or hasattr(init, "propose_u") else None
        if self.meta is not None:
            missing = [k for k in self.space.dims if k not in self.meta.space.params and k not in STRUCTURAL]
            who = "meta-learner predicts" if hasattr(init, "predict_u") else "portfolio proposes"
            if missing or getattr(self.meta.space, "optimizer", None) not in (None, opt):
                raise ValueError(f"init: the {who} {list(self.meta.space.dims)} for optimizer "
                                 f"{self.meta.space.optimizer!r}, not {missing or list(self.space.dims)} of this "
                                 f"tuner's space for {opt!r}; use one trained for optimizer {opt!r} or pass a u vector")
        if isinstance(init_k, bool) or not isinstance(init_k, int) or init_k < 1:
            raise ValueError(f"init_k must be a positive int; got {init_k!r}")
        self.init_k = init_k
        self.init = None if init is None or self.meta is not None else _check_init(init, self.space)
        self.init_spread = _positive("init_spread", init_spread)
        if not isinstance(init_mix, (int, float)) or isinstance(init_mix, bool) or not 0 <= init_mix < 1:
            raise ValueError(f"init_mix must be a fraction in [0, 1); got {init_mix!r}")
        self.init_mix = float(init_mix)
        self.folds = check_folds(folds)
        self.progress = bool(progress)
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, float))
                                   or not 0 < epochs < math.inf):
            raise ValueError(f"epochs must be a positive number or None; got {epochs!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int; got {max_steps!r}")
        self.epochs, self.max_steps = epochs, max_steps
        if not isinstance(early_stopping, bool):
            raise ValueError(f"early_stopping must be True or False; got {early_stopping!r}")
        self.early_stopping = early_stopping

    def steps_for(self, task: Task) -> int:
        """Steps of one full training on ``task``: ``steps``, or with ``epochs`` that many passes over its train
        split in minibatches (at least 1 step, at most ``max_steps``)."""
        if self.epochs is None:
            return self.config.steps
        n = len(task.y_train)
        return max(1, min(self.max_steps, math.ceil(self.epochs * n / min(self.config.batch_size, n))))

    def settings(self) -> dict[str, Any]:
        """The subclass's own options (they must match when a run resumes from a checkpoint)."""
        return {}

    def run(self, task_or_data: TaskLike, budget: float, seed: int = 0,
            checkpoint: Union[str, os.PathLike, None] = None) -> TuneResult:
        """Tune on ``task_or_data`` (a Task, a dataset name or path, or ``(x, y)``) with ``budget`` full
        trainings' worth of candidate-steps; with ``checkpoint``, save the state there after every round and
        resume from it if it exists."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        self.check_budget(budget)
        task = prepare_task(as_task(task_or_data, seed), self.config)
        check_objective(self.objective, task)
        tuner = self
        if self.epochs is not None:  # this task's training length, on a copy: the tuner serves any task
            tuner = copy.copy(self)
            tuner.config = dataclasses.replace(self.config, steps=self.steps_for(task))
        return TuningRun(tuner, task, float(budget), seed, checkpoint, tuner.center_for(task)).execute()

    def check_budget(self, budget: float) -> None:
        """A ValueError naming ``budget`` if it is not a positive number of full trainings this tuner can spend
        (subclasses add what their schedule needs, on :meth:`plan_budget`); no task is needed, so it runs
        before any work."""
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < math.inf:
            raise ValueError(f"budget must be a positive number of full trainings; got {budget!r}")

    def require_trainings(self, budget: float, n: int, why: str) -> None:
        """A ValueError naming ``budget`` if it plans fewer than ``n`` full trainings (``why``: "for <the tuner>:
        <what needs them>")."""
        if self.plan_budget(budget) < n:
            raise ValueError(f"budget={budget} is too small {why}; give at least {n * self.folds:g}"
                             f"{self.budget_note()}")

    def plan_budget(self, budget: float) -> float:
        """The budget a tuner's schedule plans with: ``budget`` full trainings buy ``budget / folds``
        cross-validated candidates."""
        return budget / self.folds

    def budget_note(self) -> str:
        """How ``folds`` divides the budget, for error messages ("" without folds)."""
        return f" (with folds={self.folds} every candidate costs {self.folds} trainings)" if self.folds > 1 else ""

    def center_for(self, task: Task) -> Optional[Tensor]:
        """The warm-start center ``u`` for ``task``: ``init`` as given, or the meta-learner's prediction for
        this task and budget carried into this tuner's space through the natural values (clipped to its
        ranges); None without a warm start."""
        if self.meta is None:
            return self.init
        if hasattr(self.meta, "propose_u"):  # a portfolio: its members (k, d)
            return portfolio_members(self.meta, self.space, task, self.init_k, self.config.steps,
                                     self.config.batch_size)
        return meta_center(self.meta, self.space, task, self.config.steps, self.config.batch_size)

    def _start(self, run: "TuningRun") -> TunerState:
        raise NotImplementedError

    def _advance(self, run: "TuningRun") -> None:
        raise NotImplementedError


class TuningRun:
    """One run of a tuner: the task, the budget, the resumable ``state`` (a
    :class:`~metahp_fast.tuners.checkpoint.RunState`; ``own`` is its tuner's part) and the helpers rounds use."""

    def __init__(self, tuner: Tuner, task: Task, budget: float, seed: int,
                 checkpoint: Union[str, os.PathLike, None], init: Optional[Tensor] = None):
        self.tuner, self.task, self.budget, self.seed = tuner, task, budget, seed
        self.init = init  # the warm start of this run (Tuner.center_for): a center u, portfolio rows (k, d), or None
        self.space, self.config = tuner.space, tuner.config
        self.max_cost = int(budget * self.config.steps)
        self.plan_budget = tuner.plan_budget(budget)  # what the tuner's schedule plans with (budget / folds)
        # the cuts every candidate trains on (the task's own first); one: no cross-validation
        self.cuts = fold_tasks(task, tuner.folds, derive_seed(seed, 7)) if tuner.folds > 1 else [task]
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.cache: dict[str, Any] = {}  # per-process objects rounds may keep (never saved)
        self.header = {"version": CHECKPOINT_VERSION, "method": tuner.name, "settings": tuner.settings(),
                       "config": self.config.to_dict(), "space": self.space.to_dict(),
                       "order": list(self.space.names), "objective": tuner.objective, "folds": tuner.folds,
                       "init": None if init is None else init.tolist(), "seed": seed, "budget": budget,
                       "early_stopping": tuner.early_stopping, "task": fingerprint(task)}
        if self.checkpoint is not None and self.checkpoint.exists():
            self.state = read_checkpoint(self.checkpoint, self.header, tuner.State)
        else:
            self.state = RunState(own=NoState())
            self.state.own = tuner._start(self)

    @property
    def own(self) -> Any:
        """The tuner's own part of the state (its ``State`` dataclass)."""
        return self.state.own

    def execute(self) -> TuneResult:
        """Advance round by round until the tuner is done, saving after each round; then build the result."""
        bar = _bar(self.max_cost, self.tuner.progress, self.tuner.name)
        state = self.state
        if bar is not None:
            bar.update(state.cost)
        while not state.done:
            t0, cost0 = time.perf_counter(), state.cost
            self._note: dict[str, Any] = {}
            self.tuner._advance(self)
            state.seconds += time.perf_counter() - t0
            state.round += 1
            best = state.best
            state.history.append({"round": state.round, "cost": state.cost, "seconds": state.seconds,
                                  "best_objective": None if best is None else best.objective, **self._note})
            if self.checkpoint is not None:
                write_checkpoint(self.checkpoint, self.header, state)
            if bar is not None:
                bar.update(state.cost - cost0)
                if best is not None:
                    bar.set_postfix({f"best_val_{self.tuner.objective}": f"{best.objective:.4f}"})
        if bar is not None:
            bar.close()
        return self._result()

    # ---------------------------------------------------------------- helpers for rounds
    def note(self, **info: Any) -> None:
        """Add fields to this round's history record."""
        self._note.update(info)

    def seed_for(self, *keys: int) -> int:
        """A seed derived from the run's seed and ``keys`` (stable across resumes)."""
        return derive_seed(self.seed, *keys)

    def new_ids(self, n: int) -> list[int]:
        """``n`` fresh candidate ids."""
        start = self.state.next_id
        self.state.next_id = start + n
        return list(range(start, start + n))

    def clamp_u(self, u: Tensor) -> Tensor:
        """``u`` clamped into the images of the space's ranges."""
        lo, hi = u_bounds(self.space)
        return torch.maximum(torch.minimum(u, hi), lo)

    def reflect_u(self, u: Tensor) -> Tensor:
        """``u`` folded back into the images of the space's ranges: a draw past an end lands as far inside it
        (then clamped, for a draw past both). Random draws around a point near an end stay distinct candidates,
        where clamping would make several copies of the end point."""
        lo, hi = u_bounds(self.space)
        lo, hi = lo.to(u.dtype), hi.to(u.dtype)
        u = torch.where(u > hi, 2 * hi - u, u)
        return self.clamp_u(torch.where(u < lo, 2 * lo - u, u))

    def initial_u(self, n: int, key: int) -> Tensor:
        """``n`` starting points (n, d): draws from the space, or, when the tuner has an ``init``, a Gaussian
        around it (the first exactly at it) for all but ``init_mix`` of them, which are drawn from the space; with
        a portfolio's rows (k, d), those rows first (at most n), then draws from the space."""
        gen_seed = self.seed_for(key)
        init = self.init
        drawn = self.space.sample_u(n, seed=gen_seed)
        if init is None:
            return drawn
        if init.dim() == 2:
            members = self.clamp_u(init[:n]).to(drawn.dtype)
            return torch.cat([members, drawn[len(members):]])
        near = max(1, n - int(self.tuner.init_mix * n))
        noise = torch.randn(near, init.numel(), generator=torch.Generator().manual_seed(gen_seed),
                            dtype=torch.float64)
        noise[0] = 0
        return torch.cat([self.reflect_u(init + self.tuner.init_spread * noise).to(drawn.dtype), drawn[near:]])

    def population(self, u: Tensor) -> Union[Population, FoldedPopulation]:
        """A population with one candidate per row of ``u``, from the run's shared initial weights (with
        ``folds``, one per cut)."""
        pops = [make_population(self.task, self.space, u, self.config, self.seed) for _ in self.cuts]
        return pops[0] if len(pops) == 1 else FoldedPopulation(pops)

    def load(self, state: Optional[dict[str, Any]] = None) -> Union[Population, FoldedPopulation]:
        """The population saved as ``state`` (a ``state_dict()``; default: the live one, ``run.state.pop``)."""
        state = self.state.pop if state is None else state
        if "folds" in state:
            return FoldedPopulation([population_from_state(s, self.config) for s in state["folds"]])
        return population_from_state(state, self.config)

    def train(self, pop: Union[Population, FoldedPopulation], ids: Sequence[int], steps: int,
              key: int) -> dict[str, Tensor]:
        """Train ``pop`` for ``steps`` steps (batches seeded by ``key``; with folds, every cut on its own data),
        charge the cost, extend the learning curves of ``ids``; returns the final validation metrics (CPU
        tensors; with folds, their mean over the cuts)."""
        pops = pop.pops if isinstance(pop, FoldedPopulation) else [pop]
        hists = [fit(p, cut, steps, self.config, self.seed_for(key)) for p, cut in zip(pops, self.cuts)]
        self.state.cost += len(pops) * pop.size * steps
        h = mean_metrics([{k: v for k, v in hh.items() if k.startswith("val_")} for hh in hists])
        curves = self.state.curves
        loss = h["val_loss"]
        for j, i in enumerate(ids):
            curves.setdefault(i, []).extend([s, float(v)] for s, v in zip(hists[0]["eval_step"], loss[:, j]))
        evals = {"loss": loss, **({"accuracy": h["val_accuracy"]} if "val_accuracy" in h else {})}
        if self.tuner.early_stopping:
            return self._best_so_far(ids, evals, hists[0]["eval_step"])
        return {k: v[-1] for k, v in evals.items()}

    def _best_so_far(self, ids: Sequence[int], evals: dict[str, Tensor], steps: Sequence[int]) -> dict[str, Tensor]:
        """Each candidate's metrics at its best validation evaluation so far (this call's ``evals`` (E, K) and
        the best of its earlier ones, ``state.best_seen``), recording the new bests."""
        obj = torch.stack([self.objective({k: v[e] for k, v in evals.items()}) for e in range(len(steps))])
        seen = self.state.best_seen
        out = {k: v[-1].clone() for k, v in evals.items()}
        for j, i in enumerate(ids):
            e = int(torch.argmin(obj[:, j]))
            old = seen.get(i)
            if math.isfinite(float(obj[e, j])) and (old is None or float(obj[e, j]) < old["objective"]):
                old = seen[i] = {"objective": float(obj[e, j]), "step": int(steps[e]),
                                 **{k: float(v[e, j]) for k, v in evals.items()}}
            if old is not None:
                for k in out:
                    out[k][j] = old[k]
        return out

    def objective(self, metrics: dict[str, Tensor]) -> Tensor:
        """The validation objective (K,) of ``metrics`` (``inf`` for diverged candidates)."""
        return objective_values(metrics, self.tuner.objective)

    def observe(self, pop: Union[Population, FoldedPopulation], ids: Sequence[int], metrics: dict[str, Tensor],
                final: bool, **extra: Any) -> None:
        """Record every candidate's hyperparameters and validation metrics as trials; if ``final`` (trained
        the full ``steps``), candidates may become the run's best (with folds, its model is the one trained on
        the task's own train split)."""
        hp = candidate_values(pop, self.space.names)
        obj = self.objective(metrics)
        for j, i in enumerate(ids):
            rec = {"id": i, "steps": pop.steps_done, "hparams": {k: float(v[j]) for k, v in hp.items()},
                   "val_loss": float(metrics["loss"][j]), "objective": float(obj[j]), **extra}
            if "accuracy" in metrics:
                rec["val_accuracy"] = float(metrics["accuracy"][j])
            if i in self.state.best_seen:  # early stopping: where this candidate's best evaluation was
                rec["best_step"] = self.state.best_seen[i]["step"]
            self.state.trials[i] = rec
        if not final:
            return
        first = pop.first if isinstance(pop, FoldedPopulation) else pop
        finite = [j for j in range(len(ids)) if math.isfinite(float(obj[j]))]
        pool = self.state.pool + [{"id": int(ids[j]), "objective": float(obj[j]), "pop": first.select([j]).state_dict()}
                                  for j in sorted(finite, key=lambda j: float(obj[j]))[:POOL_SIZE]]
        self.state.pool = sorted(pool, key=lambda e: e["objective"])[:POOL_SIZE]
        j = int(torch.argmin(obj))
        best = self.state.best
        if math.isfinite(float(obj[j])) and (best is None or float(obj[j]) < best.objective):
            self.state.best = Best(id=int(ids[j]), objective=float(obj[j]),
                                   hparams={k: float(v[j]) for k, v in hp.items()},
                                   val={k: float(v[j]) for k, v in metrics.items()},
                                   pop=(pop.first if isinstance(pop, FoldedPopulation) else pop)
                                   .select([j]).state_dict())

    def _result(self) -> TuneResult:
        state, best = self.state, self.state.best
        if best is None:
            raise RuntimeError(f"{self.tuner.name}: every candidate diverged or none was trained to the full "
                               f"{self.config.steps} steps; try a smaller learning-rate range")
        model = population_from_state(best.pop, self.config).to_module(0).cpu().eval()
        pool = [population_from_state(e["pop"], self.config).to_module(0).cpu().eval() for e in state.pool]
        first = None if self.init is None else self.init[0] if self.init.dim() == 2 else self.init
        init = None if first is None else {  # a portfolio's: its first member
            k: float(v) for k, v in self.space.from_unconstrained(first, include_fixed=False).items()}
        return TuneResult(method=self.tuner.name, task=self.task.name, seed=self.seed, budget=self.budget,
                          objective=self.tuner.objective, best_hparams=dict(best.hparams), best_model=model,
                          best_val=dict(best.val), best_id=best.id, history=list(state.history),
                          trials=[state.trials[k] for k in sorted(state.trials)], curves=dict(state.curves),
                          cost_steps=int(state.cost), seconds=float(state.seconds),
                          config={**self.config.to_dict(), **self.tuner.settings(), "folds": self.tuner.folds,
                                  "epochs": self.tuner.epochs, "early_stopping": self.tuner.early_stopping,
                                  "space": self.space.to_dict()},
                          data=self.task.to("cpu"), init_hparams=init, pool=pool,
                          pool_ids=[e["id"] for e in state.pool])


def _check_init(init: Any, space: SearchSpace) -> Tensor:
    """A warm-start center: ``u`` (d,) as given, or natural values name -> number carried into ``u``."""
    if isinstance(init, Mapping):
        try:
            return space.to_unconstrained({k: torch.as_tensor(v, dtype=torch.float64).reshape(1)
                                           for k, v in init.items()})[0]
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"init: {e}") from None
    try:
        u = check_u("init", init, space)
    except (TypeError, RuntimeError):
        raise TypeError(f"init must be a u vector ({len(space.dims)},), a dict of natural values or a meta-learner; "
                        f"got {type(init).__name__}") from None
    if u.shape[0] != 1:
        raise ValueError(f"init must be one u vector ({len(space.dims)},), the center; got {u.shape[0]} rows")
    return u[0]


def _positive(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
        raise ValueError(f"{name} must be a positive number; got {v!r}")
    return float(v)


def _bar(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit="cand-step", unit_scale=True, leave=False)


__all__ = ["TuneResult", "Tuner", "TuningRun", "CHECKPOINT_VERSION", "RunState", "TunerState"]
