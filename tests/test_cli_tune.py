"""The tune and evaluate commands: report.json, best.pt, plots, CSV quirks, resuming, one-line errors."""
import json
import os
import shlex
import subprocess
import sys

import pytest
import torch
from torch import nn

from metahp_fast.model_file import read_model_file
from metahp_fast import cli
from metahp_fast.quality import reference_pick_regret
from metahp_fast.tasks import load_task
from tests.single_thread import one_thread  # noqa: F401  (autouse)
from tests.util import dying_after

pytest.importorskip("sklearn")

SMALL = ["--steps", "30", "--hidden", "16", "--no-progress"]


def test_tune_writes_report_model_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["tune", "--data", "iris", "--method", "sh", "--budget", "4", "--out", str(out), "--plot", *SMALL]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "note: only 30 validation rows" in printed and "--folds 2" in printed  # iris: a small split
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "hparams.png", "learning_curves.png",
                                                      "report.json"]  # no checkpoint or temp file left
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "sh" and report["task"] == "iris" and report["class_names"] == [
        "setosa", "versicolor", "virginica"]
    assert set(report["best_hparams"]) == {"lr", "momentum", "weight_decay"}
    assert 0 < report["cost"]["candidate_steps"] <= 4 * 30 and report["cost"]["seconds"] > 0
    assert set(report["validation"]) == {"loss", "accuracy"} and set(report["test"]) == {"loss", "accuracy"}
    saved = read_model_file(out / "best.pt")
    assert isinstance(saved["model"], nn.Sequential) and saved["layers"] == [4, 16, 3]
    task = load_task("iris", seed=0)
    assert torch.equal(saved["mean"], task.mean) and torch.equal(saved["std"], task.std)
    with torch.no_grad():
        logits = saved["model"](task.x_test)
    assert nn.functional.cross_entropy(logits, task.y_test).item() == pytest.approx(report["test"]["loss"], rel=1e-5)
    # the leaderboard's first row is the pick, shown by its candidate id
    board = printed.split("leaderboard")[1].splitlines()
    assert board[1].split()[:2] == ["rank", "id"]
    first = board[2].split()
    assert first[0] == "1" and float(first[-2]) == pytest.approx(report["validation"]["loss"], abs=5e-5)
    assert f"best: candidate {first[1]} " in printed
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    # the title counts the candidates the board ranks (those trained the full steps) and all the round trained
    full = [t for t in report["trials"] if t["steps"] == 30]
    assert (f"leaderboard of the {len(full)} candidates trained the full 30 steps ({len(report['trials'])} trained "
            f"in all, 0 diverged)") in printed
    # a second run without --plot says the plots beside its report are the first run's
    assert cli.main([a for a in argv if a != "--plot"] + ["--overwrite"]) == 0
    assert ("note: learning_curves.png, hparams.png in " + str(out) + " are from an earlier run"
            in capsys.readouterr().out)


