"""best.pt and :func:`metahp_fast.load_model`: a model tuned on a CSV predicts on new raw rows (categories one-hot
as in training, class names back), and every wrong input says what is wrong."""
import csv
import os
import stat

import numpy as np
import pytest
import torch
from torch import nn

from metahp_fast import cli, load_model
from metahp_fast.model_file import encode_rows
from metahp_fast.tasks import _read_csv
from tests.single_thread import one_thread  # noqa: F401  (autouse)

SMALL = ["--steps", "30", "--hidden", "16", "--no-progress", "--budget", "4"]


def _write_csv(path, n=97, seed=0, with_target=True):
    rng = np.random.default_rng(seed)
    cities = ["Rome", "Berlin", "Paris"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "city", "income"] + (["label"] if with_target else []))
        for _ in range(n):
            age, city, income = rng.integers(18, 80), cities[rng.integers(3)], rng.normal(50, 10)
            label = "yes" if (city == "Rome") ^ (income > 50) else "no"
            w.writerow([age, city, f"{income:.3f}"] + ([label] if with_target else []))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    _write_csv(d / "people.csv")
    assert cli.main(["tune", "--data", str(d / "people.csv"), "--out", str(d / "run"), *SMALL]) == 0
    return d


def test_a_csv_model_predicts_class_names_on_new_raw_rows(tuned, tmp_path):
    g = load_model(tuned / "run" / "best.pt")
    assert g.class_names == ["no", "yes"] and g.info["kind"] == "classification" and g.info["target"] == "label"
    assert [(c["name"], c["categories"]) for c in g.columns] == [
        ("age", None), ("city", ["Berlin", "Paris", "Rome"]), ("income", None)]
    # the rows encode exactly as the training CSV was encoded
    x_raw, _, _ = _read_csv(str(tuned / "people.csv"), None)
    with open(tuned / "people.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert torch.equal(encode_rows(g.columns, rows), torch.as_tensor(x_raw))
    # new rows from a CSV without the target column: predictions are the model's argmax, as names
    _write_csv(tmp_path / "new.csv", n=11, seed=5, with_target=False)
    pred = g.predict(tmp_path / "new.csv")
    feats = g.features(tmp_path / "new.csv")
    assert feats.shape == (11, 5) and feats.dtype == torch.float32
    want = g.model(feats).argmax(1)
    assert pred == [g.class_names[int(i)] for i in want] and len(pred) == 11
    proba = g.predict_proba(tmp_path / "new.csv")
    assert proba.shape == (11, 2) and np.allclose(proba.sum(1), 1, atol=1e-6)
    # the same rows separated by semicolons read the same (one CSV reader for training and prediction)
    text = (tmp_path / "new.csv").read_text().replace(",", ";")
    (tmp_path / "new_semi.csv").write_text(text)
    assert g.predict(tmp_path / "new_semi.csv") == pred
    # an array of encoded features works too
    assert g.predict(encode_rows(g.columns, rows[:3]).numpy()) == g.predict(rows[:3])


def test_bad_rows_and_files_say_what_is_wrong(tuned, tmp_path):
    g = load_model(tuned / "run" / "best.pt")
    row = {"age": "30", "city": "Rome", "income": "51.0"}
    with pytest.raises(ValueError, match=r"row 0, column 'city': 'Oslo' is not one of the categories"):
        g.predict([{**row, "city": "Oslo"}])
    with pytest.raises(ValueError, match=r"row 0 has no column 'income'"):
        g.predict([{"age": "30", "city": "Rome"}])
    with pytest.raises(ValueError, match=r"row 0, column 'age': 'thirty' is not a number"):
        g.predict([{**row, "age": "thirty"}])
    with pytest.raises(ValueError, match=r"row 0, column 'income': a missing value; .* --missing fill"):
        g.predict([{**row, "income": "NA"}])
    with pytest.raises(ValueError, match=r"data must have 5 feature columns"):
        g.predict(np.zeros((2, 3)))
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="is not a model file"):
        load_model(tuned / "people.csv")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="it is not a metahp_fast file"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "dup.csv").write_text("age,city,income,income\n30,Rome,51.0,49.0\n")
    with pytest.raises(ValueError, match=r"names \['income'\] more than once; the model finds its columns by name"):
        g.predict(str(tmp_path / "dup.csv"))


