"""Many workers on one study through Optuna's RDB storage (SQLite; PostgreSQL when .ci/run starts one and
exports METAHP_TEST_POSTGRES_URL): one of three workers is killed mid-run; its trials are retried, not lost."""
import json
import os
import signal
import socket
import time
import uuid

import pytest

optuna = pytest.importorskip("optuna")

from metahp_fast.optuna import DIVERGED  # noqa: E402
from metahp_fast.workers import (WorkerConfig, check_reachable, check_storage_url, open_study,  # noqa: E402
                                 start_workers, study_counts)
from tests.single_thread import one_thread  # noqa: E402,F401

PG_URL = os.environ.get("METAHP_TEST_POSTGRES_URL")


def _storages(tmp_path):
    return {"sqlite": f"sqlite:///{tmp_path / 'study.db'}", "postgresql": PG_URL}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_three_workers_one_killed(tmp_path, kind):
    if kind == "postgresql" and not PG_URL:
        pytest.skip("no PostgreSQL server: .ci/run starts one (.ci/postgres.sh) and sets METAHP_TEST_POSTGRES_URL")
    # small, but enough batches that worker 0 gets one however late it starts, each long enough (a few tenths
    # of a second and more) to be caught running
    cfg = WorkerConfig(storage=_storages(tmp_path)[kind], study=f"kill-{uuid.uuid4().hex[:8]}", data="digits",
                       n_trials=48, batch_size=6, steps=400, hidden=[64], ranges={"lr": [0.01, 0.3]},
                       pruner="sha", heartbeat_interval=1, grace_period=3, out_dir=str(tmp_path / "models"))
    reports = [str(tmp_path / f"report_{i}.json") for i in range(3)]
    procs = start_workers(cfg, 3, reports=reports, log_dir=str(tmp_path))
    victim = f"{socket.gethostname()}:{procs[0].pid}"
    study = open_study(cfg)
    try:
        deadline = time.time() + 120
        running = []
        while not running and time.time() < deadline and procs[0].poll() is None:
            running = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                       if t.user_attrs.get("worker") == victim]
            if not running:
                time.sleep(0.01)
        assert running and procs[0].poll() is None, "worker 0 never ran a trial: " + (
            tmp_path / "worker_0.log").read_text()
        os.kill(procs[0].pid, signal.SIGKILL)
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    logs = "\n".join((tmp_path / f"worker_{i}.log").read_text() for i in range(3))
    assert codes[0] == -signal.SIGKILL and codes[1:] == [0, 0], logs

    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    counts = study_counts(study)
    assert counts["RUNNING"] == 0 and counts["WAITING"] == 0
    assert counts["done"] >= cfg.n_trials
    # what RetryHeartbeatStaleTrialCallback.retried_trial_number and .retry_history read (without their
    # "experimental" warnings)
    retried = {t.system_attrs["failed_trial"]: t for t in trials if "failed_trial" in t.system_attrs}
    for t in trials:  # every trial COMPLETE, PRUNED or retried; a retry keeps the hyperparameters
        if t.state == states.FAIL and not t.user_attrs.get(DIVERGED):
            first = (t.system_attrs.get("retry_history") or [t.number])[0]
            assert first in retried, f"trial {t.number} failed and was not retried"
        else:
            assert t.state in (states.COMPLETE, states.PRUNED, states.FAIL), (t.number, t.state)
    for n in running:  # the killed worker's trials: failed as stale, then run again by a survivor
        assert trials[n].state == states.FAIL
        again = retried[n]
        # the values drawn before the kill are kept (killed mid-ask, a trial may have only some of them)
        assert trials[n].params.items() <= again.params.items() and len(again.params) == 3
        assert again.state in (states.COMPLETE, states.PRUNED)
        assert again.user_attrs["worker"] != victim

    told = [v for r in reports[1:] for _, state, v in json.loads(open(r).read())["trials"] if state == "COMPLETE"]
    told += [t.value for t in trials if t.state == states.COMPLETE and t.user_attrs.get("worker") == victim]
    assert study.best_value == min(told)
    assert os.path.isfile(study.best_trial.user_attrs["model_path"])


