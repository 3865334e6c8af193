"""Tasks: built-in datasets, seeded stratified splits, standardization, .npz/.csv files, user arrays, errors."""
import re
import sys
import warnings

import numpy as np
import pytest
import torch

from metahp_fast.tasks import BUILTINS, Task, from_arrays, load_task

sk = pytest.importorskip("sklearn.datasets")

EXPECTED = {"digits": (1797, 64, 10), "wine": (178, 13, 3), "breast_cancer": (569, 30, 2), "iris": (150, 4, 3)}


def raw(task: Task, split: str) -> torch.Tensor:
    """Undo the scaling of one split (float64; exact for standardized tasks)."""
    return task.preprocessor.inverse_transform(getattr(task, f"x_{split}"))


def test_builtins_are_the_four_sklearn_datasets():
    assert set(BUILTINS) == set(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_builtin_shapes_dtypes_and_standardization(name):
    n, f, c = EXPECTED[name]
    t = load_task(name, seed=0, scaling="standard")
    assert (t.n_features, t.n_classes, len(t.class_names)) == (f, c, c)
    assert len(t.x_train) + len(t.x_val) + len(t.x_test) == n
    assert len(t.x_val) == round(0.2 * n) and len(t.x_test) == round(0.2 * n)
    for s in ("train", "val", "test"):
        x, y = getattr(t, f"x_{s}"), getattr(t, f"y_{s}")
        assert x.dtype == torch.float32 and x.shape[1] == f and y.dtype == torch.int64 and y.shape == (len(x),)
        assert y.min() >= 0 and y.max() < c
    # train features have mean 0 and std 1 (constant features: std 1 is used, so they become 0)
    torch.testing.assert_close(t.x_train.double().mean(0), torch.zeros(f, dtype=torch.float64), atol=1e-5, rtol=0)
    std = t.x_train.double().std(0, unbiased=False)
    const = t.x_train.abs().amax(0) == 0
    torch.testing.assert_close(std[~const], torch.ones(int((~const).sum()), dtype=torch.float64), atol=1e-5, rtol=0)
    assert (t.std[const] == 1).all()
    # the splits are a partition of the original data, standardized with the train statistics
    data = getattr(sk, f"load_{name}")()
    rebuilt = torch.cat([raw(t, s) for s in ("train", "val", "test")]).numpy()
    labels = torch.cat([t.y_train, t.y_val, t.y_test]).numpy()
    full = np.column_stack([rebuilt, labels])
    orig = np.column_stack([data.data, data.target])
    np.testing.assert_allclose(full[np.lexsort(full.T[::-1])], orig[np.lexsort(orig.T[::-1])], rtol=1e-5, atol=1e-4)
    assert t.class_names == [str(s) for s in data.target_names]
    assert t.meta["source"] == f"sklearn.datasets.load_{name}" and t.meta["n_rows_dropped"] == 0


def test_split_is_fixed_by_seed_and_differs_across_seeds():
    a, b, c = (load_task("wine", seed=s, scaling="standard") for s in (1, 1, 2))
    for s in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "mean", "std"):
        assert torch.equal(getattr(a, s), getattr(b, s))
    assert not torch.equal(a.y_test, c.y_test) or not torch.equal(a.x_test, c.x_test)
    assert not torch.equal(a.mean, c.mean)


@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_splits_are_stratified(name):
    t = load_task(name, seed=5, val_fraction=0.15, test_fraction=0.25)
    ys = [t.y_train, t.y_val, t.y_test]
    total = torch.bincount(torch.cat(ys), minlength=t.n_classes).double()
    for y, frac in zip(ys, (0.6, 0.15, 0.25)):
        counts = torch.bincount(y, minlength=t.n_classes).double()
        assert (counts - total * frac).abs().max() <= 1.0 + 1e-9, (counts, total * frac)


