"""The metahp-fast train command: end to end on digits, the saved model, one-line errors with exit status 2."""
import re

import pytest
import torch
from torch import nn

from metahp_fast.model_file import read_model_file
from metahp_fast import cli

pytest.importorskip("sklearn")

SMALL = ["train", "--data", "digits", "--size", "4", "--steps", "20", "--no-progress"]


def test_train_end_to_end_saves_a_model_that_reproduces_the_report(tmp_path, capsys):
    out = tmp_path / "models" / "best.pt"
    assert cli.main(SMALL + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["best.pt"]  # no temp file left
    assert "leaderboard (4 of 4 candidates trained, 0 diverged)" in printed
    board = printed.split("leaderboard")[1].splitlines()
    assert re.match(r"\s*rank\s+id\s+lr\s+momentum\s+weight_decay\s+val_loss\s+val_acc$", board[1])
    assert [line.split()[0] for line in board[2:6]] == ["1", "2", "3", "4"]

    saved = read_model_file(out)
    from metahp_fast.tasks import load_task
    task = load_task("digits", seed=0)
    assert isinstance(saved["model"], nn.Sequential) and saved["layers"] == [64, 128, 10]
    assert saved["task"] == "digits" and saved["class_names"] == [str(i) for i in range(10)]
    assert torch.equal(saved["mean"], task.mean) and torch.equal(saved["std"], task.std)
    assert set(saved["hparams"]) == {"lr", "momentum", "weight_decay"}
    assert all(isinstance(v, float) for v in saved["hparams"].values())
    # the best row of the leaderboard is the saved candidate
    best_row = board[2].split()
    assert int(best_row[1]) == saved["candidate"]
    assert float(best_row[-2]) == pytest.approx(saved["val_loss"], abs=5e-5)
    # the saved model's own outputs on the test split give the reported test numbers
    with torch.no_grad():
        logits = saved["model"](task.x_test)
    acc = (logits.argmax(1) == task.y_test).float().mean().item()
    loss = nn.functional.cross_entropy(logits, task.y_test).item()
    assert acc == saved["test_accuracy"] and loss == pytest.approx(saved["test_loss"], rel=1e-6)
    assert f"test: loss {saved['test_loss']:.4f}, accuracy {saved['test_accuracy']:.4f}" in printed
    assert acc > 0.5  # 20 steps of the best of 4 already learn digits far above chance (0.1)
    # preprocessing stored with the model: raw test rows through its scaler give the same logits
    raw_test = task.preprocessor.inverse_transform(task.x_test)
    with torch.no_grad():
        again = saved["model"](saved["scaler"].transform(raw_test).float())
    torch.testing.assert_close(again, logits, rtol=1e-4, atol=1e-4)
    assert f"saved the best model to {out}" in printed


def test_explicit_train_subcommand_adamw_depth_and_replacing(tmp_path, capsys):
    out = tmp_path / "best.pt"
    out.write_bytes(b"old")
    argv = ["train", "--data", "iris", "--optimizer", "adamw", "--hidden", "16", "--hidden", "8,4",
            "--size", "3", "--steps", "10", "--top", "2", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 2  # a file is there: nothing the user saved is replaced unasked
    assert (f"--out {str(out)!r}: the file already exists; give another path, or add --overwrite to replace it"
            in capsys.readouterr().err) and out.read_bytes() == b"old"
    assert cli.main(argv + ["--overwrite"]) == 0
    printed = capsys.readouterr().out
    saved = read_model_file(out)
    assert saved["layers"] == [4, 16, 8, 4, 3] and saved["class_names"] == ["setosa", "versicolor", "virginica"]
    assert set(saved["hparams"]) == {"lr", "beta1", "beta2", "eps", "weight_decay"}
    assert "replaced the previous file" in printed and "(1 more trained not shown)" in printed


def test_train_activation_option_builds_and_saves_that_network(tmp_path, capsys):
    out = tmp_path / "tanh.pt"
    assert cli.main(["train", "--data", "iris", "--activation", "tanh", "--hidden", "9,7", "--size", "3", "--steps",
                     "10", "--no-progress", "--out", str(out)]) == 0
    assert "layers 4-9-7-3 (tanh)" in capsys.readouterr().out
    saved = read_model_file(out)
    assert saved["activation"] == "tanh"
    assert [type(m) for m in saved["model"]] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]


def test_leaderboard_puts_diverged_candidates_at_the_bottom():
    val = {"loss": torch.tensor([0.5, float("inf"), 0.2, 0.9]), "accuracy": torch.tensor([0.8, float("nan"), 0.9, 0.6])}
    usable = torch.tensor([True, False, True, True])
    from metahp_fast.tuners.result import leaderboard
    text = leaderboard(val, usable, {"lr": torch.tensor([0.1, 1e6, 0.01, 0.3])}, top=5)
    rows = [line.split() for line in text.splitlines()[2:]]
    assert [r[1] for r in rows] == ["2", "0", "3", "1"]
    assert rows[-1][0] == "-" and "diverged" in rows[-1]
    assert "3 of 4 candidates trained, 1 diverged" in text


@pytest.mark.parametrize("argv, match", [
    (["--size", "0"], "--size"),
    (["--steps", "ten"], "--steps"),
    (["--optimizer", "rmsprop"], "rmsprop"),
    (["--hidden", "12,x"], "--hidden"),
    (["--data", "no_such_dataset"], "no_such_dataset"),
    (["--data", "missing.csv"], "missing.csv"),
    (["--backend", "cuda-magic"], "backend"),
    (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
    (["--bogus"], "--bogus"),
    (["--data", "iris", "--target", "species"], "target"),
    (["--activation", "swish"], "--activation"),
    (["--precision", "fp8"], "--precision"),
], ids=["size", "steps", "optimizer", "hidden", "data", "file", "backend", "device", "flag", "target", "activation",
        "precision"])
def test_bad_arguments_exit_2_with_one_line(argv, match, tmp_path, capsys):
    assert cli.main(["train", *argv, "--out", str(tmp_path / "m.pt"), "--no-progress"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metahp-fast: error:") and match in lines[0]
    assert "Traceback" not in captured.err and not (tmp_path / "m.pt").exists()


def test_out_as_a_directory_holds_best_pt_like_tune_out(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert cli.main(SMALL + ["--out", str(run)]) == 0
    assert f"saved the best model to {run / 'best.pt'}" in capsys.readouterr().out
    assert [p.name for p in run.iterdir()] == ["best.pt"]
    (tmp_path / "taken" / "best.pt").mkdir(parents=True)  # the file name inside is itself a directory
    assert cli.main(SMALL + ["--out", str(tmp_path / "taken")]) == 2
    assert "is a directory; give a file name" in capsys.readouterr().err
    # a path ending with a slash names a directory to create, like tune's --out, not a file of that name
    assert cli.main(SMALL + ["--out", str(tmp_path / "new") + "/"]) == 0
    assert (tmp_path / "new" / "best.pt").is_file()


def test_out_never_replaces_the_data_file(tmp_path, capsys):
    """``--out`` naming the ``--data`` file is refused even with --overwrite: the user's data would be lost."""
    data = tmp_path / "rows.csv"
    data.write_text("a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(60)))
    before = data.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert cli.main(["train", "--data", str(data), "--size", "2", "--steps", "3", "--no-progress",
                         "--out", str(data), *extra]) == 2
        assert "is the --data file; give another path for the model" in capsys.readouterr().err
    assert data.read_bytes() == before
    assert cli.main(["tune", "--data", str(data), "--budget", "2", "--steps", "3", "--no-meta", "--no-progress",
                     "--out", str(tmp_path), "--method", "random"]) == 0  # a directory beside the data is fine


def test_help_and_version(capsys):
    from metahp_fast.cli_args import PARSERS
    assert list(cli.COMMANDS) == list(PARSERS)  # every command has its arguments and its function
    assert cli.main(["--help"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in cli.COMMANDS)
    assert cli.main(["train", "--help"]) == 0
    assert "--batch-size" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0


def test_csv_with_string_labels(tmp_path, capsys):
    rows = ["height,colour,species"] + [f"{1.0 + (i % 7) * 0.1 + (i % 3)},{'red' if i % 3 else 'blue'},"
                                        f"{['ant', 'bee', 'cow'][i % 3]}" for i in range(60)] + [",red,ant"]
    (tmp_path / "animals.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "m.pt"
    rc = cli.main(["train", "--data", str(tmp_path / "animals.csv"), "--target", "species", "--size", "3",
                   "--steps", "5", "--no-progress", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "note: " in printed and "dropped 1 of 61 rows" in printed  # reading the file's notes, printed
    assert not printed.startswith("target:")  # --target named it
    saved = read_model_file(out)
    assert saved["class_names"] == ["ant", "bee", "cow"] and saved["layers"] == [3, 128, 3]
    assert saved["task"] == "animals"


@pytest.mark.parametrize("argv, outputs", [
    (["evaluate", "--tasks", "iris", "--seeds", "1", "--methods", "random16"], ["quality.json"]),
    (["meta-train", "--tasks", "2", "--meta-steps", "1", "--no-progress"], None),
])
def test_evaluate_and_meta_train_keep_an_earlier_runs_results(tmp_path, capsys, argv, outputs):
    """Like train and tune: an earlier run's results in --out stop the run before any work, unchanged."""
    if outputs:  # a directory holding one of evaluate's outputs
        out = tmp_path
        for name in outputs:
            (out / name).write_text("earlier")
        said = f"--out {str(out)!r} already holds quality.json from an earlier run; give another --out, or add --overwrite"
    else:  # meta-train's learner file
        out = tmp_path / "meta.pt"
        out.write_text("earlier")
        said = f"--out {str(out)!r}: the file already exists; give another path, or add --overwrite"
    assert cli.main(argv + ["--out", str(out)]) == 2
    assert said in capsys.readouterr().err
    assert all(p.read_text() == "earlier" for p in tmp_path.iterdir())


def _pets_csv(path, n=60, target=True):
    rows = ["size,color,weight" + (",label" if target else "")]
    for i in range(n):
        rows.append(f"{i % 7},{['red', 'green', 'blue'][i % 3]},{i * 0.5}" + (f",{'cat' if i % 2 else 'dog'}"
                                                                               if target else ""))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_predict_with_a_saved_model_prints_labels_or_writes_class_probabilities(tmp_path, capsys):
    """predict --model best.pt --data rows.csv: one label per row on stdout (CSV), or with --proba one
    probability column per class, named by the class; --out writes the same CSV to a file."""
    import csv

    import numpy as np

    from metahp_fast import load_model
    model = tmp_path / "best.pt"
    assert cli.main(["train", "--data", str(_pets_csv(tmp_path / "pets.csv")), "--size", "3", "--steps", "20",
                     "--no-progress", "--out", str(model)]) == 0
    new = _pets_csv(tmp_path / "new.csv", n=9, target=False)  # new rows have no label column
    capsys.readouterr()
    assert cli.main(["predict", "--model", str(model), "--data", str(new)]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(captured.out.splitlines()))
    saved = load_model(model)
    assert rows[0] == ["prediction"] and [r[0] for r in rows[1:]] == saved.predict(str(new))
    assert len(rows) == 10 and set(r[0] for r in rows[1:]) <= {"cat", "dog"} and captured.err == ""
    out = tmp_path / "preds.csv"
    assert cli.main(["predict", "--model", str(model), "--data", str(new), "--proba", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote 9 probability rows to {out}\n"
    probs = list(csv.reader(out.read_text().splitlines()))
    assert probs[0] == ["cat", "dog"]
    p = np.array([[float(v) for v in r] for r in probs[1:]])
    np.testing.assert_allclose(p, saved.predict_proba(str(new)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    assert cli.main(["predict", "--model", str(model), "--data", str(new), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err  # --out is not replaced unasked
    assert cli.main(["predict", "--model", str(model), "--data", str(new), "--out", str(out), "--overwrite"]) == 0
    assert list(csv.reader(out.read_text().splitlines()))[0] == ["prediction"]


def test_predict_with_a_regression_model_and_its_bad_input(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    np.savez(tmp_path / "reg.npz", x=x, y=x @ np.array([1.0, -2.0, 0.5]))
    model = tmp_path / "reg.pt"
    assert cli.main(["train", "--data", str(tmp_path / "reg.npz"), "--size", "2", "--steps", "10", "--no-progress",
                     "--out", str(model)]) == 0
    np.savez(tmp_path / "new.npz", x=x[:4])
    capsys.readouterr()
    assert cli.main(["predict", "--model", str(model), "--data", str(tmp_path / "new.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    from metahp_fast import load_model
    assert lines[0] == "prediction" and [float(v) for v in lines[1:]] == pytest.approx(
        load_model(model).predict(x[:4]).tolist(), rel=1e-5)
    for argv, said in [
        (["--proba"], "--proba: class probabilities need a classification model; this one is a regression"),
        (["--steps", "10"], "--steps: applies to suggesting hyperparameters (metahp-fast suggest), not to "
                            "predicting with a model"),
    ]:
        assert cli.main(["predict", "--model", str(model), "--data", str(tmp_path / "new.npz"), *argv]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    for data, said in [(None, "--data: give the rows to predict for"),
                       ("iris", "--data: predict reads new rows from a .csv or .npz file"),
                       (str(tmp_path / "none.npz"), "--data: no such data file"),
                       (str(tmp_path / "wrong.csv"), "--data: ")]:
        assert cli.main(["predict", "--model", str(model)] + (["--data", data] if data else [])) == 2
        assert said in capsys.readouterr().err
    assert cli.main(["predict", "--model", str(tmp_path / "nothing.pt"), "--data", "x.csv"]) == 2
    assert "--model: no meta-learner file or model file at" in capsys.readouterr().err


def test_suggest_prints_the_meta_learners_hyperparameters_and_a_portfolio_for_k_above_1(tmp_path, capsys):
    import json
    assert cli.main(["suggest", "--data", "iris", "--steps", "100"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["hparams"]) == {"lr", "momentum", "weight_decay"} and out["steps"] == 100
    assert cli.main(["suggest", "--data", "iris", "--steps", "100", "--k", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == out
    assert cli.main(["suggest", "--data", "iris", "--k", "3"]) == 0  # the pretrained portfolio (AdamW)
    out3 = json.loads(capsys.readouterr().out)
    assert out3["optimizer"] == "adamw" and out3["k"] == 3 and len(out3["portfolio"]) == 3
    assert cli.main(["suggest", "--data", "iris", "--k", "0"]) == 2
    assert "argument --k: expected a positive integer" in capsys.readouterr().err
    # the earlier form, predict for hyperparameters, still answers the same for one release, with a note
    assert cli.main(["predict", "--data", "iris", "--steps", "100"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == out
    assert ("note: 'metahp-fast predict without --model' suggesting hyperparameters is deprecated and will be "
            "removed in the next release; use 'metahp-fast suggest --data iris'") in captured.err
    from metahp_fast.meta import MetaLearner
    MetaLearner.pretrained().save(tmp_path / "g.pt")
    assert cli.main(["predict", "--data", "iris", "--steps", "100", "--model", str(tmp_path / "g.pt")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == out
    assert f"use 'metahp-fast suggest --data iris --meta-model {tmp_path / 'g.pt'}'" in captured.err
    assert cli.main(["predict", "--data", "iris", "--proba"]) == 2
    assert "--proba: needs --model, a model file (best.pt) from tune or train" in capsys.readouterr().err


def test_an_interrupted_meta_train_says_what_was_saved_and_how_to_resume(tmp_path, monkeypatch, capsys):
    import shlex

    import metahp_fast.meta.train as meta_train_module
    out = tmp_path / "g.pt"

    def killed(config, tasks, steps, checkpoint, **kw):  # stands in for a run stopped by Ctrl-C after a save
        checkpoint.write_bytes(b"saved")
        raise KeyboardInterrupt
    monkeypatch.setattr(meta_train_module, "meta_train", killed)
    argv = ["meta-train", "--tasks", "2", "--meta-steps", "3", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 130
    assert capsys.readouterr().err.splitlines() == [
        f"metahp-fast: interrupted; the rounds finished so far are saved in {tmp_path / 'g.pt.checkpoint'}",
        f"resume with: metahp-fast {shlex.join(argv)}"]