def test_a_builtin_model_takes_arrays_and_regression_returns_values(tmp_path):
    assert cli.main(["train", "--data", "iris", "--size", "4", "--steps", "20", "--hidden", "8", "--no-progress",
                     "--out", str(tmp_path / "iris.pt")]) == 0
    g = load_model(tmp_path / "iris.pt")
    assert g.columns is None and g.predict(np.zeros(4))[0] in g.class_names
    with pytest.raises(ValueError, match="only a model trained on a CSV file or a DataFrame keeps"):
        g.predict([{"a": 1}])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    np.savez(tmp_path / "reg.npz", x=x, y=x @ np.array([1.0, -2.0, 0.5]) + 0.1)
    assert cli.main(["tune", "--data", str(tmp_path / "reg.npz"), "--out", str(tmp_path / "r"), *SMALL]) == 0
    r = load_model(tmp_path / "r" / "best.pt")
    out = r.predict(x[:7])
    assert isinstance(out, np.ndarray) and out.shape == (7,) and r.info["kind"] == "regression"
    with pytest.raises(ValueError, match="predict_proba needs a classification model"):
        r.predict_proba(x[:2])


def test_saved_files_get_the_usual_permissions(tuned):
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tuned / "run" / "best.pt").st_mode) == 0o666 & ~umask


def test_a_model_tuned_with_missing_fill_fills_new_rows_the_same_way(tmp_path):
    lines = ["age,city,income,label"]
    rng = np.random.default_rng(3)
    for i in range(90):
        age = "" if i % 9 == 0 else str(int(rng.integers(18, 80)))
        city = "NA" if i % 7 == 0 else ["Rome", "Oslo"][i % 2]
        lines.append(f"{age},{city},{rng.normal(50, 10):.2f},{'ab'[i % 2]}")
    (tmp_path / "gaps.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    assert cli.main(["tune", "--data", str(tmp_path / "gaps.csv"), "--missing", "fill", "--out", str(out),
                     *SMALL]) == 0
    g = load_model(out / "best.pt")
    age, city = g.columns[0], g.columns[1]
    assert city["categories"] == ["(missing)", "Oslo", "Rome"] and isinstance(age["fill"], float)
    filled = g.features([{"age": "", "city": "NA", "income": "50"}])
    given = g.features([{"age": age["fill"], "city": "(missing)", "income": "50"}])
    assert torch.equal(filled, given)


def test_a_tune_result_saves_a_best_pt_that_load_model_uses(tmp_path):
    from metahp_fast.tuners import RandomSearch
    _write_csv(tmp_path / "p.csv")
    result = RandomSearch(hidden=(8,), steps=20, backend="torch").run(str(tmp_path / "p.csv"), 3)
    result.save(tmp_path / "best.pt", test={"loss": 0.5})
    g = load_model(tmp_path / "best.pt")
    assert g.class_names == ["no", "yes"] and g.info["method"] == "random" and g.info["hparams"] == \
        result.best_hparams
    # what the CLI's best.pt holds (it is written by this same method)
    assert g.info["layers"] == [result.data.x_train.shape[1], 8, 2] and g.info["optimizer"] == "sgd"
    assert g.info["activation"] == "relu" and g.info["loss"] == "cross_entropy" and g.info["test"] == {"loss": 0.5}
    row = {"age": "40", "city": "Paris", "income": "47.5"}
    x = encode_rows(g.columns, [row])
    want = result.best_model(result.data.preprocessor.transform(x).float()).argmax(1)
    assert g.predict([row]) == [g.class_names[int(want)]]
    from dataclasses import replace
    with pytest.raises(ValueError, match="does not carry its task"):
        replace(result, data=None).save(tmp_path / "x.pt")


def test_a_float64_tuning_run_and_a_one_feature_model_predict(tmp_path):
    """best.pt of a tuner that trained in float64 predicts (its features come in the model's dtype), and a
    one-feature model reads a 1-D array as one value per row."""
    from metahp_fast.tuners import RandomSearch
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 1))
    y = (x[:, 0] > 0.2).astype(int)
    res = RandomSearch(steps=20, hidden=(8,), dtype=torch.float64).run((x, y), 2, seed=0)
    res.save(tmp_path / "f64.pt")
    m = load_model(tmp_path / "f64.pt")
    assert next(m.model.parameters()).dtype == torch.float64
    with torch.no_grad():
        want = res.best_model(m.features(x[:5]))
    assert m.predict(x[:5, 0]) == [int(i) for i in want.argmax(1)]  # int labels come back as ints
    assert m.labels == [0, 1] and m.class_names == ["0", "1"]
    assert len(m.predict(x[:, 0])) == 120 and m.predict_proba(x[:3]).shape == (3, 2)


