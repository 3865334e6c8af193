"""Optuna studies whose trials are trained in batches: K trials asked from the study's sampler become one
:class:`~metahp_fast.Population`, trained together; validation values are reported at rungs so the study's
pruner decides, pruned candidates leave the batch (:meth:`Population.select`) and are told PRUNED, and the
rest are told their final validation objective, with their model file's path in the trial's user attributes.

The study stays an ordinary Optuna study (any storage, sampler and pruner; ``optuna-dashboard`` and
``optuna.visualization`` read it). Needs the ``tune`` extra: ``pip install 'metahp-fast[tune]'``.

    >>> import optuna
    >>> from metahp_fast.optuna import optimize_batched
    >>> study = optuna.create_study(pruner=optuna.pruners.SuccessiveHalvingPruner())
    >>> optimize_batched(study, "digits", n_trials=256, batch_size=64, steps=300, out_dir="models")
    >>> study.best_trial.user_attrs["model_path"]          # metahp_fast.load_model(...) reads it
"""
from __future__ import annotations

import copy
import datetime
import math
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch

try:  # absolute import: the real optuna package, not this module
    import optuna
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError("metahp_fast.optuna needs optuna: pip install 'metahp-fast[tune]'") from e

from .model import layer_sizes
from .model_file import save_model
from .objectives import check_objective, objective_values
from .optimizers import hparam_specs
from .population import Population
from .population_group import PopulationGroup
from .search_space import STRUCTURAL, STRUCTURAL_KINDS, Fixed, IntUniform, SearchSpace, check_structural
from .seeds import derive_seed
from .training import TaskLike, TrainConfig, as_task, check_space, population_from_values, prepare_task
from .tuners.tpe import optuna_distributions

TrialState = optuna.trial.TrialState
Distributions = Mapping[str, "optuna.distributions.BaseDistribution"]
#: The user attribute that marks a trial failed because its candidate diverged (non-finite loss): a real
#: outcome of its hyperparameters, not a lost worker, so it is not retried.
DIVERGED = "diverged"
#: Which finished trials get a model file: ``"all"`` of them, or only ``"best"``: those that beat every trial the
#: study had completed when they were told, so the study's best trial always has one (on a 2-core CPU a batch's
#: 64 files cost about as much as 20 of its 300 training steps: 6% of a study, benchmarks/results/optuna_speed.md).
MODEL_FILES = ("all", "best")


def _check_distributions(dists: Mapping[str, Any], optimizer: str) -> dict[str, Any]:
    """Optuna distributions checked to be numeric, named after ``optimizer``'s hyperparameters, and inside
    their valid ranges (a learning rate of 0 or a momentum of 1.5 fails here, not mid-batch)."""
    specs = hparam_specs(optimizer)
    if not dists:
        raise ValueError("space must name at least one hyperparameter to tune")
    out = {}
    for name, d in dists.items():
        if name in STRUCTURAL:
            out[name] = _check_structural_distribution(name, d)
            continue
        if name not in specs:
            raise ValueError(f"space: unknown hyperparameter {name!r} for optimizer={optimizer!r}; valid names are "
                             f"{sorted(specs) + list(STRUCTURAL)}")
        if isinstance(d, (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)):
            ends = [d.low, d.high]
        elif isinstance(d, optuna.distributions.CategoricalDistribution):
            if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in d.choices):
                raise ValueError(f"space[{name!r}]: a population trains numeric hyperparameters; got choices "
                                 f"{list(d.choices)}")
            ends = list(d.choices)
        else:
            raise TypeError(f"space[{name!r}] must be an optuna Float-, Int- or CategoricalDistribution; got "
                            f"{type(d).__name__}")
        if not bool(specs[name].valid(torch.tensor(ends, dtype=torch.float64)).all()):
            raise ValueError(f"space[{name!r}] reaches values outside the valid range of {name} for {optimizer} "
                             f"({specs[name].rule}): {d!r}")
        out[name] = d
    return out