def test_from_arrays_partition_label_remap_and_tensor_input():
    n = 60
    ids = np.arange(n, dtype=np.float64)
    y = np.array([3, 7, 9] * 20)
    t = from_arrays(torch.as_tensor(np.column_stack([ids, ids % 5])), torch.as_tensor(y), name="mine", seed=4,
                    scaling="standard")
    assert t.name == "mine" and t.n_classes == 3 and t.class_names == ["3", "7", "9"]
    parts = [raw(t, s)[:, 0].round().long() for s in ("train", "val", "test")]
    all_ids = torch.cat(parts)
    assert sorted(all_ids.tolist()) == list(range(n))  # disjoint and complete
    assert [len(p) for p in parts] == [36, 12, 12]
    for p, yy in zip(parts, (t.y_train, t.y_val, t.y_test)):
        assert torch.equal(yy, torch.as_tensor(np.searchsorted([3, 7, 9], y[p.numpy()])))


def test_from_arrays_regression_and_string_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    t = from_arrays(x, x @ np.array([0.5, -1.0, 2.0]) + 0.1, seed=0)
    assert t.n_classes is None and t.class_names is None and t.loss == "mse" and t.n_outputs == 1
    assert t.y_train.dtype == torch.float32 and t.y_train.shape == (len(t.x_train), 1)
    assert t.layers([8]) == [3, 8, 1]
    # targets standardized on the train split, like the features; the raw values come back exactly
    assert float(t.y_train.mean()) == pytest.approx(0, abs=1e-6)
    assert float(t.y_train.std(unbiased=False)) == pytest.approx(1, abs=1e-5)
    raw = x @ np.array([0.5, -1.0, 2.0]) + 0.1
    back = torch.cat([t.y_train, t.y_val, t.y_test]).double() * t.y_std.double() + t.y_mean.double()
    assert sorted(back[:, 0].tolist()) == pytest.approx(sorted(raw.tolist()), abs=1e-5)
    s = from_arrays(x, np.array(["b", "a"] * 25))
    assert s.class_names == ["a", "b"] and s.loss == "cross_entropy" and s.layers([8]) == [3, 8, 2]
    assert s.y_mean is None and s.y_std is None
    f = from_arrays(x, np.array([0.0, 1.0] * 25))  # whole-number floats are class labels
    assert f.n_classes == 2
    r = from_arrays(x, np.array([0.0, 1.0] * 25), kind="regression")
    assert r.n_classes is None


def test_npz_file(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.array([10, 20] * 30)
    x[3, 2] = np.nan
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    with pytest.warns(UserWarning, match="dropped 1 of 60 rows"):
        t = load_task(str(path), seed=0)
    assert t.name == "data" and t.n_features == 4 and t.class_names == ["10", "20"]
    assert t.meta["n_rows_dropped"] == 1 and len(t.x_train) + len(t.x_val) + len(t.x_test) == 59
    assert torch.isfinite(t.x_train).all()
    np.savez(tmp_path / "bad.npz", features=x, y=y)
    with pytest.raises(ValueError, match="'x'"):
        load_task(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "void.npz", x=np.full_like(x, np.nan), y=y)  # nothing left after dropping
    with pytest.warns(UserWarning, match="dropped 60 of 60"), \
            pytest.raises(ValueError, match="every one of its 60 rows has NaN/inf values"):
        load_task(str(tmp_path / "void.npz"))


def test_tiny_splits_are_flagged():
    """Validation or test splits under SMALL_SPLIT rows get a warning (what is picked or scored on them is
    noise); 60 rows (12 + 12) do not."""
    from metahp_fast.tasks import SMALL_SPLIT, from_arrays
    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match="only 2 validation and 2 test rows"):
        t = from_arrays(rng.normal(size=(12, 3)), np.arange(12) % 2, name="tiny")
    assert min(t.meta["n_val"], t.meta["n_test"]) < SMALL_SPLIT
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_arrays(rng.normal(size=(60, 3)), np.arange(60) % 2, name="enough")


CSV = """age,color,label,size
31,red,cat,1.5
45,blue,dog,2.5
,red,cat,1.0
22,green,bird,0.5
38,blue,dog,NA
29,red,cat,1.7
50,green,bird,0.2
41,blue,dog,2.9
33,red,cat,1.1
27,green,bird,0.4
36,blue,dog,2.2
24,red,cat,1.3
47,green,bird,0.3
52,blue,dog,3.1
19,red,cat,1.6
30,green,bird,0.6
44,blue,dog,2.7
26,red,cat,1.2
39,green,bird,?
35,green,bird,0.9
"""


