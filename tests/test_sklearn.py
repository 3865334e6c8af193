"""The scikit-learn estimators: scikit-learn's own estimator checks, pipelines and model selection, data frames
with string, categorical and missing columns, targets in their units, bad input."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pd = pytest.importorskip("pandas")

from sklearn.base import clone  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from metahp_fast.sklearn import TunedMLPClassifier, TunedMLPRegressor  # noqa: E402
from metahp_fast.tasks import MISSING_CATEGORY, apply_columns, encode_columns, from_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# quick on CPU: 4 trainings of 60 steps of a 16-unit network
SMALL = dict(method="random", budget=4, steps=60, hidden=(16,), random_state=0)


@parametrize_with_checks([TunedMLPClassifier(**SMALL), TunedMLPRegressor(**SMALL)])
def test_scikit_learn_estimator_checks(estimator, check):
    """Every check of scikit-learn's suite passes; none is skipped here (scikit-learn itself skips its array-API
    checks when SCIPY_ARRAY_API is unset, and yields no sample-weight checks: fit takes no sample_weight)."""
    check(estimator)


def frame(n=240, seed=0):
    """A table with a numeric column with gaps, a string column with None, a pandas categorical column with NaN,
    an integer column and pandas' nullable Int64 with pd.NA; the label depends on all but the last."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    city = rng.choice(["Rome", "Oslo", "Lima"], size=n)
    size = rng.choice(["S", "M", "L"], size=n)
    k = rng.integers(0, 5, size=n)
    score = a + (city == "Rome") * 1.5 - (size == "L") * 1.5 + 0.3 * k
    X = pd.DataFrame({"a": a, "city": city.astype(object), "size": pd.Categorical(size), "k": k,
                      "extra": pd.array(rng.integers(0, 3, size=n), dtype="Int64")})
    X.loc[::7, "a"] = np.nan
    X.loc[3::11, "city"] = None
    X.loc[5::13, "size"] = np.nan
    X.loc[2::9, "extra"] = pd.NA
    y = np.where(score > np.median(score), "high", "low")
    return X, y


def test_a_data_frame_with_strings_categories_and_gaps_fits_and_predicts():
    X, y = frame()
    clf = TunedMLPClassifier(method="sh", budget=6, steps=120, hidden=(32,), random_state=0).fit(X[:180], y[:180])
    assert list(clf.feature_names_in_) == list(X.columns) and clf.n_features_in_ == 5
    assert list(clf.classes_) == ["high", "low"]
    enc = {c["name"]: c for c in clf.encoding_}
    assert enc["city"]["categories"] == [MISSING_CATEGORY, "Lima", "Oslo", "Rome"]
    assert enc["size"]["categories"] == [MISSING_CATEGORY, "L", "M", "S"]
    assert enc["a"]["categories"] is None and np.isclose(enc["a"]["fill"], np.nanmedian(X["a"][:180]), atol=0.5)
    pred = clf.predict(X[180:])
    assert set(pred) <= {"high", "low"} and clf.score(X[180:], y[180:]) > 0.7
    proba = clf.predict_proba(X[180:])
    assert proba.shape == (60, 2) and np.allclose(proba.sum(1), 1)
    assert np.array_equal(clf.classes_[proba.argmax(1)], pred)
    assert np.allclose(np.exp(clf.predict_log_proba(X[180:])), proba)
    # a category not seen in fit, a gap in a column that had none: predicted, not refused
    new = X[180:183].copy()
    new["city"] = ["Paris", None, "Rome"]
    new["k"] = pd.array([1, None, 2], dtype="Int64")
    assert clf.predict_proba(new).shape == (3, 2)
    # the same rows as a numpy object array (no names) predict the same
    clf2 = clone(clf).fit(X[:180].to_numpy(dtype=object), y[:180])
    assert clf2.predict(X[180:].to_numpy(dtype=object)).shape == (60,)


def test_pipeline_cross_val_score_grid_search_and_clone_on_a_data_frame():
    X, y = frame(seed=1)
    est = TunedMLPClassifier(**SMALL)
    scores = cross_val_score(make_pipeline(est), X, y, cv=3, error_score="raise")
    assert scores.shape == (3,) and np.all(scores > 0.6)
    grid = GridSearchCV(est, {"steps": [20, 60], "hidden": [(8,), (16,)]}, cv=2, error_score="raise").fit(X, y)
    assert grid.best_params_["steps"] in (20, 60) and hasattr(grid.best_estimator_, "model_")
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "model_")
    twin.set_params(budget=3, method="sh")
    assert twin.get_params()["budget"] == 3 and twin.get_params()["method"] == "sh"
    # numeric preprocessing in front: the estimator then sees a plain float array
    nums = make_pipeline(ColumnTransformer([("n", FunctionTransformer(lambda d: d.fillna(0.0)), ["a", "k"])]),
                         StandardScaler(), clone(est))
    assert cross_val_score(nums, X, y, cv=2, error_score="raise").shape == (2,)


def test_same_random_state_same_model_and_pickles():
    X, y = frame(seed=2)
    a = TunedMLPClassifier(**SMALL).fit(X, y)
    b = TunedMLPClassifier(**SMALL).fit(X, y)
    assert a.best_params_ == b.best_params_ and np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert set(a.best_params_) == {"lr", "momentum", "weight_decay"} and a.best_score_ <= 0
    c = pickle.loads(pickle.dumps(a))
    assert np.array_equal(c.predict_proba(X), a.predict_proba(X))
    assert a.tune_result_.data is None and a.tune_result_.method == "random" and a.seed_ == b.seed_


