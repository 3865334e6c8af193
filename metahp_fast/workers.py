"""One Optuna study, many worker processes, many machines: the coordination is Optuna's RDB storage (an SQLite
file by default, nothing to start; PostgreSQL for a cluster). :func:`run_workers` starts N local workers (one
per GPU with ``device="cuda"`` and several GPUs); the same call on another machine with the same URL and study
name joins the study. Every worker loops: fail stale trials, ask a batch, train it as one population
(:mod:`metahp_fast.optuna`), tell it; heartbeats and a retry callback make a killed worker's trials go stale
and come back as new trials with the same hyperparameters, run by the survivors.

    metahp-fast tune --storage postgresql://user@db:5432/hp --study digits-sgd --workers 2 --data digits

is :func:`cli_tune_workers`; ``python -m metahp_fast.workers CONFIG_JSON INDEX`` is one worker process.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .tuners.tpe import require_optuna

#: Seconds a connection attempt to a database server may take before the storage is called unreachable.
CONNECT_TIMEOUT = 5
#: Seconds an SQLite writer waits for another process's lock before failing.
SQLITE_LOCK_TIMEOUT = 60
SAMPLERS = ("tpe", "random")
PRUNERS = ("sha", "hyperband", "median", "none")
BACKENDS = {"sqlite": None, "postgresql": "psycopg2", "mysql": "pymysql"}


def _optuna():
    return require_optuna("metahp_fast.workers")


def check_storage_url(url: Any, *, shared: bool = True) -> str:
    """``url`` checked to be a database URL Optuna can use, with its driver installed; for SQLite, its folder
    must exist (and with ``shared``, processes must be able to share it: not ``:memory:``). A ValueError
    naming ``storage`` otherwise, before anything connects."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"storage must be a database URL such as sqlite:///study.db or "
                         f"postgresql://user:password@host:5432/dbname; got {url!r}")
    try:
        u = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise ValueError(f"storage: {url!r} is not a database URL (expected e.g. sqlite:///study.db or "
                         f"postgresql://user:password@host:5432/dbname): {e}") from None
    backend = u.get_backend_name()
    if backend not in BACKENDS:
        raise ValueError(f"storage: {u.render_as_string(hide_password=True)!r} uses {backend!r}; the study's "
                         f"storage must be one of {sorted(BACKENDS)} (an RDB that Optuna supports)")
    try:
        u.get_dialect().import_dbapi()
    except ImportError as e:
        hint = "pip install 'metahp-fast[tune]'" if backend == "postgresql" else f"pip install {BACKENDS[backend]}"
        raise ValueError(f"storage: {backend} needs its Python driver ({e.name or e}); {hint}") from None
    except sqlalchemy.exc.NoSuchModuleError as e:
        raise ValueError(f"storage: unknown driver in {u.drivername!r}: {e}") from None
    if backend == "sqlite":
        db = u.database or ""
        if db in ("", ":memory:") or db.startswith("file::memory:"):
            if shared:
                raise ValueError("storage: an in-memory SQLite database cannot be shared by worker processes; "
                                 "give a file, e.g. sqlite:///study.db")
        elif not Path(db).expanduser().resolve().parent.is_dir():
            raise ValueError(f"storage: the folder of the SQLite file {db!r} does not exist")
    elif not u.host:
        raise ValueError(f"storage: {u.render_as_string(hide_password=True)!r} names no server host")
    return url


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments for the storage: a connect timeout (fail fast on an unreachable server), a
    lock timeout for SQLite, stale pooled connections replaced."""
    from sqlalchemy.engine import make_url

    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT}}
    return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}, "pool_pre_ping": True}


def check_reachable(url: str) -> None:
    """Connect once (within :data:`CONNECT_TIMEOUT` seconds); a ConnectionError with the server's message if
    the database cannot be reached or refuses the login."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    engine = sqlalchemy.create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise ConnectionError(f"storage: cannot reach the database {shown!r}: {reason[0] if reason else e}") from None
    finally:
        engine.dispose()