def test_a_dataframe_predicts_like_the_csv_it_was_read_from(tuned, tmp_path):
    """DataFrames with text columns (which failed with "could not convert string to float") are read as CSV rows
    are: columns by name, categories one-hot as in training."""
    pd = pytest.importorskip("pandas")
    g = load_model(tuned / "run" / "best.pt")
    _write_csv(tmp_path / "new.csv", n=11, seed=5, with_target=False)
    df = pd.read_csv(tmp_path / "new.csv")  # age int64, city text, income float64
    want = g.predict(tmp_path / "new.csv")
    assert torch.equal(g.features(df), g.features(tmp_path / "new.csv")) and g.predict(df) == want
    shuffled = df[["income", "city", "age"]].assign(extra="ignored")  # by name: order and extra columns don't matter
    assert g.predict(shuffled) == want
    assert g.predict(df.astype({"city": "category"})) == want
    np.testing.assert_array_equal(g.predict_proba(df), g.predict_proba(tmp_path / "new.csv"))
    with pytest.raises(ValueError, match=r"data has no column 'income'; the model needs \['age', 'city', 'income'\]"):
        g.predict(df.drop(columns="income"))
    with pytest.raises(ValueError, match=r"row 1, column 'city': 'Oslo' is not one of the categories"):
        g.predict(df.assign(city=["Rome", "Oslo"] + ["Rome"] * 9))
    gaps = df.astype({"income": float})
    gaps.loc[2, "income"] = np.nan
    with pytest.raises(ValueError, match=r"row 2, column 'income': a missing value"):
        g.predict(gaps)
    with pytest.raises(ValueError, match=r"row 0, column 'age': 'old' is not a number"):
        g.predict(df.astype({"age": object}).assign(age=["old"] + [30] * 10))