def test_bad_storage_urls_fail_fast(tmp_path):
    with pytest.raises(ValueError, match="storage: 'not a url' is not a database URL"):
        check_storage_url("not a url")
    with pytest.raises(ValueError, match="storage must be a database URL"):
        check_storage_url("")
    with pytest.raises(ValueError, match="'redis'"):
        check_storage_url("redis://localhost:6379")
    with pytest.raises(ValueError, match="in-memory SQLite database cannot be shared"):
        check_storage_url("sqlite:///:memory:")
    with pytest.raises(ValueError, match="folder of the SQLite file"):
        check_storage_url(f"sqlite:///{tmp_path}/no/such/dir/study.db")
    with pytest.raises(ValueError, match="needs its Python driver"):
        check_storage_url("mysql://u@h/db")  # MySQLdb is not installed here
    with pytest.raises(ValueError, match="unknown driver in 'postgresql\\+nosuch'"):
        check_storage_url("postgresql+nosuch://u@h/db")
    cfg = WorkerConfig(storage="bogus://x", study="s")
    with pytest.raises(ValueError, match="storage: 'bogus://x' is not a database URL|uses 'bogus'"):
        start_workers(cfg, 2)


def test_unreachable_server_fails_fast():
    with socket.socket() as s:  # a local port nobody listens on: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://user:secret@127.0.0.1:{port}/db"
    with pytest.raises(ConnectionError, match=r"storage: cannot reach the database 'postgresql://user:\*\*\*@"):
        check_reachable(url)
    cfg = WorkerConfig(storage=url, study="s")
    with pytest.raises(ConnectionError, match="cannot reach the database"):
        start_workers(cfg, 3)


def test_joining_with_other_settings_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(WorkerConfig(storage=url, study="s", steps=100), create=True)
    with pytest.raises(ValueError, match="was started with other settings: steps=100 \\(here 200\\)"):
        open_study(WorkerConfig(storage=url, study="s", steps=200))


def test_worker_config_checks():
    with pytest.raises(ValueError, match="pruner must be one of"):
        WorkerConfig(storage="sqlite:///x.db", study="s", pruner="asha")
    with pytest.raises(ValueError, match="grace_period must be an int > heartbeat_interval"):
        WorkerConfig(storage="sqlite:///x.db", study="s", heartbeat_interval=5, grace_period=2)
    with pytest.raises(ValueError, match="n_workers must be a positive int"):
        start_workers(WorkerConfig(storage="sqlite:///x.db", study="s"), 0)


def test_a_trial_orphaned_before_its_first_heartbeat_is_retried(tmp_path):
    """A worker killed between creating a trial and its first heartbeat leaves a RUNNING trial without
    parameters; Optuna's stale check never sees it (no heartbeat), fail_stale does."""
    import datetime

    from metahp_fast.optuna import fail_stale
    from metahp_fast.workers import make_storage

    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path / 's.db'}", 1, 2), study_name="o")
    old = datetime.datetime.now() - datetime.timedelta(seconds=60)
    orphan = optuna.trial.FrozenTrial(number=0, state=optuna.trial.TrialState.RUNNING, value=None,
                                      datetime_start=old, datetime_complete=None, params={}, distributions={},
                                      user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=0)
    fresh = optuna.trial.FrozenTrial(number=0, state=optuna.trial.TrialState.RUNNING, value=None,
                                     datetime_start=datetime.datetime.now(), datetime_complete=None, params={},
                                     distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
                                     trial_id=0)
    study.add_trial(orphan)
    study.add_trial(fresh)  # just created: its worker may be about to beat
    fail_stale(study)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "RUNNING", "WAITING"]
    assert study.trials[2].system_attrs["failed_trial"] == 0


def test_tune_command_runs_workers_on_a_study(tmp_path, capsys):
    """`metahp-fast tune --study NAME --workers N`: the default SQLite storage in --out, every trial finished."""
    import optuna

    from metahp_fast import cli
    out = tmp_path / "run"
    rc = cli.main(["tune", "--data", "iris", "--study", "s", "--trials", "8", "--size", "4",
                   "--steps", "9", "--hidden", "8", "--pruner", "none", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0, printed  # without --workers: one worker here (once this failed on workers=None)
    assert "study 's' in sqlite:///" in printed and "1 worker(s) here" in printed and "trials: " in printed
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 8
    assert optuna.trial.TrialState.RUNNING not in states
    assert cli.main(["tune", "--data", "iris", "--workers", "1", "--out", str(out)]) == 2
    assert "--study: name the study" in capsys.readouterr().err
    assert cli.main(["tune", "--data", "iris", "--study", "s", "--storage", "mysql+nope://x", "--out", str(out)]) == 2