def make_storage(url: str, heartbeat_interval: int = 10, grace_period: Optional[int] = None, max_retry: int = 3):
    """Optuna's RDB storage for ``url`` with heartbeats every ``heartbeat_interval`` s and a callback that
    enqueues a stale trial again (up to ``max_retry`` times) with its hyperparameters."""
    optuna = _optuna()
    check_storage_url(url, shared=False)
    storages = optuna.storages
    retry_cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    key = "heartbeat_stale_trial_callback" if retry_cls.__name__ == "RetryHeartbeatStaleTrialCallback" \
        else "failed_trial_callback"
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = retry_cls(max_retry=max_retry)
        try:
            storage = storages.RDBStorage(url, engine_kwargs=engine_kwargs(url),
                                          heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                          **{key: callback})
        except Exception as e:  # noqa: BLE001 - sqlalchemy's and optuna's errors alike: one clear message
            if isinstance(e, (ValueError, TypeError)):
                raise
            check_reachable(url)  # the usual cause, with the server's own words
            raise
    if storage.engine.dialect.name == "sqlite":
        _fast_sqlite(storage.engine)
    return storage


def _fast_sqlite(engine) -> None:
    """Write-ahead logging, synced at checkpoints rather than at every commit: a trial's dozen small commits
    (ask, parameters, heartbeat, reports, tell) cost microseconds instead of an fsync each (15 ms here), and
    readers stop blocking the writer. A commit can be lost on power loss, not on a killed process; the file
    must be on a local disk (as SQLite's locking needs anyway)."""
    import sqlalchemy

    def pragmas(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
    sqlalchemy.event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections opened while the storage set itself up get the pragmas too


@dataclass
class WorkerConfig:
    """What every worker of a study trains: the data (a dataset name or a path each machine can read), the
    candidates' training, the search (sampler, pruner, rungs), the study size and the fault tolerance."""

    storage: str
    study: str
    data: str = "digits"
    n_trials: int = 256
    batch_size: int = 64
    steps: int = 300
    train_batch_size: int = 128
    hidden: list[int] = field(default_factory=lambda: [128])
    optimizer: str = "sgd"
    activation: str = "relu"
    objective: str = "loss"
    ranges: dict[str, list[float]] = field(default_factory=dict)
    sampler: str = "tpe"
    pruner: str = "sha"
    rungs: Optional[list[int]] = None
    seed: int = 0
    device: str = "cpu"
    backend: str = "auto"
    threads: int = 1
    out_dir: Optional[str] = None
    heartbeat_interval: int = 10
    grace_period: Optional[int] = None
    max_retry: int = 3

    def __post_init__(self) -> None:
        for name in ("n_trials", "batch_size", "steps", "train_batch_size", "threads", "heartbeat_interval"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}; got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"pruner must be one of {PRUNERS}; got {self.pruner!r}")
        if not isinstance(self.study, str) or not self.study:
            raise ValueError(f"study must be a non-empty name; got {self.study!r}")
        if self.grace_period is not None and (not isinstance(self.grace_period, int) or
                                              self.grace_period <= self.heartbeat_interval):
            raise ValueError(f"grace_period must be an int > heartbeat_interval={self.heartbeat_interval}; got "
                             f"{self.grace_period!r}")

    def study_settings(self) -> dict[str, Any]:
        """What every worker of one study must agree on (kept in the study's user attributes)."""
        keys = ("data", "steps", "train_batch_size", "hidden", "optimizer", "activation", "objective", "ranges",
                "rungs", "seed")
        return {k: getattr(self, k) for k in keys}

    def space(self):
        from .search_space import SearchSpace
        space = SearchSpace.default(self.optimizer)
        return space.with_ranges({k: tuple(v) for k, v in self.ranges.items()}) if self.ranges else space

    def rung_steps(self) -> list[int]:
        from .optuna import default_rungs
        return list(self.rungs) if self.rungs else default_rungs(self.steps)

    def make_pruner(self):
        optuna = _optuna()
        first = self.rung_steps()[0] if self.rung_steps() else 1
        if self.pruner == "sha":  # rungs at first * 3^i: the default rungs (steps/27, /9, /3) exactly
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=self.steps, reduction_factor=3)
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=min(5, self.batch_size))
        return optuna.pruners.NopPruner()

    def make_sampler(self, index: int):
        """Each worker draws its own stream (same seed, worker index and process): workers on other machines
        with the same index must not propose the same trials."""
        optuna = _optuna()
        from .seeds import derive_seed
        seed = derive_seed(self.seed, index, os.getpid())
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # constant liar: trials running elsewhere (and earlier in this batch) count as poor, so a batch and
            # parallel workers spread out instead of proposing the same point
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def open_study(cfg: WorkerConfig, index: int = 0, create: bool = False):
    """The study ``cfg.study`` in ``cfg.storage`` with this worker's sampler and the pruner; ``create`` makes it
    if it does not exist and records its settings, which a joining worker must match."""
    optuna = _optuna()
    storage = make_storage(cfg.storage, cfg.heartbeat_interval, cfg.grace_period, cfg.max_retry)
    sampler, pruner = cfg.make_sampler(index), cfg.make_pruner()
    if create:
        study = optuna.create_study(storage=storage, study_name=cfg.study, direction="minimize",
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
    else:
        study = optuna.load_study(study_name=cfg.study, storage=storage, sampler=sampler, pruner=pruner)
    mine = json.loads(json.dumps(cfg.study_settings()))
    theirs = study.user_attrs.get("metahp_fast")
    if theirs is None:
        study.set_user_attr("metahp_fast", mine)
    elif theirs != mine:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"study {cfg.study!r} was started with other settings: "
                         + ", ".join(f"{k}={theirs.get(k)!r} (here {mine.get(k)!r})" for k in diff))
    return study