def test_refit_trains_the_chosen_hyperparameters_on_all_rows():
    import torch
    X, y = frame(seed=3)
    kept = TunedMLPClassifier(**SMALL, refit=False).fit(X, y)
    assert all(torch.equal(a.double(), b) for a, b in zip(kept.tune_result_.best_model.state_dict().values(),
                                                          kept.model_.state_dict().values()))
    refit = TunedMLPClassifier(**SMALL, optimizer="adamw").fit(X, y)
    assert {"lr", "beta1", "beta2", "weight_decay"} <= set(refit.best_params_)
    assert not all(torch.equal(a.double(), b) for a, b in zip(refit.tune_result_.best_model.state_dict().values(),
                                                              refit.model_.state_dict().values()))
    assert refit.score(X, y) > 0.7


def test_the_regressor_predicts_in_the_targets_units():
    """Targets are standardized for training, so y and 1000 * y + 5 train the same network: the predictions
    differ by the same affine map."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=200)
    small = TunedMLPRegressor(**{**SMALL, "steps": 150}).fit(X, y)
    big = TunedMLPRegressor(**{**SMALL, "steps": 150}).fit(X, 1000 * y + 5)
    p, q = small.predict(X), big.predict(X)
    assert p.shape == (200,) and np.allclose(q, 1000 * p + 5, rtol=1e-3, atol=0.5)
    assert big.score(X, 1000 * y + 5) > 0.8 and abs(q.mean() - (1000 * y + 5).mean()) < 100
    two = TunedMLPRegressor(**SMALL).fit(X, np.stack([y, -3 * y], 1))
    assert two.predict(X).shape == (200, 2) and two.n_outputs_ == 2


@pytest.mark.parametrize("params, match, exc", [
    (dict(method="bogus"), "method must be one of", ValueError),
    (dict(budget=0), "budget", ValueError),
    (dict(steps=0), "steps", ValueError),
    (dict(batch_size=-1), "batch_size", ValueError),
    (dict(hidden=(0,)), "hidden", ValueError),
    (dict(val_fraction=1.5), "val_fraction", ValueError),
    (dict(optimizer="lbfgs"), "optimizer", ValueError),
    (dict(objective="auc"), "objective", ValueError),
    (dict(tuner_params="eta=3"), "tuner_params", TypeError),
    (dict(method="sh", tuner_params={"eta": 1}), "eta", ValueError),
    (dict(device="tpu"), "device", ValueError),
])
def test_bad_parameters_fail_in_fit_naming_themselves_before_reading_the_data(params, match, exc):
    with pytest.raises(exc, match=match):
        TunedMLPClassifier(**{**SMALL, **params}).fit("not even data", None)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")
@pytest.mark.filterwarnings("ignore:.*only 6 validation rows:UserWarning")  # 30 rows, small on purpose
def test_bad_data_fails_with_a_message_naming_it():
    X, y = frame()
    est = TunedMLPClassifier(**SMALL)
    with pytest.raises(NotFittedError):
        est.predict(X)
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.fit(np.arange(10.0), np.arange(10) % 2)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="1 class"):
        est.fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="2 sample"):
        est.fit(X[:2], ["high", "low"])
    with pytest.raises(ValueError, match="infinity"):
        est.fit(np.array([[1.0, np.inf]] * 20), np.arange(20) % 2)
    with pytest.raises(ValueError, match="requires y"):
        est.fit(X, None)
    est.fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features"):
        est.predict(X.to_numpy(dtype=object)[:, :2])
    bad = X[:3].copy()
    bad["a"] = bad["a"].astype(object)
    bad.loc[0, "a"] = "tall"
    with pytest.raises(ValueError, match="X: column 'a': 'tall' is not a number"):
        est.predict(bad)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(X.rename(columns={"a": "b"}))
    with pytest.raises(ValueError, match="objective"):
        TunedMLPRegressor(**{**SMALL, "objective": "error"}).fit(np.random.rand(30, 2), np.random.rand(30))


@pytest.mark.filterwarnings("ignore:.*only 1 validation rows:UserWarning")  # 3 rows, small on purpose
def test_encode_columns_and_apply_columns_agree_with_the_csv_encoding():
    """The table encoding the estimator uses is the CSV's: a column of number strings is numeric, others
    one-hot over sorted categories with '(missing)' for gaps; apply_columns reproduces fit's features."""
    names = ["n", "s", "c"]
    cols = [["1.5", "", "3"], ["b", "a", None], np.array([2.0, np.nan, 2.0])]
    x, meta = encode_columns(names, cols, categorical=["c"])
    assert meta["feature_names"] == ["n", "s=(missing)", "s=a", "s=b", "c=(missing)", "c=2"]
    assert np.isnan(x[1, 0]) and x[0].tolist()[1:] == [0, 0, 1, 0, 1]
    task = from_table(names, [c for c in cols], np.array([0, 1, 0]), categorical=["c"], val_fraction=0.34,
                      test_fraction=0.0)
    assert len(task.x_test) == 0 and len(task.x_val) == 1
    columns = task.meta["columns"]
    again = apply_columns(columns, cols)
    assert np.isnan(again).sum() == 0 and again[1, 0] == columns[0]["fill"]
    assert np.array_equal(np.delete(again, 0, 1), np.delete(x, 0, 1))
    with pytest.raises(ValueError, match="'z' is not one of the categories"):
        apply_columns(columns, [["1"], ["z"], np.array([2.0])])
    assert apply_columns(columns, [["1"], ["z"], np.array([2.0])], unknown="ignore")[0, 1:4].tolist() == [0, 0, 0]


def test_the_benchmark_script_runs_as_a_file_and_as_a_module():
    for cmd in ([sys.executable, "benchmarks/sklearn_table.py", "--help"],
                [sys.executable, "-m", "benchmarks.sklearn_table", "--help"]):
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]