def _check_structural_distribution(name: str, d: Any) -> Any:
    """An Optuna distribution of a :data:`~metahp_fast.search_space.STRUCTURAL` dimension, checked as a
    :class:`SearchSpace` checks it (``width``/``depth``: whole numbers of at least 1; ``dropout``: in [0, 1))."""
    D = optuna.distributions
    whole = issubclass(STRUCTURAL_KINDS[name], IntUniform)
    if isinstance(d, D.CategoricalDistribution):
        ends = list(d.choices)
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in ends) or whole and not all(
                float(c).is_integer() for c in ends):
            raise ValueError(f"space[{name!r}]: {name} takes {'whole ' if whole else ''}numbers; got choices {ends}")
    elif isinstance(d, D.IntDistribution) or isinstance(d, D.FloatDistribution) and not whole:
        ends = [d.low, d.high]
    else:
        raise TypeError(f"space[{name!r}] must be an optuna {'Int' if whole else 'Float'}- or CategoricalDistribution; "
                        f"got {type(d).__name__}")
    lo, hi = min(ends), max(ends)
    try:
        check_structural(name, Fixed(lo) if lo == hi else STRUCTURAL_KINDS[name](lo, hi))
    except ValueError as e:
        raise ValueError(f"space[{name!r}]: {e}") from None
    return d