def study_counts(study) -> dict[str, int]:
    """Trials per state; ``done``: COMPLETE, PRUNED and diverged (FAIL with the ``diverged`` attribute)."""
    from .optuna import DIVERGED
    counts = {s.name: 0 for s in _optuna().trial.TrialState}
    diverged = 0
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
        diverged += t.state.name == "FAIL" and bool(t.user_attrs.get(DIVERGED))
    counts["done"] = counts["COMPLETE"] + counts["PRUNED"] + diverged
    return counts


def worker_loop(cfg: WorkerConfig, index: int = 0, report: Optional[str] = None) -> list[tuple[int, str, Any]]:
    """One worker: batches until the study has ``n_trials`` done (COMPLETE, PRUNED or diverged), no trial is
    waiting (enqueued or retried) and none runs elsewhere (a dead worker's go stale and come back as waiting
    ones); returns (number, state, value) of the trials it told, also written as JSON to ``report``."""
    import torch

    from .optuna import BatchedObjective, fail_stale, run_one_batch

    torch.set_num_threads(cfg.threads)
    device = cfg.device
    if device == "cuda" and torch.cuda.device_count() > 1:
        device = f"cuda:{index % torch.cuda.device_count()}"  # one worker per GPU
    study = open_study(cfg, index)
    runner = BatchedObjective(cfg.data, space=cfg.space(), hidden=cfg.hidden, steps=cfg.steps,
                              train_batch_size=cfg.train_batch_size, activation=cfg.activation,
                              objective=cfg.objective, rungs=cfg.rungs, out_dir=cfg.out_dir, seed=cfg.seed,
                              backend=cfg.backend, device=device)
    told: list[int] = []
    while True:
        fail_stale(study)
        c = study_counts(study)
        room = cfg.n_trials - c["done"] - c["RUNNING"]
        if c["WAITING"] or room > 0:  # enqueued and retried trials are asked first, and always run
            told += run_one_batch(study, runner, min(cfg.batch_size, max(room, c["WAITING"])))
        elif c["RUNNING"]:  # the rest runs elsewhere: wait, and take over what goes stale
            time.sleep(min(cfg.heartbeat_interval, 2))
        else:
            break
    mine = set(told)
    out = [(t.number, t.state.name, t.value) for t in study.get_trials(deepcopy=False) if t.number in mine]
    if report:
        Path(report).write_text(json.dumps({"pid": os.getpid(), "index": index, "trials": out}))
    return out


def _child_env(cfg: WorkerConfig) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(cfg.threads)
    return env


def start_workers(cfg: WorkerConfig, n_workers: int, reports: Optional[Sequence[str]] = None,
                  log_dir: Optional[str] = None) -> list[subprocess.Popen]:
    """Check the storage, create the study (or check its settings), then start ``n_workers`` worker processes
    (``python -m metahp_fast.workers``) and return them running; ``reports[i]``: worker i's JSON summary."""
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive int; got {n_workers!r}")
    check_storage_url(cfg.storage)
    from sqlalchemy.engine import make_url
    if make_url(cfg.storage).get_backend_name() != "sqlite":
        check_reachable(cfg.storage)
    open_study(cfg, create=True)  # tables and study made once here, not raced by the workers
    procs = []
    blob = json.dumps(dataclasses.asdict(cfg))
    for i in range(n_workers):
        args = [sys.executable, "-m", "metahp_fast.workers", blob, str(i)]
        if reports:
            args.append(reports[i])
        log = open(Path(log_dir) / f"worker_{i}.log", "w") if log_dir else None
        procs.append(subprocess.Popen(args, env=_child_env(cfg), stdout=log or subprocess.DEVNULL,
                                      stderr=log or None))
        if log:
            log.close()
    return procs