def test_tune_csv_with_categories_missing_values_and_string_labels(tmp_path, capsys):
    rows = ["size,color,weight,label"]
    for i in range(60):
        color = ["red", "green", "blue"][i % 3]
        rows.append(f"{i % 7},{color},{'' if i in (5, 17) else i * 0.5},{'cat' if i % 2 else 'dog'}")
    (tmp_path / "pets.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "o"
    assert cli.main(["tune", "--data", str(tmp_path / "pets.csv"), "--target", "label", "--method", "random",
                     "--budget", "3", "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "dropped 2 of 60 rows with missing values" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["class_names"] == ["cat", "dog"] and report["n_rows_dropped"] == 2
    assert report["layers"][0] == 5  # size, weight and three one-hot colours


def test_tune_resumes_a_killed_run_from_the_checkpoint(tmp_path, monkeypatch, capsys):
    from metahp_fast.tuners import RandomSearch
    out = tmp_path / "r"
    base = ["tune", "--data", "wine", "--method", "random", "--budget", "3", *SMALL]
    argv = base + ["--out", str(out)]
    advance, calls = RandomSearch._advance, []

    def dying(self, run):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(1)
        advance(self, run)
    monkeypatch.setattr(RandomSearch, "_advance", dying)
    assert cli.main(argv) == 130
    assert (out / "checkpoint.pt").exists() and not (out / "report.json").exists()
    assert not (out / "run.lock").exists()  # the lock goes with the run
    # Ctrl-C says what was saved and the exact command that resumes (the one run, as typed)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"metahp-fast: interrupted; the rounds finished so far are saved in {out / 'checkpoint.pt'}",
                   f"resume with: metahp-fast {shlex.join(argv)}"]
    monkeypatch.setattr(RandomSearch, "_advance", advance)
    assert cli.main(shlex.split(err[1].removeprefix("resume with: metahp-fast "))) == 0
    assert "resuming from checkpoint.pt" in capsys.readouterr().out
    resumed = json.loads((out / "report.json").read_text())
    assert not (out / "checkpoint.pt").exists()
    assert cli.main(base + ["--out", str(tmp_path / "fresh")]) == 0
    fresh = json.loads((tmp_path / "fresh" / "report.json").read_text())
    assert resumed["best_hparams"] == fresh["best_hparams"] and resumed["test"] == fresh["test"]


def _dying_after(monkeypatch, rounds):
    """Make random search raise KeyboardInterrupt (Ctrl-C) when it starts round ``rounds`` + 1."""
    from metahp_fast.tuners import RandomSearch
    return dying_after(monkeypatch, RandomSearch, rounds, KeyboardInterrupt)


def test_an_interrupted_overwrite_run_resumes_without_overwrite_and_overwrite_clears_a_stale_checkpoint(
        tmp_path, monkeypatch, capsys):
    """A run started with --overwrite over an earlier run's results resumes by the printed command (without
    --overwrite, which would start over) and then replaces them; --overwrite discards a checkpoint an interrupted
    run left, even one of another run, which would otherwise be refused."""
    out = tmp_path / "o"
    base = ["tune", "--data", "iris", "--method", "random", *SMALL, "--out", str(out)]
    assert cli.main(base + ["--budget", "2"]) == 0  # an earlier run's results
    capsys.readouterr()
    heal = _dying_after(monkeypatch, 2)
    assert cli.main(base + ["--budget", "3", "--overwrite"]) == 130
    resume = capsys.readouterr().err.splitlines()[-1]
    assert resume == f"resume with: metahp-fast {shlex.join(base + ['--budget', '3'])}"
    heal()
    assert cli.main(shlex.split(resume.removeprefix("resume with: metahp-fast "))) == 0
    printed = capsys.readouterr().out
    assert "resuming from checkpoint.pt" in printed and "(replacing the previous run's report.json, best.pt)" in printed
    assert json.loads((out / "report.json").read_text())["budget"] == 3
    # a stale checkpoint of another run (budget 3) in --out
    _dying_after(monkeypatch, 2)
    assert cli.main(base + ["--budget", "3", "--overwrite"]) == 130
    heal()
    capsys.readouterr()
    assert cli.main(base + ["--budget", "4"]) == 2  # resuming it as budget 4: another run, refused
    assert ("belongs to a different run (differs in ['budget']); use another path or delete it (or add --overwrite "
            "to start over)") in capsys.readouterr().err
    assert cli.main(base + ["--budget", "4", "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert f"note: removed the checkpoint.pt an interrupted run left in {out} (--overwrite starts over)" in printed
    assert "resuming" not in printed and not (out / "checkpoint.pt").exists()
    assert json.loads((out / "report.json").read_text())["budget"] == 4


def test_an_interrupt_before_the_first_checkpoint_leaves_no_empty_directory(tmp_path, monkeypatch, capsys):
    _dying_after(monkeypatch, 0)
    out = tmp_path / "new" / "run"
    argv = ["tune", "--data", "iris", "--method", "random", "--budget", "2", *SMALL, "--out", str(out)]
    assert cli.main(argv) == 130
    assert (capsys.readouterr().err ==
            "metahp-fast: interrupted before the first round finished; nothing was saved\n")
    assert not (tmp_path / "new").exists()  # both directories the run created are gone
    (tmp_path / "mine").mkdir()  # a directory the user made stays
    assert cli.main(argv[:-1] + [str(tmp_path / "mine")]) == 130
    assert (tmp_path / "mine").is_dir() and list((tmp_path / "mine").iterdir()) == []


def test_tune_names_the_target_column_it_picked_in_its_first_line(tmp_path, capsys):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,label,weight\n" + "".join(f"{i % 7},{i % 3},{i % 2},{i * 0.1:.1f}\n" for i in range(60)))
    out = tmp_path / "o"
    argv = ["tune", "--data", str(path), "--method", "random", "--budget", "2", *SMALL]
    assert cli.main(argv + ["--out", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"target: column 'weight', the last of {path} (--target NAME picks another)"
    assert cli.main(argv + ["--target", "label", "--out", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("Task('rows'")  # named: nothing to say


def _live_pid():
    """A process that stays alive for the test (its pid holds a lock)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_second_run_into_the_same_out_is_refused_while_the_first_holds_the_lock(tmp_path, monkeypatch, capsys):
    """Two runs at once with the same --out: the second is refused with the first's pid and start time, and
    nothing in --out changes; the lock is there for the whole run and goes when it ends."""
    from metahp_fast.tuners import RandomSearch
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    other = _live_pid()
    try:
        lock = {"pid": other.pid, "host": __import__("socket").gethostname(), "started": "2026-01-02 03:04:05 UTC",
                "command": "metahp-fast tune --data wine", "token": "t"}
        (out / "run.lock").write_text(json.dumps(lock))
        argv = ["tune", "--data", "iris", "--method", "random", "--budget", "2", *SMALL, "--out", str(out)]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err == (f"metahp-fast: error: --out {str(out)!r}: {out} is in use by another run (pid {other.pid}, "
                       "started 2026-01-02 03:04:05 UTC: metahp-fast tune --data wine); give another --out, or wait "
                       "for it to finish\n")
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "run.lock"]
        assert json.loads((out / "run.lock").read_text()) == lock
    finally:
        other.kill()
        other.wait()
    # its pid is gone now: the lock is stale and taken over, with a note; during the run the lock is this run's
    seen = []
    advance = RandomSearch._advance

    def watching(self, run):
        seen.append(json.loads((out / "run.lock").read_text()))
        advance(self, run)
    monkeypatch.setattr(RandomSearch, "_advance", watching)
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert (f"note: took over the lock {out / 'run.lock'} left by a run that is no longer running (pid {other.pid} on "
            f"{lock['host']}, started 2026-01-02 03:04:05 UTC)") in printed
    assert seen and all(s["pid"] == os.getpid() and s["command"] == "metahp-fast " + shlex.join(argv) for s in seen)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "keep.txt", "report.json"]


def test_a_lock_from_another_host_or_a_live_second_process_is_never_taken(tmp_path, capsys):
    from metahp_fast.tuners.lock import LockedError, OutputLock
    out = tmp_path / "o"
    out.mkdir()
    (out / "run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
    with pytest.raises(LockedError, match=r"pid 1 on host elsewhere \(if that run is over, delete .*run.lock\)"):
        OutputLock(out).acquire()
    (out / "run.lock").unlink()
    # a real second process holds the lock; this one is refused, then takes it once that process released it
    code = ("import sys, time; from metahp_fast.tuners.lock import OutputLock\n"
            "with OutputLock(sys.argv[1], 'other'):\n    print('held', flush=True); sys.stdin.readline()\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline() == "held\n"
        with pytest.raises(LockedError, match=f"pid {p.pid}, started .*: other\\)"):
            OutputLock(out).acquire()
    finally:
        p.communicate("\n", timeout=60)
    assert not (out / "run.lock").exists()
    with OutputLock(out) as lock:
        assert lock.note is None and (out / "run.lock").exists()
    assert not (out / "run.lock").exists()


def test_the_quick_starts_output_is_ignored_by_git():
    lines = (__import__("pathlib").Path(__file__).parents[1] / ".gitignore").read_text().splitlines()
    assert "tune-out/" in lines


@pytest.mark.parametrize("argv, match", [
    (["tune", "--method", "grid"], "--method: invalid choice"),
    (["tune", "--budget", "0"], "--budget: expected a positive number"),
    (["tune", "--data", "nope"], "unknown dataset 'nope'"),
    (["tune", "--method", "es", "--budget", "2"], "budget=2.0 is too small for ES"),
    (["tune", "--method", "sh", "--budget", "2", "--folds", "4"], "budget=2.0 with folds=4 plans as 0.5"),
    (["tune", "--folds", "0"], "--folds: expected a positive integer"),
    (["tune", "--no-meta", "--meta-model", "g.pt"], "--meta-model: given with --no-meta"),
    (["tune", "--data", "teacher:n_classes=0,n_samples=100", "--objective", "error"], "objective='error'"),
    (["evaluate", "--methods", "random16,grid"], "--methods: unknown \\['grid'\\]"),
    (["evaluate", "--tasks", "iris", "--device", "cuda:0" if not torch.cuda.is_available() else "tpu"], "device"),
], ids=["method", "budget", "data", "es_budget", "folds_budget", "folds", "meta_model_no_meta", "objective", "eval_methods",
        "eval_device"])
def test_bad_arguments_exit_2_with_one_line(argv, match, tmp_path, capsys):
    assert cli.main(argv + ["--out", str(tmp_path / "x"), "--no-progress"] if argv[0] == "tune"
                    else argv + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("metahp-fast: error:")
    assert __import__("re").search(match, err), err


def test_tune_with_folds_scores_over_the_cuts_and_says_so(tmp_path, capsys):
    out = tmp_path / "cv"
    assert cli.main(["tune", "--data", "wine", "--method", "random", "--budget", "6", "--folds", "3", "--no-meta",
                     "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "every candidate scored over 3 cuts of train+val" in printed and "--folds 2 scores" not in printed
    report = json.loads((out / "report.json").read_text())
    assert report["folds"] == 3 and report["config"]["folds"] == 3
    assert len(report["trials"]) == 2 and report["cost"]["full_trainings"] == 6
    # the report's val loss is the pick's mean over the cuts; best.pt holds its model from the dataset's own
    # split (tests/test_cross_validation.py checks it is that one), which the report's test loss scores
    best = next(t for t in report["trials"] if t["objective"] == min(u["objective"] for u in report["trials"]))
    assert report["validation"]["loss"] == pytest.approx(best["val_loss"])
    saved = read_model_file(out / "best.pt")
    task = load_task("wine", seed=0)
    with torch.no_grad():
        loss = nn.functional.cross_entropy(saved["model"](task.x_test), task.y_test).item()
    assert loss == pytest.approx(report["test"]["loss"], rel=1e-5)


def test_tune_out_must_be_a_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["tune", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_evaluate_writes_the_quality_report(tmp_path, capsys):
    out = tmp_path / "q"
    assert cli.main(["evaluate", "--tasks", "iris", "--methods", "random16,sh", "--seeds", "1", "--steps", "20",
                     "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["quality.json", "quality.md", "quality.png"]
    data = json.loads((out / "quality.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["random16", "sh"]
    ref = data["references"][0]
    assert ref["L_best"] <= ref["L_median"] and ref["cost_steps"] == 256 * 20
    for r in data["rows"]:
        expect = (r["test_loss"] - ref["L_best"]) / (ref["L_median"] - ref["L_best"])
        assert r["regret"] == pytest.approx(expect)
    md = (out / "quality.md").read_text()
    assert "| random16 |" in md and "| sh |" in md and "metahp-fast evaluate" in md
    assert data["device"] == "CPU" and "1 torch thread(s), CPU)" in md
    assert "SH or ES at 64 trainings" in md
    floor = (ref["L_pick"] - ref["L_best"]) / (ref["L_median"] - ref["L_best"])
    assert reference_pick_regret(data)["median"] == pytest.approx(floor)
    assert f"median test regret of {floor:.3f} itself (per task: iris {floor:.3f})" in md


def test_the_default_command_is_a_cold_short_tuning_round_refit_on_all_rows(tmp_path, capsys):
    """The main job (bare ``metahp-fast``): a 16-training successive-halving round from the search space (the
    warm start is measured worse on real tables: opt-in), the pick refit on train+validation rows."""
    out = tmp_path / "run"
    assert cli.main(["--data", "iris", "--steps", "20", "--hidden", "8", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warm start: off (--meta turns it on)" in printed and "tuning with sh: budget 16 " in printed
    report = json.loads((out / "report.json").read_text())
    assert report["meta_prediction"] is None and report["config"]["refit"]["length"] == "best"
    assert "refit: the pick retrained on" in printed


def test_the_warm_started_short_tuning_round(tmp_path, capsys):
    """With --meta: g's zero-shot prediction, then a 16-training successive-halving round around it; ``train``
    stays available by name."""
    out = tmp_path / "run"
    assert cli.main(["--data", "iris", "--steps", "20", "--hidden", "8", "--no-progress", "--out", str(out),
                     "--meta"]) == 0
    printed = capsys.readouterr().out
    assert "warm start: the pretrained meta-learner predicts lr=" in printed and "tuning with sh: budget 16 " in printed
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "sh" and report["budget"] == 16
    # the prediction is trained as a candidate of the round, and the report says how far it got
    pred, zero = report["meta_prediction"], report["zero_shot_trial"]
    assert set(pred) == {"lr", "momentum", "weight_decay"} and zero is not None
    assert zero["hparams"] == pytest.approx(pred, rel=1e-5) and zero in report["trials"]
    assert (f"zero-shot: the meta-learner's prediction, trained as candidate {zero['id']}, reached val loss "
            f"{zero['val_loss']:.4f} after {zero['steps']} steps") in printed
    assert (", where the round stopped it" in printed) == (zero["steps"] < 20)
    assert 0 < report["cost"]["candidate_steps"] <= 16 * 20 and (out / "best.pt").is_file()
    assert "replacing the previous run's" not in printed
    # a second run into the same folder stops before any work unless asked to replace what the first saved
    saved = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli.main(["--data", "wine", "--steps", "20", "--hidden", "8", "--no-progress", "--out", str(out),
                     "--meta"]) == 2
    assert (f"--out {str(out)!r} already holds report.json, best.pt from an earlier run; give another --out, or add "
            "--overwrite to replace them") in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == saved
    assert cli.main(["--data", "iris", "--steps", "20", "--hidden", "8", "--no-progress", "--out", str(out),
                     "--overwrite", "--meta"]) == 0
    assert "(replacing the previous run's report.json, best.pt)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "report.json"]
    assert cli.main(["train", "--data", "iris", "--size", "2", "--steps", "5", "--no-progress",
                     "--out", str(tmp_path / "m.pt")]) == 0
    assert (tmp_path / "m.pt").is_file()


def test_a_mistyped_command_is_named_with_a_suggestion(capsys):
    assert cli.main(["tnue", "--data", "iris"]) == 2
    assert "unknown command 'tnue'; did you mean 'tune'?" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2
    assert "the commands are train, tune, evaluate, meta-train, suggest, predict" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["--backend", "foo"], "--backend: backend must be one of"),
    (["--device", "no-such-device"], "--device: device must name a torch device"),
    (["--seed", "-1"], "argument --seed: expected a whole number from 0 to 2**63 - 1; got '-1'"),
    (["--seed", "99999999999999999999"], "argument --seed: expected a whole number from 0 to 2**63 - 1"),
    (["--meta-model", "nothing-here.pt"], "--meta-model: no meta-learner file at 'nothing-here.pt'"),
    (["--method", "es", "--budget", "2", "--data", "no-such-data"], "--budget: budget=2.0 is too small for ES"),
])
def test_tune_options_fail_by_flag_name_before_any_work(argv, flag, tmp_path, capsys):
    assert cli.main(["tune", "--data", "iris", "--out", str(tmp_path / "o"), *SMALL, *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("metahp-fast: error: ") and captured.err.count("\n") == 1  # one line
    assert flag in captured.err and "Traceback" not in captured.err
    assert "tuning with" not in captured.out  # nothing was trained


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_tune_on_cuda_without_cuda_is_a_usage_error(capsys):
    assert cli.main(["tune", "--device", "cuda", *SMALL]) == 2
    assert "--device: device='cuda' but CUDA is not available here" in capsys.readouterr().err


def test_tune_warm_starts_from_a_meta_learner_file(tmp_path, capsys):
    from metahp_fast.meta import MetaLearner
    path = tmp_path / "g.pt"
    MetaLearner.pretrained().save(path)
    out = tmp_path / "o"
    assert cli.main(["tune", "--data", "iris", "--budget", "4", "--meta-model", str(path), "--out", str(out),
                     *SMALL]) == 0
    assert f"warm start: the meta-learner {path} predicts lr=" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["meta_prediction"] is not None
    assert cli.main(["tune", "--data", "iris", "--optimizer", "adamw", "--meta-model", str(path), "--out",
                     str(out), *SMALL]) == 2
    assert "predicts for 'sgd', not --optimizer 'adamw'" in capsys.readouterr().err
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    assert cli.main(["tune", "--data", "iris", "--meta-model", str(tmp_path / "x.csv"), "--out",
                     str(tmp_path / "never"), *SMALL]) == 2
    assert "--meta-model: " in capsys.readouterr().err
    assert not (tmp_path / "never").exists()  # refused before --out was created


def test_suggest_and_predict_say_what_a_wrong_model_file_is_and_note_regression(tmp_path, capsys):
    import numpy as np
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    assert cli.main(["predict", "--data", "iris", "--model", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert (f"--model: {str(tmp_path / 'x.csv')!r} is neither a model file (best.pt from tune or train) nor a "
            "meta-learner file") in err and "Traceback" not in err and err.count("\n") == 1
    assert cli.main(["suggest", "--data", "iris", "--meta-model", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "--meta-model: " in err and "is not a meta-learner file" in err and "Traceback" not in err
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 3)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=(x @ np.ones(3)).astype(np.float32))
    for argv in (["suggest"], ["predict"]):  # predict without --model: the deprecated form, the same answer
        assert cli.main([*argv, "--data", str(tmp_path / "reg.npz")]) == 0
        captured = capsys.readouterr()
        assert "lr" in json.loads(captured.out)["hparams"]
        assert "note: reg: a regression task, but this meta-learner was meta-trained on classification" in captured.err
        assert ("deprecated" in captured.err) == (argv == ["predict"])


def test_suggest_reads_a_file_as_tune_does(tmp_path, capsys):
    """suggest takes tune's --kind and --missing, so it sees the same data (its note once suggested a
    --missing flag that it then rejected); so does the deprecated predict without --model."""
    rows = "".join(f"{i % 5},{'' if i % 4 == 0 else i % 3},{i % 2}\n" for i in range(80))
    (tmp_path / "gaps.csv").write_text("a,b,label\n" + rows)
    path = str(tmp_path / "gaps.csv")
    assert cli.main(["suggest", "--data", path]) == 0
    captured = capsys.readouterr()
    assert "dropped 20 of 80 rows with missing values" in captured.err and "(--missing fill)" in captured.err
    assert cli.main(["suggest", "--data", path, "--missing", "fill"]) == 0
    assert "filled missing cells (per column: b 20)" in capsys.readouterr().err
    assert cli.main(["suggest", "--data", path, "--kind", "regression"]) == 0
    assert "a regression task" in capsys.readouterr().err
    assert cli.main(["predict", "--data", path, "--missing", "fill"]) == 0
    assert "filled missing cells (per column: b 20)" in capsys.readouterr().err


def test_kind_makes_whole_number_targets_a_regression(tmp_path, capsys):
    import numpy as np
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 3))
    price = np.round(100 + 20 * x[:, 0] + 5 * rng.normal(size=120))
    lines = ["a,b,c,price"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{p:.0f}" for r, p in zip(x, price)]
    (tmp_path / "house.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    assert cli.main(["tune", "--data", str(tmp_path / "house.csv"), "--kind", "regression", "--budget", "4",
                     "--out", str(out), *SMALL]) == 0
    assert "regression, 1 output" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["class_names"] is None


def test_diverged_candidates_are_counted_and_the_report_is_strict_json(tmp_path, capsys):
    """The leaderboard counts diverged candidates over the whole round, and report.json writes their losses as
    null (JSON has no Infinity)."""
    from types import SimpleNamespace
    trials = [{"id": 0, "steps": 30, "val_loss": 0.5, "hparams": {"lr": 0.1}},
              {"id": 1, "steps": 10, "val_loss": float("inf"), "hparams": {"lr": 3.0}},
              {"id": 2, "steps": 30, "val_loss": float("nan"), "hparams": {"lr": 2.0}},
              {"id": 3, "steps": 10, "val_loss": 0.9, "hparams": {"lr": 0.01}}]
    result = SimpleNamespace(trials=trials, config={"steps": 30}, best_hparams={"lr": 0.1})
    from metahp_fast.tuners import TuneResult
    board = TuneResult.leaderboard(result, top=5)
    assert board.startswith("leaderboard of the 1 candidates trained the full 30 steps (4 trained in all, "
                            "2 diverged)")
    from metahp_fast.files import json_safe
    safe = json_safe({"trials": trials, "x": (1.0, float("-inf"))})
    assert [t["val_loss"] for t in safe["trials"]] == [0.5, None, None, 0.9] and safe["x"] == [1.0, None]
    out = tmp_path / "o"
    assert cli.main(["tune", "--data", "iris", "--method", "random", "--budget", "3", "--out", str(out),
                     *SMALL]) == 0
    json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"report.json holds {c}"))


def test_regression_targets_are_standardized_and_the_saved_model_answers_in_their_units(tmp_path, capsys):
    """Targets in the hundreds train like any others (they are standardized on the train split, as features
    are), and best.pt's model answers in the target's units."""
    import numpy as np
    from metahp_fast import load_model
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = 300 + 100 * x[:, 0] - 40 * x[:, 1]
    np.savez(tmp_path / "big.npz", x=x, y=y)
    out = tmp_path / "o"
    assert cli.main(["tune", "--data", str(tmp_path / "big.npz"), "--method", "random", "--budget", "8",
                     "--out", str(out), *SMALL]) == 0
    report = json.loads((out / "report.json").read_text())
    task = load_task(str(tmp_path / "big.npz"))
    assert float(task.y_train.mean()) == pytest.approx(0, abs=1e-5) and float(task.y_train.std()) == \
        pytest.approx(1, abs=0.01)
    assert all(t["val_loss"] is not None for t in report["trials"])  # nothing diverged
    # the saved model on the raw test rows: the report's RMSE, in the target's units, from raw predictions
    g = load_model(out / "best.pt")
    x_test = task.preprocessor.inverse_transform(task.x_test).numpy()
    y_test = (task.y_test.double() * task.y_std.double() + task.y_mean.double()).numpy()[:, 0]
    rmse = float(np.sqrt(np.mean((g.predict(x_test) - y_test) ** 2)))
    assert rmse == pytest.approx(report["test"]["rmse"], rel=1e-4)
    assert rmse == pytest.approx(np.sqrt(report["test"]["loss"]) * float(task.y_std), rel=1e-4)
    assert rmse < 0.5 * np.std(y)  # it learned something
    assert f"rmse {report['test']['rmse']:.4f}" in capsys.readouterr().out


def test_a_tune_result_prints_as_one_line():
    from metahp_fast.tuners import RandomSearch
    r = RandomSearch(hidden=(8,), steps=20, backend="torch").run("iris", 3)
    text = repr(r)
    assert text.startswith("TuneResult(random on 'iris', seed 0: best candidate ") and "\n" not in text
    assert "3 trials, 60 candidate-steps" in text and len(text) < 300


def test_a_pick_at_the_end_of_a_log_range_gets_a_note():
    from metahp_fast import SearchSpace
    space = SearchSpace.default("sgd")
    lo, hi = space["lr"].low, space["lr"].high
    from metahp_fast.tuners.result import edge_notes
    notes = edge_notes({"lr": hi, "momentum": 0.0, "weight_decay": space["weight_decay"].high ** 0.5
                              * space["weight_decay"].low ** 0.5}, space)
    assert len(notes) == 1 and notes[0].startswith(f"the pick's lr={hi:.3g} is at the upper end of the search space")
    assert "lower end" in edge_notes({"lr": lo * 1.01}, space)[0]
    assert edge_notes({"lr": (lo * hi) ** 0.5}, space) == []


def test_space_option_sets_the_ranges_the_tuner_draws_from(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["tune", "--data", "iris", "--method", "random", "--budget", "6", "--space",
                     "lr=2:3,momentum=0:0.1", "--out", str(out), "--meta", *SMALL]) == 0
    report = json.loads((out / "report.json").read_text())
    # every candidate inside the new ranges, the meta-learner's prediction (its lr below 2) clipped into them
    assert all(2 <= t["hparams"]["lr"] <= 3 and 0 <= t["hparams"]["momentum"] <= 0.1 for t in report["trials"])
    assert report["meta_prediction"]["lr"] == pytest.approx(2.0)
    capsys.readouterr()
    for bad, said in (("lr=0:1", "--space: lr: LogUniform needs low > 0"), ("foo=1:2", "--space: unknown"),
                      ("lr=1", "argument --space: expected NAME=LOW:HIGH")):
        assert cli.main(["tune", "--data", "iris", "--space", bad, "--out", str(tmp_path / "x"), *SMALL]) == 2
        assert said in capsys.readouterr().err


def test_space_option_adds_structural_dimensions(tmp_path, capsys):
    """--space can add depth, width and dropout: every candidate draws its own, best.pt has the pick's; a
    meta-learner's warm start puts them at the middle of their ranges; bad ones are usage errors naming them."""
    out = tmp_path / "o"
    assert cli.main(["tune", "--data", "iris", "--method", "random", "--budget", "6", "--space",
                     "depth=1:2,width=4:12,dropout=0:0.3", "--out", str(out), "--meta", *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "width 4..12, depth 1..2, dropout 0..0.3" in printed
    assert "(depth 2, width 8, dropout 0.15: the middle of their ranges)" in printed  # (1.5 rounds to 2)
    report = json.loads((out / "report.json").read_text())
    hps = [t["hparams"] for t in report["trials"]]
    assert all(h["depth"] in (1, 2) and 4 <= h["width"] <= 12 and 0 <= h["dropout"] <= 0.3 for h in hps)
    first = next(t["hparams"] for t in report["trials"] if t["id"] == 0)  # the prediction itself
    assert (first["depth"], first["width"], first["dropout"]) == (2, 8, pytest.approx(0.15))
    best, saved = report["best_hparams"], read_model_file(out / "best.pt")
    assert saved["layers"] == [4] + [int(best["width"])] * int(best["depth"]) + [3]
    for bad, said in (("depth=0:2", "--space: depth: depth=IntUniform(low=0, high=2) must be an IntUniform (or "
                                    "Fixed whole number) of at least 1"),
                      ("width=4.5:8", "--space: width: IntUniform needs integer bounds"),
                      ("dropout=0:1", "--space: dropout: dropout=Uniform(low=0.0, high=1.0) must stay within [0, 1)"),
                      ("layers=1:2", "--space: unknown hyperparameters ['layers']; valid names are ['lr', 'momentum', "
                                     "'weight_decay', 'width', 'depth', 'dropout']")):
        assert cli.main(["tune", "--data", "iris", "--space", bad, "--out", str(tmp_path / "x"), *SMALL]) == 2
        assert said in capsys.readouterr().err


def test_tune_activation_option_trains_that_network_and_notes_the_warm_start(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["tune", "--data", "iris", "--activation", "gelu", "--method", "random", "--budget", "3",
                     "--out", str(out), "--meta", *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "layers 4-16-3 (gelu)" in printed and "meta-trained on relu networks, used here for gelu" in printed
    assert json.loads((out / "report.json").read_text())["activation"] == "gelu"
    saved = read_model_file(out / "best.pt")
    assert saved["activation"] == "gelu" and isinstance(saved["model"][1], torch.nn.GELU)


def test_python_writes_the_same_report_as_the_command_line(tmp_path, capsys):
    """TuneResult.save_report is what tune writes: the same report.json from Python (test scores included), the
    command line adding only its own fields (the --data argument and the warm start's description)."""
    from metahp_fast.tuners import RandomSearch
    out = tmp_path / "o"
    assert cli.main(["tune", "--data", "iris", "--method", "random", "--budget", "3", "--no-meta", "--out", str(out),
                     "--refit", "off", *SMALL]) == 0
    printed = capsys.readouterr().out
    result = RandomSearch(hidden=[16], steps=30).run(load_task("iris", seed=0), 3, seed=0)
    result.save_report(tmp_path / "py.json")
    from_cli = json.loads((out / "report.json").read_text())
    from_py = json.loads((tmp_path / "py.json").read_text())

    def timeless(d):  # wall-clock differs between runs
        if isinstance(d, dict):
            return {k: timeless(v) for k, v in d.items() if k != "seconds"}
        return [timeless(v) for v in d] if isinstance(d, list) else d
    extra = {"data": "iris", "warm_start": "off (--meta turns it on)", "meta_prediction": None, "zero_shot_trial": None}
    assert {k: from_cli[k] for k in extra} == extra
    assert timeless({k: v for k, v in from_cli.items() if k not in extra}) == timeless(from_py)
    assert set(from_py["test"]) == {"loss", "accuracy"} and from_py["init_hparams"] is None
    assert f"test: loss {from_py['test']['loss']:.4f}" in printed and result.leaderboard(5) in printed


def test_tune_refit_saves_the_pick_retrained_on_train_and_validation_rows(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["tune", "--data", "wine", "--method", "random", "--budget", "3", "--out", str(out),
                     "--refit", "best", *SMALL]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    r = report["config"]["refit"]
    task = load_task("wine", seed=0)
    assert r["length"] == "best" and r["rows"] == len(task.y_train) + len(task.y_val)
    assert f"refit: the pick retrained on {r['rows']} train+validation rows for {r['steps']} steps" in printed
    saved = read_model_file(out / "best.pt")
    with torch.no_grad():  # the file holds the refit model, and the report's test metrics are its own
        loss = nn.functional.cross_entropy(saved["model"](task.x_test), task.y_test).item()
    assert loss == pytest.approx(report["test"]["loss"], rel=1e-5)


def test_tune_epochs_sizes_training_to_the_data(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["tune", "--data", "wine", "--method", "random", "--budget", "2", "--epochs", "2",
                     "--batch-size", "32", "--hidden", "8", "--no-meta", "--no-progress", "--out", str(out)]) == 0
    n = len(load_task("wine", seed=0).y_train)
    steps = -(-2 * n // 32)
    assert f"full trainings of {steps} steps (2 epochs of {n} train rows" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["steps"] == steps and report["config"]["epochs"] == 2


def test_tune_sizes_training_by_epochs_unless_steps_is_given(tmp_path, capsys):
    """No --steps: one full training is DEFAULT_EPOCHS passes over the train rows (capped by --max-steps);
    --steps fixes the steps instead; --early-stopping reaches the tuner and its report."""
    from metahp_fast.tuners.base import DEFAULT_EPOCHS
    n = len(load_task("wine", seed=0).y_train)
    base = ["tune", "--data", "wine", "--method", "random", "--budget", "1", "--batch-size", "32", "--hidden", "4",
            "--no-progress"]
    assert cli.main(base + ["--max-steps", "40", "--out", str(tmp_path / "a")]) == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    assert a["config"]["epochs"] == DEFAULT_EPOCHS and a["config"]["steps"] == min(40, -(-int(DEFAULT_EPOCHS) * n // 32))
    assert cli.main(base + ["--steps", "7", "--early-stopping", "--out", str(tmp_path / "b")]) == 0
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    assert b["config"]["epochs"] is None and b["config"]["steps"] == 7 and b["config"]["early_stopping"] is True
    assert "full trainings of 7 steps" in capsys.readouterr().out