@pytest.mark.filterwarnings("ignore:.*validation and .* test rows:UserWarning")  # small on purpose
def test_csv_with_categories_missing_values_and_string_labels(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text(CSV)
    with pytest.warns(UserWarning, match="dropped 3 of 20 rows"):
        t = load_task(str(path), target="label", seed=0, val_fraction=0.25, test_fraction=0.25, scaling="standard")
    assert t.meta["n_rows_dropped"] == 3 and t.meta["target"] == "label"
    assert t.class_names == ["bird", "cat", "dog"] and t.n_classes == 3
    assert t.meta["feature_names"] == ["age", "color=blue", "color=green", "color=red", "size"]
    assert t.meta["categorical_columns"] == ["color"]
    x = torch.cat([raw(t, s) for s in ("train", "val", "test")])
    y = torch.cat([t.y_train, t.y_val, t.y_test])
    assert len(x) == 17
    onehot = x[:, 1:4].round()
    assert torch.equal(onehot.sum(1), torch.ones(17, dtype=torch.float64))
    # in this file cat <-> red, dog <-> blue, bird <-> green; classes (bird, cat, dog), colors (blue, green, red)
    assert torch.equal(onehot.argmax(1), torch.tensor([1, 2, 0])[y])
    ages = sorted(round(a) for a in x[:, 0].tolist())
    assert ages == sorted([31, 45, 22, 29, 50, 41, 33, 27, 36, 24, 47, 52, 19, 30, 44, 26, 35])


def test_csv_says_which_columns_became_many_features_and_where_rows_were_lost(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    income = [f"{v:.1f}" for v in rng.normal(50, 5, n)]
    income[7] = '"55,000"'  # a thousands separator (quoted): the column is no longer all numbers
    city = [["Rome", "Oslo", "Lima"][i % 3] for i in range(n)]
    ids = [f"C{i:05d}" for i in range(n)]
    score = [f"{v:.2f}" for v in rng.normal(size=n)]
    score[3] = score[9] = ""
    label = [str(i % 2) for i in range(n)]
    rows = ["income,city,customer_id,score,label"] + [",".join(r) for r in zip(income, city, ids, score, label)]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = load_task(str(tmp_path / "c.csv"))
    said = [str(w.message) for w in caught]
    assert any("column 'income' holds numbers except 1 cell(s) such as '55,000'" in m for m in said), said
    assert any("column 'customer_id' has 118 distinct values in 118 rows (an identifier" in m for m in said), said
    assert any("dropped 2 of 120 rows with missing values (empty cells per column: score 2)" in m for m in said)
    assert not any("'city'" in m for m in said)  # three categories: nothing odd
    assert [c["name"] for c in t.meta["columns"]] == ["income", "city", "customer_id", "score"]
    assert t.meta["columns"][1] == {"name": "city", "categories": ["Lima", "Oslo", "Rome"]}
    assert t.meta["columns"][3]["categories"] is None and t.meta["columns"][3]["name"] == "score"


def test_many_whole_number_classes_suggest_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    price = np.round(100 + 20 * x[:, 0])
    with pytest.warns(UserWarning, match=r"distinct whole numbers in 300 rows, taken as \d+ classes; if it is a "
                      r"quantity, use kind='regression'"):
        t = from_arrays(x, price)
    assert t.is_classification
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not from_arrays(x, price, kind="regression").is_classification
        from_arrays(x, (x[:, 0] > 0).astype(int))  # two classes: no warning


def test_csv_default_target_is_last_column_and_numeric_regression(tmp_path):
    path = tmp_path / "reg.csv"
    rows = ["a,b,out"] + [f"{i},{(i * 7) % 5},{i * 0.37:.3f}" for i in range(60)]
    path.write_text("\n".join(rows) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped, nothing to warn about
        t = load_task(str(path))
    assert t.n_classes is None and t.n_features == 2 and t.meta["target"] == "out"
    assert t.y_train.shape == (len(t.x_train), 1)


@pytest.mark.parametrize("bad, exc, match", [
    ("mnist_fashion", ValueError, "digits"),
    ("nowhere/data.csv", FileNotFoundError, "nowhere"),
    ("nowhere/data.npz", FileNotFoundError, "nowhere"),
], ids=["unknown", "missing_csv", "missing_npz"])
def test_unknown_name_and_missing_file(bad, exc, match):
    with pytest.raises(exc, match=match):
        load_task(bad)


@pytest.mark.filterwarnings("ignore:.*validation and .* test rows:UserWarning")  # small on purpose
def test_bad_inputs_raise(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(ValueError, match="at least 2 classes"):
        from_arrays(x, np.zeros(30, dtype=np.int64))
    with pytest.raises(ValueError, match="too few"):
        from_arrays(x[:3], np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="too few"):  # every class needs a row in train
        from_arrays(x[:6], np.arange(6))
    assert len(from_arrays(x[:5], np.array([0, 1, 0, 1, 0])).x_train) == 3  # the smallest that works
    with pytest.raises(ValueError, match="rows"):
        from_arrays(x, np.zeros(29, dtype=np.int64))
    with pytest.raises(ValueError, match="val_fraction"):
        from_arrays(x, np.arange(30) % 2, val_fraction=0.0)
    with pytest.raises(ValueError, match="< 1"):
        from_arrays(x, np.arange(30) % 2, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="seed"):
        from_arrays(x, np.arange(30) % 2, seed=-1)
    with pytest.raises(ValueError, match="whole numbers"):
        from_arrays(x, np.linspace(0, 1, 30), kind="classification")
    with pytest.raises(ValueError, match="target"):
        load_task("iris", target="species")
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n")
    with pytest.raises(ValueError, match=r"'c'.*\['a', 'b'\]"):
        load_task(str(tmp_path / "t.csv"), target="c")
    (tmp_path / "ragged.csv").write_text("a,b\n1,x\n2\n")
    with pytest.raises(ValueError, match="row 3"):
        load_task(str(tmp_path / "ragged.csv"))
    (tmp_path / "data.txt").write_text("1 2\n")
    with pytest.raises(ValueError, match="unsupported"):
        load_task(str(tmp_path / "data.txt"))


def test_missing_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'metahp-fast\[data\]'"):
        load_task("iris")


def test_to_device_and_repr():
    t = load_task("iris")
    u = t.to("cpu")
    assert isinstance(u, Task) and torch.equal(u.x_val, t.x_val) and u.meta == t.meta
    assert repr(t) == "Task('iris': 90 train / 30 val / 30 test rows, 4 features, 3 classes)"


@pytest.mark.filterwarnings("ignore:.*validation and .* test rows:UserWarning")  # small on purpose
def test_every_class_keeps_a_training_row():
    x = np.random.default_rng(0).normal(size=(20, 2))
    y = np.array([0] * 9 + [1] * 9 + [2, 2])  # class 2 has only two rows
    for seed in range(10):
        t = from_arrays(x, y, seed=seed, val_fraction=0.3, test_fraction=0.3)
        assert set(t.y_train.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_csv_separated_otherwise_than_by_commas(tmp_path, sep):
    rows = [sep.join(["a", "b", "label"])] + [sep.join([f"{i * 0.5}", f"{i % 3}", "xy"[i % 2]]) for i in range(60)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    t = load_task(str(tmp_path / "s.csv"))
    assert t.n_features == 2 and t.class_names == ["x", "y"] and t.meta["target"] == "label"


def test_csv_missing_fill_keeps_the_rows_with_training_medians_and_a_missing_category(tmp_path):
    rng = np.random.default_rng(2)
    lines = ["a,colour,b,label"]
    for i in range(80):
        a = "" if i % 10 == 3 else f"{rng.normal(5, 2):.3f}"
        colour = "?" if i % 8 == 1 else ["red", "blue"][i % 2]
        label = "" if i == 79 else "xy"[(i // 2) % 2]
        lines.append(f"{a},{colour},{rng.normal():.3f},{label}")
    (tmp_path / "g.csv").write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = load_task(str(tmp_path / "g.csv"), missing="fill")
    said = " | ".join(str(w.message) for w in caught)
    assert "filled missing cells (per column: colour 10, a 8) with" in said
    assert "dropped 1 of 80 rows with no target" in said
    assert t.meta["n_rows"] == 79 and t.meta["feature_names"] == ["a", "colour=(missing)", "colour=blue",
                                                                  "colour=red", "b"]
    # every missing number became the median of its column's numbers in the training rows
    fill = t.meta["columns"][0]["fill"]
    a_all = torch.cat([raw(t, s) for s in ("train", "val", "test")])[:, 0]
    assert int((a_all - fill).abs().lt(1e-4).sum()) >= 8  # the 8 missing cells (and maybe one genuine value)
    rest = [v for v in raw(t, "train")[:, 0].tolist() if abs(v - fill) > 1e-4]
    assert any(abs(float(np.median(r)) - fill) < 1e-4 for r in (rest, rest + [fill]))
    with pytest.raises(ValueError, match="missing must be one of"):
        load_task(str(tmp_path / "g.csv"), missing="impute")


def test_unreadable_npz_files_say_what_to_write(tmp_path):
    """Empty, truncated or pickled .npz files fail with one message naming the file, never numpy's own error."""
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, x=rng.normal(size=(100, 2)), y=np.arange(100) % 2)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 30, dtype=object), y=np.arange(30) % 2)
    for name, why in (("empty", "EOFError"), ("cut", "BadZipFile"), ("objects", "it holds pickled Python objects")):
        with pytest.raises(ValueError, match=re.escape(f"'{tmp_path / name}.npz' is not a readable .npz file ({why}")):
            load_task(str(tmp_path / f"{name}.npz"))
    assert load_task(str(good)).n_classes == 2


def test_csv_headers_name_every_column_once(tmp_path):
    """A saved model finds a new file's columns by name, so duplicate or blank names are refused up front (a
    duplicate once trained fine and then predicted from the wrong column)."""
    rows = "".join(f"{i},{-i},{i % 2}\n" for i in range(30))
    for header, said in (("a,a,label", r"names \['a'\] more than once"), ("a,,label", "column 2 .* has no name")):
        (tmp_path / "h.csv").write_text(f"{header}\n{rows}")
        with pytest.raises(ValueError, match=said):
            load_task(str(tmp_path / "h.csv"))
    (tmp_path / "only.csv").write_text("a,b,label\n")
    with pytest.raises(ValueError, match="has a header row but no data rows"):
        load_task(str(tmp_path / "only.csv"))
    # a column with no value at all: the error says which, and how to keep the rows
    (tmp_path / "gap.csv").write_text("a,b,label\n" + "".join(f"{i},,{i % 2}\n" for i in range(30)))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"empty cells per column: b 30\); .*--missing fill"):
        load_task(str(tmp_path / "gap.csv"))


def test_csv_in_latin1_is_read_with_a_note(tmp_path):
    """A spreadsheet's non-UTF-8 export loads (as Latin-1) instead of failing on a byte."""
    cities = ["Genève", "Zürich"] * 50
    text = "a,city,label\n" + "".join(f"{i},{c},{i % 2}\n" for i, c in enumerate(cities))
    (tmp_path / "l1.csv").write_bytes(text.encode("latin-1"))
    with pytest.warns(UserWarning, match="not UTF-8 text; read as Latin-1"):
        t = load_task(str(tmp_path / "l1.csv"))
    assert {c["name"] for c in t.meta["columns"]} >= {"a", "city"}
    assert any(c["categories"] == ["Genève", "Zürich"] for c in t.meta["columns"])


def test_a_column_vector_of_labels_is_classification():
    """``y`` of shape (rows, 1) holding whole numbers or strings is labels, as (rows,); real numbers stay a
    one-output regression."""
    x = np.random.default_rng(0).normal(size=(60, 3))
    labels = np.arange(60) % 3
    for y in (labels[:, None], labels[:, None].astype(np.float32), np.array(list("abc") * 20)[:, None]):
        t = from_arrays(x, y)
        assert t.is_classification and t.n_classes == 3 and t.y_train.ndim == 1
    assert not from_arrays(x, labels[:, None] + 0.5).is_classification
    assert from_arrays(x, labels[:, None], kind="regression").n_outputs == 1