def run_workers(cfg: WorkerConfig, n_workers: int, log_dir: Optional[str] = None) -> dict[str, Any]:
    """Start ``n_workers`` local workers on the study and wait for them; returns the exit codes, the trial
    counts and the best trial (number, value, params, model path)."""
    procs = start_workers(cfg, n_workers, log_dir=log_dir)
    try:
        codes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    study = open_study(cfg)
    summary: dict[str, Any] = {"exit_codes": codes, "counts": study_counts(study), "best": None}
    try:
        best = study.best_trial
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                           "model_path": best.user_attrs.get("model_path")}
    except ValueError:  # no complete trial
        pass
    return summary


def cli_tune_workers(args: Any) -> int:
    """``metahp-fast tune --storage URL --study NAME --workers N``: the CLI's arguments (an argparse namespace:
    storage, study, workers, and the tune options data, steps, batch_size, hidden, optimizer, activation,
    objective, space, seed, device, backend, out; optional trials, size, pruner, sampler) -> the exit code."""
    hidden = [w for group in (getattr(args, "hidden", None) or [[128]]) for w in group]
    out = Path(getattr(args, "out", "tune-out"))
    try:
        cfg = WorkerConfig(storage=args.storage or f"sqlite:///{(out / 'study.db').resolve()}",
                           study=args.study, data=args.data, n_trials=int(getattr(args, "trials", None) or 256),
                           batch_size=getattr(args, "size", None) or 64, steps=args.steps,
                           train_batch_size=args.batch_size, hidden=hidden, optimizer=args.optimizer,
                           activation=args.activation, objective=getattr(args, "objective", "loss"),
                           ranges={k: list(v) for k, v in (getattr(args, "space", None) or {}).items()},
                           sampler=getattr(args, "sampler", None) or "tpe",
                           pruner=getattr(args, "pruner", None) or "sha", seed=args.seed, device=args.device,
                           backend=args.backend, out_dir=str((out / "models").resolve()))
        if not args.storage:  # the default SQLite file lives in --out
            out.mkdir(parents=True, exist_ok=True)
        check_storage_url(cfg.storage)  # before anything else is printed or made
        from sqlalchemy.engine import make_url
        shown = make_url(cfg.storage).render_as_string(hide_password=True)
        out.mkdir(parents=True, exist_ok=True)
        n = args.workers
        if n is None and cfg.device == "cuda":
            import torch
            n = max(1, torch.cuda.device_count())
        n = 1 if n is None else n  # the documented default: one worker here
        print(f"study {cfg.study!r} in {shown}: {n} worker(s) here, {cfg.n_trials} trials in batches of "
              f"{cfg.batch_size}; the same command on another machine joins it")
        summary = run_workers(cfg, n, log_dir=str(out))
    except (ValueError, ConnectionError) as e:
        print(f"metahp-fast: {e}", file=sys.stderr)
        return 2
    c = summary["counts"]
    print(f"trials: {c['COMPLETE']} complete, {c['PRUNED']} pruned, {c['FAIL']} failed, {c['RUNNING']} running")
    if summary["best"]:
        b = summary["best"]
        print(f"best: trial {b['number']} value {b['value']:.4f} {b['params']} -> {b['model_path']}")
    bad = [i for i, code in enumerate(summary["exit_codes"]) if code != 0]
    if bad:
        print(f"metahp-fast: worker(s) {bad} failed; see {out}/worker_N.log", file=sys.stderr)
        return 1
    return 0


def _main(argv: Sequence[str]) -> int:
    """``python -m metahp_fast.workers CONFIG_JSON INDEX [REPORT]``: one worker process."""
    if len(argv) not in (2, 3):
        print("usage: python -m metahp_fast.workers CONFIG_JSON INDEX [REPORT_PATH]", file=sys.stderr)
        return 2
    cfg = WorkerConfig(**json.loads(argv[0]))
    worker_loop(cfg, int(argv[1]), argv[2] if len(argv) == 3 else None)
    return 0


__all__ = ["WorkerConfig", "check_reachable", "check_storage_url", "cli_tune_workers", "make_storage",
           "open_study", "run_workers", "start_workers", "study_counts", "worker_loop"]


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