def _top(dist: Any) -> int:
    """The widest value an Optuna ``width`` distribution (or a fixed width) reaches."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return int(max(dist.choices))
    return int(getattr(dist, "high", dist))


def _space(space: Union[SearchSpace, Distributions, None], optimizer: Optional[str]) -> tuple[str, dict, dict]:
    """(optimizer, optuna distributions to ask, fixed hyperparameter values) from a SearchSpace, a dict of
    Optuna distributions, or None (the optimizer's default space)."""
    if isinstance(space, Mapping):
        opt = optimizer or "sgd"
        if opt not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw'; got {optimizer!r}")
        return opt, _check_distributions(space, opt), {}
    opt = optimizer or (space.optimizer if isinstance(space, SearchSpace) and space.optimizer else "sgd")
    if opt not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw'; got {optimizer!r}")
    space = check_space(space, opt)
    fixed = {n: d.value for n, d in space.params.items() if isinstance(d, Fixed)}
    return opt, optuna_distributions(space), fixed


def default_rungs(steps: int, eta: int = 3, n: int = 3) -> list[int]:
    """Steps ``steps / eta^n, ..., steps / eta`` (those >= 1, no repeats): where a batch reports to the pruner,
    a successive-halving ladder below the full ``steps``."""
    return sorted({steps // eta ** i for i in range(1, n + 1)} - {0})


def _check_rungs(rungs: Optional[Sequence[int]], steps: int) -> list[int]:
    if rungs is None:
        return default_rungs(steps)
    if isinstance(rungs, (str, bytes)) or not isinstance(rungs, Sequence):
        raise TypeError(f"rungs must be a list of step counts; got {rungs!r}")
    bad = [r for r in rungs if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r < steps]
    if bad:
        raise ValueError(f"rungs must be step counts in [1, steps={steps}); got {list(rungs)}")
    return sorted(set(rungs))


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int; got {v!r}")
    return v


class _Heartbeat:
    """Records the heartbeat of a batch's running trials every ``interval`` seconds in a thread (what
    ``study.optimize`` does for one trial), so that a killed worker's trials go stale and are retried."""

    def __init__(self, study: "optuna.Study"):
        storage = study._storage
        self.storage = storage if optuna.storages._heartbeat.is_heartbeat_enabled(storage) else None
        self.ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def add(self, trial_id: int) -> None:
        if self.storage is None:
            return
        self.storage.record_heartbeat(trial_id)  # at once: a trial without any heartbeat never goes stale
        with self.lock:
            self.ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self.lock:
            self.ids.discard(trial_id)

    def __enter__(self) -> "_Heartbeat":
        if self.storage is not None:
            self.thread = threading.Thread(target=self._run, daemon=True, name="metahp-heartbeat")
            self.thread.start()
        return self

    def _run(self) -> None:
        interval = self.storage.get_heartbeat_interval()
        while not self.stop.wait(interval):
            with self.lock:
                ids = sorted(self.ids)
            for i in ids:
                try:
                    self.storage.record_heartbeat(i)
                except Exception:  # noqa: BLE001 - a lost beat only risks a retry; the next one may pass
                    pass

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


class _SnapshotStorage:
    """The study's storage as one batch sees it: reads of all trials come from a snapshot taken once per phase
    (asking the batch, each rung's pruning pass) instead of one query per ask and per pruning decision, which
    on an RDB storage re-reads every running trial (K of them per worker: O(K^2) rows per batch). Writes go
    through at once; this batch's own trials are kept current in the snapshot. Other workers' updates show at
    the next :meth:`refresh`."""

    def __init__(self, storage: Any, study_id: int):
        self._real, self._study_id = storage, study_id
        self._trials: dict[int, Any] = {}
        self.refresh()

    def refresh(self) -> None:
        self._trials = {t._trial_id: t for t in self._real.get_all_trials(self._study_id, deepcopy=True)}

    def _reload(self, trial_id: int) -> None:
        self._trials[trial_id] = copy.deepcopy(self._real.get_trial(trial_id))

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list:
        if study_id != self._study_id:
            return self._real.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        trials = sorted((t for t in self._trials.values() if states is None or t.state in states),
                        key=lambda t: t.number)
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> Any:
        t = self._trials.get(trial_id)
        return copy.deepcopy(t) if t is not None else self._real.get_trial(trial_id)

    def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
        trial_id = self._real.create_new_trial(study_id, template_trial)
        self._reload(trial_id)
        return trial_id

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        changed = self._real.set_trial_state_values(trial_id, state, values)
        if trial_id in self._trials:
            self._reload(trial_id)
        return changed

    def set_trial_param(self, trial_id: int, name: str, internal: float, distribution: Any) -> None:
        self._real.set_trial_param(trial_id, name, internal, distribution)
        t = self._trials.get(trial_id)
        if t is not None:
            t.params = {**t.params, name: distribution.to_external_repr(internal)}
            t.distributions = {**t.distributions, name: distribution}

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._real.set_trial_user_attr(trial_id, key, value)
        if trial_id in self._trials:
            self._trials[trial_id].user_attrs = {**self._trials[trial_id].user_attrs, key: value}

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._real.set_trial_system_attr(trial_id, key, value)
        if trial_id in self._trials:
            self._trials[trial_id].system_attrs = {**self._trials[trial_id].system_attrs, key: value}

    def __getattr__(self, name: str) -> Any:  # everything else (intermediate values included) goes straight through
        return getattr(self._real, name)


def _batch_view(study: "optuna.Study") -> "optuna.Study":
    """``study`` reading through a :class:`_SnapshotStorage` (an in-memory study's reads are cheap already)."""
    if isinstance(study._storage, optuna.storages.InMemoryStorage):
        return study
    view = copy.copy(study)
    view._storage = _SnapshotStorage(study._storage, study._study_id)
    return view


def _refresh(study: "optuna.Study") -> None:
    if isinstance(study._storage, _SnapshotStorage):
        study._storage.refresh()


class BatchedObjective:
    """How a batch of trials is trained and scored: the task, the architecture and training of every
    candidate, the rungs, the model files. :func:`optimize_batched` and the workers run it batch by batch
    (:meth:`run_batch`); see :func:`optimize_batched` for the arguments."""

    def __init__(self, task: TaskLike, *, space: Union[SearchSpace, Distributions, None] = None,
                 optimizer: Optional[str] = None, hidden: Sequence[int] = (128,), steps: int = 300,
                 train_batch_size: int = 128, activation: str = "relu", nesterov: bool = False,
                 objective: str = "loss", rungs: Optional[Sequence[int]] = None,
                 out_dir: Union[str, os.PathLike, None] = None, seed: int = 0, backend: str = "auto",
                 device: str = "cpu", dtype: torch.dtype = torch.float32, precision: Optional[str] = None,
                 model_files: str = "all"):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        if model_files not in MODEL_FILES:
            raise ValueError(f"model_files must be one of {list(MODEL_FILES)}; got {model_files!r}")
        self.model_files = model_files
        self.optimizer, self.distributions, self.fixed = _space(space, optimizer)
        self.config = TrainConfig(hidden=tuple(hidden) if isinstance(hidden, (list, tuple)) else hidden,
                                  steps=steps, batch_size=train_batch_size, optimizer=self.optimizer,
                                  activation=activation, nesterov=nesterov, backend=backend, device=str(device),
                                  dtype=dtype, precision=precision)
        self.rungs = _check_rungs(rungs, self.config.steps)
        self.out_dir = None if out_dir is None else Path(out_dir)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.raw_task = as_task(task, seed)
        check_objective(objective, self.raw_task)
        self.objective = objective
        self.task = prepare_task(self.raw_task, self.config)
        width = self.distributions.get("width", self.fixed.get("width"))
        self.top_width = None if width is None else _top(width)  # every candidate's width is cut from this size
        self.host = socket.gethostname()
        self.worker = f"{self.host}:{os.getpid()}"  # who ran a trial (a user attribute): the dashboard shows it

    def _population(self, trials: list["optuna.Trial"]) -> Union[Population, PopulationGroup]:
        """Candidate k with trial k's hyperparameters (fixed ones and torch.optim's defaults for the rest), all
        from the same initial weights (``seed``): trial values compare hyperparameters, not draws. Trials with a
        ``width``, ``depth`` or ``dropout`` get it as the tuners' candidates do (a group when depths differ)."""
        k = len(trials)
        hp = {n: torch.tensor([float(t.params[n]) for t in trials], dtype=torch.float64) for n in self.distributions}
        hp.update({n: torch.full((k,), float(v), dtype=torch.float64) for n, v in self.fixed.items()})
        return population_from_values(self.task, hp, self.config, self.seed, self.top_width)

    def ask(self, study: "optuna.Study", n: int, heartbeat: _Heartbeat) -> list["optuna.Trial"]:
        """``n`` trials from the study's sampler (enqueued ones first). Each beats and names its worker before
        its hyperparameters are drawn: a worker killed in between leaves a trial without parameters or worker,
        which :func:`fail_stale` recognizes (without a heartbeat, Optuna would leave it RUNNING forever)."""
        trials = []
        with warnings.catch_warnings():  # heartbeats are recorded here, by the batch, not by study.optimize
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            for _ in range(n):
                trial = study.ask()
                heartbeat.add(trial._trial_id)
                trial.set_user_attr("worker", self.worker)
                for name, d in self.distributions.items():
                    _suggest(trial, name, d)
                trials.append(trial)
        return trials

    def run_batch(self, study: "optuna.Study", trials: list["optuna.Trial"], heartbeat: _Heartbeat) -> None:
        """Train ``trials`` as one population to ``steps``, reporting at the rungs; every trial is told."""
        c, task = self.config, self.task
        pop = self._population(trials)
        live = list(trials)
        done = 0
        for r, t in enumerate(self.rungs + [c.steps]):
            # each segment's batches are seeded by the study's seed and the segment alone: every batch of every
            # worker sees the same data order (common random numbers across batches)
            pop.fit(task.x_train, task.y_train, steps=t - done, batch_size=c.batch_size,
                    seed=derive_seed(self.seed, r), progress=False)
            done = t
            values = objective_values(pop.evaluate(task.x_val, task.y_val), self.objective).tolist()
            keep = []
            for i, (trial, v) in enumerate(zip(live, values)):
                if not math.isfinite(v):
                    if self._write(trial, heartbeat, trial.set_user_attr, DIVERGED, True):
                        self._tell(study, trial, heartbeat, state=TrialState.FAIL)
                    continue
                if self._write(trial, heartbeat, trial.report, v, t):
                    keep.append(i)
            if t == c.steps:
                save = self._to_save(study, [values[i] for i in keep])
                for j, i in enumerate(keep):
                    self._finish(study, live[i], pop, i, values[i], heartbeat, save[j])
                return
            _refresh(study)  # every worker's reports so far, read once for this rung's decisions
            kept = []
            for i in keep:
                if live[i].should_prune():
                    self._tell(study, live[i], heartbeat, state=TrialState.PRUNED)
                else:
                    kept.append(i)
            if not kept:
                return
            if len(kept) < len(live):  # pruned and diverged candidates leave the batch
                pop = pop.select(kept)
                live = [live[i] for i in kept]

    def _to_save(self, study: "optuna.Study", values: list[float]) -> list[bool]:
        """Which of a batch's finished trials (their ``values``) get a model file: all, or with ``"best"`` the
        batch's best one if it beats every trial the study has completed (other workers' included)."""
        if self.out_dir is None:
            return [False] * len(values)
        if self.model_files == "all" or not values:
            return [True] * len(values)
        _refresh(study)  # other workers' completed trials count too
        done = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        best = min(range(len(values)), key=values.__getitem__)
        return [i == best and (not done or values[i] < min(done)) for i in range(len(values))]

    def _finish(self, study: "optuna.Study", trial: "optuna.Trial", pop: Union[Population, PopulationGroup], i: int,
                value: float, heartbeat: _Heartbeat, save: bool = True) -> None:
        if save and self.out_dir is not None:
            path = (self.out_dir / f"trial_{trial.number:05d}.pt").resolve()
            c, model = self.config, pop.to_module(i)
            save_model(path, model, self.raw_task, hparams={**trial.params, **self.fixed},
                       method="optuna-batched", study=study.study_name, trial=trial.number, seed=self.seed,
                       val={self.objective: value}, steps=c.steps, optimizer=c.optimizer, activation=c.activation,
                       loss=self.task.loss, layers=layer_sizes(model))  # the trial's own depth and widths
            if not self._write(trial, heartbeat, trial.set_user_attr, "model_path", str(path)):
                path.unlink(missing_ok=True)  # the trial is no longer this worker's: no file claims it
                return
        self._tell(study, trial, heartbeat, value=value)

    @staticmethod
    def _write(trial: "optuna.Trial", heartbeat: _Heartbeat, write: Any, *args: Any) -> bool:
        """``write(*args)`` (a report or user attribute of ``trial``); False, and the trial leaves this batch, if
        another worker already failed it as stale (this one stalled past the grace period): its retry counts."""
        try:
            write(*args)
            return True
        except optuna.exceptions.UpdateFinishedTrialError:
            heartbeat.discard(trial._trial_id)
            return False

    @staticmethod
    def _tell(study: "optuna.Study", trial: "optuna.Trial", heartbeat: _Heartbeat, value: Optional[float] = None,
              state: Optional[TrialState] = None) -> None:
        try:
            study.tell(trial, value, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # failed as stale by another worker (this one stalled past the grace period): its retry counts
        heartbeat.discard(trial._trial_id)


def check_study(study: Any) -> "optuna.Study":
    """``study`` checked to be a single-objective Optuna study that minimizes."""
    if not isinstance(study, optuna.Study):
        raise TypeError(f"study must be an optuna.Study; got {type(study).__name__}")
    if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise ValueError("study must minimize one value (the validation loss or error): create it with "
                         "optuna.create_study(direction='minimize')")
    return study


def _suggest(trial: "optuna.Trial", name: str, d: Any) -> Any:
    """``trial``'s value for ``name`` from distribution ``d`` (an enqueued or retried trial's own value)."""
    D = optuna.distributions
    if isinstance(d, D.FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, log=d.log, step=d.step)
    if isinstance(d, D.IntDistribution):
        return trial.suggest_int(name, d.low, d.high, log=d.log, step=d.step)
    return trial.suggest_categorical(name, d.choices)


def fail_stale(study: "optuna.Study") -> None:
    """Fail the study's trials whose worker stopped beating (the storage's failed-trial callback retries them),
    and trials orphaned between their creation and first heartbeat: RUNNING for twice the grace period with
    neither parameters nor a worker (see :meth:`BatchedObjective.ask`)."""
    storage = study._storage
    if not optuna.storages._heartbeat.is_heartbeat_enabled(storage):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
        interval = storage.get_heartbeat_interval()
        grace = getattr(getattr(storage, "_backend", storage), "grace_period", None) or 2 * interval
        now = datetime.datetime.now()
        callback = storage.get_heartbeat_stale_trial_callback() if hasattr(
            storage, "get_heartbeat_stale_trial_callback") else storage.get_failed_trial_callback()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.params or "worker" in t.user_attrs or t.datetime_start is None:
                continue
            if (now - t.datetime_start).total_seconds() > 2 * grace:
                try:
                    failed = storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                except optuna.exceptions.UpdateFinishedTrialError:
                    failed = False
                if failed and callback is not None:
                    callback(study, copy.deepcopy(storage.get_trial(t._trial_id)))


def optimize_batched(study: "optuna.Study", task: TaskLike, n_trials: int, *, batch_size: int = 64,
                     space: Union[SearchSpace, Distributions, None] = None, optimizer: Optional[str] = None,
                     hidden: Sequence[int] = (128,), steps: int = 300, train_batch_size: int = 128,
                     activation: str = "relu", nesterov: bool = False, objective: str = "loss",
                     rungs: Optional[Sequence[int]] = None, out_dir: Union[str, os.PathLike, None] = None,
                     seed: int = 0, backend: str = "auto", device: str = "cpu", dtype: torch.dtype = torch.float32,
                     precision: Optional[str] = None, timeout: Optional[float] = None,
                     model_files: str = "all") -> list["optuna.trial.FrozenTrial"]:
    """Run ``n_trials`` trials of ``study`` on ``task``, ``batch_size`` (K) at a time as one population.

    Args:
        study: a minimizing Optuna study; its sampler proposes, its pruner prunes (at ``rungs``).
        task: a Task, a dataset name or path, or an ``(x, y)`` pair.
        n_trials: trials to run in this call (the last batch may be smaller).
        batch_size: K, the trials asked and trained together.
        space: a :class:`SearchSpace` (fixed values applied, the rest asked) or a dict of Optuna distributions
            over the optimizer's hyperparameters (default: the optimizer's default space); either may add
            ``width``, ``depth`` and ``dropout``: each trial then trains with its own (``hidden`` sets the layer
            sizes a depth takes, as in the tuners), the batch still as one pool.
        optimizer, hidden, activation, nesterov, steps, train_batch_size: every candidate's training
            (``train_batch_size``: its minibatch).
        objective: the value told: validation ``"loss"`` or ``"error"``.
        rungs: steps at which the batch reports its validation values and asks the pruner (default
            :func:`default_rungs`: steps/27, steps/9, steps/3); a surviving trial also reports at ``steps``.
        out_dir: where each finished trial's model file goes (``trial_NNNNN.pt``, read by
            :func:`metahp_fast.load_model`); its path is the trial's ``model_path`` user attribute.
        model_files: ``"all"``: every finished trial gets its file; ``"best"``: only a trial that beats every
            trial the study had completed when it was told (so the study's best trial always has one).
        seed: the initial weights and data order, shared by every trial.
        backend, device, dtype, precision: where the populations run (see :class:`~metahp_fast.Population`).
        timeout: stop asking new batches after this many seconds.

    Returns the trials run (frozen, in order). A candidate that diverges is told FAIL with user attribute
    ``diverged``; with an RDB storage that has heartbeats, its batch's trials beat and stale trials of dead
    workers are failed (and retried by the storage's callback) before every batch.
    """
    check_study(study)
    n_trials = _positive_int("n_trials", n_trials)
    batch_size = _positive_int("batch_size", batch_size)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or None; got {timeout!r}")
    runner = BatchedObjective(task, space=space, optimizer=optimizer, hidden=hidden, steps=steps,
                              train_batch_size=train_batch_size, activation=activation, nesterov=nesterov,
                              objective=objective, rungs=rungs, out_dir=out_dir, seed=seed, backend=backend,
                              device=device, dtype=dtype, precision=precision, model_files=model_files)
    start, numbers = time.perf_counter(), []
    while len(numbers) < n_trials and (timeout is None or time.perf_counter() - start < timeout):
        fail_stale(study)
        numbers += run_one_batch(study, runner, min(batch_size, n_trials - len(numbers)))
    wanted = set(numbers)
    return [t for t in study.get_trials(deepcopy=False) if t.number in wanted]


def run_one_batch(study: "optuna.Study", runner: BatchedObjective, k: int) -> list[int]:
    """Ask ``k`` trials, train and tell them; returns their numbers. Trials still unfinished when an error
    escapes (a bad storage, a kill) are told FAIL where possible, so they do not stay RUNNING."""
    with _Heartbeat(study) as hb:
        trials: list[optuna.Trial] = []
        try:
            view = _batch_view(study)
            trials = runner.ask(view, k, hb)
            runner.run_batch(view, trials, hb)
        except BaseException:
            for t in trials:
                try:
                    if study._storage.get_trial(t._trial_id).state == TrialState.RUNNING:
                        study.tell(t, state=TrialState.FAIL)
                except Exception:  # noqa: BLE001 - best effort; heartbeats retry what is left
                    pass
            raise
    return [t.number for t in trials]


def enqueue_suggestions(study: "optuna.Study", suggestions: Any, *, task: Optional[TaskLike] = None,
                        space: Union[SearchSpace, Distributions, None] = None, optimizer: Optional[str] = None,
                        steps: int = 300, train_batch_size: int = 128) -> int:
    """Enqueue warm starts as the next trials of ``study`` (``study.enqueue_trial``): a dict of natural values,
    a list of them (a portfolio), or a meta-learner (its prediction for ``task`` at ``steps`` x
    ``train_batch_size``, carried into ``space``'s ranges). Only the space's asked hyperparameters are
    enqueued; returns how many trials were."""
    opt, dists, _ = _space(space, optimizer)
    if hasattr(suggestions, "predict_u"):
        if task is None:
            raise ValueError("task is required to enqueue a meta-learner's prediction")
        if isinstance(space, Mapping):
            raise ValueError("space must be a SearchSpace (or None) to enqueue a meta-learner's prediction")
        from .tuners.base import meta_center
        full = check_space(space, opt)
        u = meta_center(suggestions, full, as_task(task), steps, train_batch_size)
        suggestions = [{k: float(v) for k, v in full.from_unconstrained(u, round_ints=True,
                                                                         include_fixed=False).items()}]
    elif isinstance(suggestions, Mapping):
        suggestions = [suggestions]
    if not isinstance(suggestions, Sequence) or not suggestions or not all(isinstance(s, Mapping)
                                                                           for s in suggestions):
        raise TypeError("suggestions must be a dict of hyperparameter values, a non-empty list of them, or a "
                        "meta-learner")
    for j, s in enumerate(suggestions):
        missing = [n for n in dists if n not in s]
        if missing:
            raise ValueError(f"suggestions[{j}] has no value for {missing}; the space asks for {list(dists)}")
        values = {n: s[n] for n in dists}
        for n, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"suggestions[{j}][{n!r}] must be a finite number; got {v!r}")
        study.enqueue_trial(values, skip_if_exists=True)
    return len(suggestions)


__all__ = ["BatchedObjective", "DIVERGED", "MODEL_FILES", "check_study", "default_rungs", "enqueue_suggestions",
           "fail_stale", "optimize_batched", "optuna_distributions", "run_one_batch"]