def _frame(pd, n=150, seed=0):
    """A DataFrame with int, float-with-gaps, text-with-gaps, categorical and bool columns, and int labels."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 10, n).round(3)
    income[::11] = np.nan
    note = rng.choice(["red", "blue", "NA"], n).astype(object)
    note[::13] = None
    df = pd.DataFrame({"age": rng.integers(18, 80, n), "income": income, "note": note,
                       "city": pd.Categorical(rng.choice(["Rome", "Oslo", "Paris"], n)),
                       "member": rng.random(n) > 0.5})
    y = pd.Series(((df["city"] == "Rome") ^ (np.nan_to_num(income, nan=50) > 50)).astype(int) * 3 + 1, name="label")
    return df, y


def test_from_arrays_reads_a_dataframe_as_the_csv_path_reads_that_table(tmp_path):
    pd = pytest.importorskip("pandas")
    from metahp_fast import from_arrays
    from metahp_fast.tasks import load_task
    df, y = _frame(pd)
    df.assign(label=y).to_csv(tmp_path / "table.csv", index=False)
    for missing in ("fill", "drop"):
        with pytest.warns(UserWarning, match="filled missing cells" if missing == "fill" else "dropped"):
            a = from_arrays(df, y, name="table", missing=missing)
        with pytest.warns(UserWarning, match="filled missing cells" if missing == "fill" else "dropped"):
            b = load_task(str(tmp_path / "table.csv"), missing=missing)
        for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "mean", "std"):
            assert torch.equal(getattr(a, f), getattr(b, f)), (missing, f)
        assert {k: v for k, v in a.meta.items() if k != "source"} == {k: v for k, v in b.meta.items() if k != "source"}
        assert a.class_names == b.class_names == ["1", "4"] and a.meta["labels"] == [1, 4]
    assert [c["name"] for c in a.meta["columns"]] == ["age", "income", "note", "city", "member"]
    with pytest.raises(ValueError, match="x has 150 rows but y has 149"):
        from_arrays(df, y[:-1])
    with pytest.raises(ValueError, match="missing='fill' needs x as a pandas DataFrame"):
        from_arrays(np.zeros((10, 2)), np.arange(10) % 2, missing="fill")
    with pytest.raises(ValueError, match="give every column its own non-empty name"):
        from_arrays(pd.concat([df[["age"]], df[["age"]]], axis=1), y)


def test_a_model_trained_on_a_dataframe_predicts_new_frames_rows_and_csvs_alike(tmp_path):
    pd = pytest.importorskip("pandas")
    from metahp_fast import from_arrays
    from metahp_fast.tuners import RandomSearch
    df, y = _frame(pd)
    with pytest.warns(UserWarning, match="filled missing cells"):
        task = from_arrays(df, y, missing="fill")
    result = RandomSearch(hidden=(8,), steps=20, backend="torch").run(task, 2)
    result.save(tmp_path / "best.pt")
    g = load_model(tmp_path / "best.pt")
    new, _ = _frame(pd, n=12, seed=1)
    new.loc[0, "note"], new.loc[1, "income"] = np.nan, np.nan  # filled as in training
    pred = g.predict(new)
    assert len(pred) == 12 and all(type(v) is int for v in pred) and set(pred) <= {1, 4}
    new.to_csv(tmp_path / "new.csv", index=False)
    assert g.predict(tmp_path / "new.csv") == pred
    assert g.predict(new.to_dict("records")) == pred
    with torch.no_grad():
        want = result.best_model(g.features(new)).argmax(1)
    assert pred == [[1, 4][int(i)] for i in want]


@pytest.mark.parametrize("labels, kind", [
    (np.array([3, 7, 9] * 30), int), (np.array(["cat", "dog", "emu"] * 30), str),
    (np.array([True, False, False] * 30), bool), (np.array([0.0, 2.0, 5.0] * 30), float)])
def test_predict_returns_the_labels_in_the_type_they_were_trained_with(tmp_path, labels, kind):
    """ints for int labels (not '3', '7'), strings for strings, bools for bools, floats for whole floats; the file
    holds them as plain JSON values."""
    import json
    from metahp_fast import from_arrays
    from metahp_fast.model_file import save_model
    x = np.random.default_rng(0).normal(size=(90, 3))
    task = from_arrays(x, labels)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, task.n_classes))
    save_model(tmp_path / "m.pt", model, task)
    stored = torch.load(tmp_path / "m.pt", weights_only=True)["preprocessing"]["labels"]
    assert json.loads(json.dumps(stored)) == stored == sorted(set(labels.tolist()))
    assert all(type(v) is kind for v in stored)
    g = load_model(tmp_path / "m.pt")
    pred = g.predict(x[:20])
    with torch.no_grad():
        ids = model(g.features(x[:20])).argmax(1)
    assert pred == [stored[int(i)] for i in ids] and all(type(v) is kind for v in pred) and len(set(ids.tolist())) > 1


def test_builtin_datasets_predict_their_int_labels_or_their_class_names(tmp_path):
    from metahp_fast.model_file import save_model
    from metahp_fast.tasks import load_task
    for name, first in (("digits", 0), ("iris", "setosa")):
        task = load_task(name)
        save_model(tmp_path / f"{name}.pt", nn.Sequential(nn.Linear(task.n_features, task.n_classes)), task)
        g = load_model(tmp_path / f"{name}.pt")
        assert g.labels[0] == first and type(g.labels[0]) is type(first)
        assert g.class_names == task.class_names and set(g.predict(np.zeros((3, task.n_features)))) <= set(g.labels)


def test_an_edited_model_file_is_refused_at_load(tmp_path):
    from metahp_fast.model_file import save_model
    from metahp_fast.tasks import load_task
    task = load_task("iris")
    save_model(tmp_path / "m.pt", nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)), task)
    edits = {"short mean": lambda d: d["preprocessing"].update(mean=torch.zeros(3)),
             "unknown module": lambda d: d["network"]["modules"].__setitem__(1, "exec"),
             "integer dtype": lambda d: d["network"].update(dtype="int64"),
             "missing weight": lambda d: d["network"]["state"].pop("2.weight"),
             "two class names": lambda d: d["preprocessing"].update(class_names=["a", "b"], labels=["a", "b"]),
             "labels of another length": lambda d: d["preprocessing"].update(labels=[1, 2])}
    for what, edit in edits.items():
        d = torch.load(tmp_path / "m.pt", weights_only=True)
        edit(d)
        torch.save(d, tmp_path / "edited.pt")
        with pytest.raises(ValueError, match=r"path: .*edited\.pt' is a damaged or edited model file"):
            load_model(tmp_path / "edited.pt")
    assert load_model(tmp_path / "m.pt").predict(np.zeros(4))[0] in task.class_names
