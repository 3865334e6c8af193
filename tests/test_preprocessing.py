"""Feature scaling (metahp_fast.preprocessing): standard, robust and quantile scalers on fresh random data with
constant, one-hot, heavy-tailed and tiny columns; fitted on the train split only; saved in best.pt (weights_only
loads) and applied by load_model, the scikit-learn estimators and the CLI; bad input."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from metahp_fast import cli, from_arrays, load_model, load_task
from metahp_fast.files import load_file, save_file
from metahp_fast.model_file import preprocessing, read_model_file, save_model
from metahp_fast.preprocessing import CLIP, DEFAULT_SCALING, NORMAL_IQR, SCALINGS, Scaler, fit_scaler
from metahp_fast.tasks import _split
from metahp_fast.tuners.checkpoint import fingerprint
from tests.single_thread import one_thread  # noqa: F401  (autouse)


def table(n=1237, seed=0):
    """Columns: normal, log-normal with an outlier, constant, one-hot (7% ones), cubic, small ints."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.standard_normal(n), np.exp(2.0 * rng.standard_normal(n)), np.full(n, 4.5),
                  (rng.random(n) < 0.07).astype(float), rng.standard_normal(n) ** 3,
                  rng.integers(0, 5, n).astype(float)], axis=1)
    x[min(3, n - 1), 1] = 1e7
    return x


def bound_of(scaler):
    """What no scaled value exceeds: the clip, or for quantile the score of a value beyond the training range."""
    from scipy.stats import norm
    return CLIP if scaler.rows is None else norm.ppf(1 - 0.25 / scaler.rows)


def test_standard_is_the_mean_and_std_unclipped():
    x = table()
    s = fit_scaler(x, "standard")
    xt = torch.as_tensor(x)
    std = xt.std(0, unbiased=False)
    assert torch.equal(s.center, xt.mean(0)) and torch.equal(s.scale, torch.where(std > 0, std, torch.ones_like(std)))
    z = s.transform(xt)
    torch.testing.assert_close(z, (xt - s.center) / s.scale)
    assert z[3, 1] > 30 and (z[:, 2] == 0).all()  # unclipped outlier; a constant column is 0
    # on a task, fitted on the train split
    from sklearn.datasets import load_wine
    wine = load_wine()
    t = load_task("wine", scaling="standard")
    train, _, test = _split(wine.target, 0, 0.2, 0.2, "wine")
    want = fit_scaler(wine.data[train.numpy()], "standard")
    assert t.meta["scaling"] == "standard" and t.scaler.clip is None and torch.equal(t.scaler.center, want.center)
    torch.testing.assert_close(t.x_test, want.transform(torch.as_tensor(wine.data[test.numpy()])).float())


@pytest.mark.parametrize("n", [1237, 5, 2, 1])
def test_robust_is_median_and_iqr_with_a_smooth_clip(n):
    x = table(n)
    s = fit_scaler(x, "robust")
    q = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
    iqr = (q[2] - q[0]) / NORMAL_IQR
    std = x.std(0)
    want = np.where(iqr > 0, iqr, np.where(std > 0, std, 1.0))  # a zero IQR (one-hot, constant): the std, or 1
    np.testing.assert_allclose(s.center.numpy(), q[1], rtol=1e-12)
    np.testing.assert_allclose(s.scale.numpy(), want, rtol=1e-12)
    z = s.transform(torch.as_tensor(x))
    lin = (x - q[1]) / want
    np.testing.assert_allclose(z.numpy(), lin / np.sqrt(1 + (lin / CLIP) ** 2), rtol=1e-12, atol=1e-12)
    assert torch.isfinite(z).all() and (z.abs() < CLIP).all() and (z[:, 2] == 0).all()


def test_robust_keeps_the_bulk_of_a_column_that_an_outlier_squashes_under_standard():
    rng = np.random.default_rng(1)
    clean = rng.standard_normal((997, 1))
    dirty = clean.copy()
    dirty[0] = 1e6
    for kind, spread in (("standard", 1e-3), ("robust", 0.5)):
        z = fit_scaler(dirty, kind).transform(torch.as_tensor(dirty))[1:, 0]
        assert (float(z.std()) < spread) == (kind == "standard")  # squashed to ~0 only by the mean/std
    zr = fit_scaler(dirty, "robust").transform(torch.as_tensor(clean))
    zc = fit_scaler(clean, "robust").transform(torch.as_tensor(clean))
    assert float((zr - zc).abs().max()) < 0.05  # one outlier barely moves median and IQR


def continuous(n, seed=2):
    rng = np.random.default_rng(seed)
    return np.stack([rng.standard_normal(n), np.exp(3 * rng.standard_normal(n)), rng.standard_cauchy(n)], axis=1)


def test_quantile_matches_scikit_learns_quantile_transformer_at_midpoint_ranks_on_continuous_columns():
    from scipy.stats import norm
    from sklearn.preprocessing import QuantileTransformer
    x, new = continuous(1531), continuous(301, seed=3)
    n = len(x)
    s = fit_scaler(x, "quantile")
    assert s.quantiles.shape == (1000, 3) and s.rows == n and s.clip is None
    u = QuantileTransformer(n_quantiles=1000, output_distribution="uniform").fit(x).transform(new)
    want = norm.ppf((0.5 + u * (n - 1)) / n)  # scikit-learn's ranks, squeezed to the midpoint ranks
    want = np.where(new > x.max(0), norm.ppf(1 - 0.25 / n), np.where(new < x.min(0), norm.ppf(0.25 / n), want))
    assert ((new > x.max(0)) | (new < x.min(0))).any()  # the beyond-range case is exercised
    np.testing.assert_allclose(s.transform(torch.as_tensor(new)).numpy(), want, atol=1e-9)
    z = s.transform(torch.as_tensor(x))
    top = norm.ppf(1 - 0.5 / n)
    assert torch.isfinite(z).all() and float(z.abs().max()) == pytest.approx(top, abs=1e-9)
    assert abs(float(z[:, 1].mean())) < 0.02 and abs(float(z[:, 1].std()) - 1) < 0.05


def rare_ends(n=5000, seed=12):
    """One column of n rows: categories 0..4 in bulk, and three rare ones at each end with 3, 2 and 1 rows
    (-1, -2, -3 below; 5, 6, 7 above), shuffled."""
    rng = np.random.default_rng(seed)
    rare = [-3.0, -2.0, -2.0, -1.0, -1.0, -1.0, 5.0, 5.0, 5.0, 6.0, 6.0, 7.0]
    col = np.concatenate([rng.integers(0, 5, n - len(rare)).astype(float), rare])
    return rng.permutation(col)[:, None]


@pytest.mark.parametrize("n", [5000, 700])  # a quantile grid coarser than the rows (1000 levels), and one per row
def test_quantile_keeps_rare_categories_at_a_columns_ends_apart(n):
    """The clip at 3 (before rows) mapped every value with rank beyond Phi(3) (about 1 in 740) to 3, so the
    categories 5, 6, 7 (and -1, -2, -3) merged; midpoint ranks keep every training value apart."""
    from scipy.stats import norm
    x = rare_ends(n)
    s = fit_scaler(x, "quantile")
    values = torch.as_tensor(np.unique(x))[:, None]
    assert values.numel() == 11
    z = s.transform(values)[:, 0]
    assert torch.isfinite(z).all() and (torch.diff(z) > 1e-3).all()  # strictly increasing, clearly distinct
    assert float(z[-1]) == pytest.approx(norm.ppf(1 - 0.5 / n), abs=1e-9) and float(z[0]) == pytest.approx(
        -float(z[-1]), abs=1e-9)  # the end scores: the midpoint ranks of the first and last row
    if n == 5000:  # all three rare ones past where the clip was, on each side
        assert float(z[-3]) > CLIP and float(z[2]) < -CLIP
    torch.testing.assert_close(s.inverse_transform(z[:, None]), values, rtol=0, atol=1e-9)


def test_quantile_is_monotone_and_finite_inside_and_beyond_the_training_range():
    from scipy.stats import norm
    x = np.concatenate([rare_ends(), continuous(5000)], axis=1)
    n = len(x)
    s = fit_scaler(x, "quantile")
    lo, hi = x.min(0), x.max(0)
    grid = np.concatenate([np.linspace(lo - 1e3, hi + 1e3, 2001), np.sort(x, axis=0), [lo, hi]], axis=0)
    grid = np.sort(grid, axis=0)
    z = s.transform(torch.as_tensor(grid)).numpy()
    assert np.isfinite(z).all() and (np.diff(z, axis=0) >= 0).all()
    inside, ends = (grid >= lo) & (grid <= hi), norm.ppf(1 - 0.5 / n)
    assert (np.abs(z[inside]) <= ends + 1e-12).all()
    # beyond the range: one score each side, half a rank past the end score (not merged with the extremes)
    beyond = norm.ppf(1 - 0.25 / n)
    np.testing.assert_allclose(z[grid > hi], beyond, rtol=0, atol=1e-12)
    np.testing.assert_allclose(z[grid < lo], -beyond, rtol=0, atol=1e-12)
    assert beyond > ends + 0.1
    back = s.inverse_transform(torch.as_tensor(z)).numpy()
    assert ((back > hi) == (grid > hi)).all() and ((back < lo) == (grid < lo)).all()


def test_quantile_gives_tied_values_their_middle_rank_and_constant_columns_zero():
    from scipy.stats import norm
    x = table()
    s = fit_scaler(x, "quantile")
    z = s.transform(torch.as_tensor(x))
    assert (z[:, 2] == 0).all()  # constant
    ones = x[:, 3] == 1
    p1 = ones.mean()
    levels = s.quantiles.shape[0]
    assert levels == 1000
    # one-hot: zeros take ranks 0..1-p, ones 1-p..1 (up to the quantile grid): two values, not +-inf
    assert set(np.round(z[:, 3].numpy(), 6)) == set(np.round(z[~ones, 3][:1].numpy(), 6)) | set(
        np.round(z[ones, 3][:1].numpy(), 6))
    assert float(z[~ones, 3][0]) == pytest.approx(norm.ppf((1 - p1) / 2), abs=0.01)
    assert float(z[ones, 3][0]) == pytest.approx(norm.ppf(1 - p1 / 2), abs=0.01)
    # ordinal ints keep their order, each tie one value; new values beyond the training range go half a rank
    # past the end scores, the same for every such value
    assert len(torch.unique(z[:, 5])) == 5 and (torch.diff(torch.unique(z[:, 5])) > 0).all()
    far = s.transform(torch.tensor([[-1e9, -1e9, 4.5, 1.0, -1e9, -1.0], [1e9, 1e9, 99.0, 0.0, 1e9, 9.0]],
                                   dtype=torch.float64))
    beyond = norm.ppf(1 - 0.25 / len(x))
    torch.testing.assert_close(far[:, [0, 1, 4]].abs(), torch.full((2, 3), beyond, dtype=torch.float64))
    assert float(far[0, 2]) == 0 and float(far[1, 2]) == pytest.approx(beyond)  # constant: 0, past it: beyond
    assert (far[:, [0, 1, 4]].abs() > z[:, [0, 1, 4]].abs().max(0).values).all()


@pytest.mark.parametrize("n", [1, 2, 3])
def test_quantile_on_tiny_splits_is_finite_and_monotone(n):
    x = table(7)[:n]
    s = fit_scaler(x, "quantile")
    assert s.quantiles.shape == (2 if n == 1 else n, 6)
    grid = torch.linspace(-10, 10, 41, dtype=torch.float64)[:, None].expand(41, 6)
    z = s.transform(grid)
    assert torch.isfinite(z).all() and (torch.diff(z, dim=0) >= 0).all()


@pytest.mark.parametrize("scaling", SCALINGS)
def test_tasks_fit_the_scaler_on_the_train_split_only(scaling):
    x, y = table(), np.random.default_rng(3).integers(0, 3, 1237)
    t = from_arrays(x, y, scaling=scaling, seed=4)
    train, val, test = _split(y, 4, 0.2, 0.2, "user")
    want = fit_scaler(x[train.numpy()], scaling)
    assert t.meta["scaling"] == scaling and t.scaler.kind == scaling
    torch.testing.assert_close(t.scaler.center, want.center)
    for split, idx in (("train", train), ("val", val), ("test", test)):
        torch.testing.assert_close(getattr(t, f"x_{split}"), want.transform(torch.as_tensor(x[idx.numpy()])).float())
    assert torch.equal(t.mean, want.center.float()) and torch.equal(t.std, want.scale.float())
    one = from_arrays(x[:, :1], y, scaling=scaling)  # a one-feature task's centre is a plain (1,) tensor
    assert one.mean.stride() == (1,) and fingerprint(one)["features"] == 1  # (a strided one broke its digest)
    if scaling != "standard":
        assert float(t.x_test.abs().max()) <= bound_of(t.scaler)


@pytest.mark.parametrize("scaling", ["robust", "quantile"])
def test_a_data_frame_with_missing_cells_and_categories_fills_then_scales_and_predicts_alike(scaling, tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    n = 311
    num = np.exp(2 * rng.standard_normal(n))
    num[rng.random(n) < 0.1] = np.nan
    df = pd.DataFrame({"num": num, "colour": rng.choice(["red", "green", "blue"], n), "k": rng.integers(0, 9, n)})
    y = (np.nan_to_num(num, nan=1.0) > 1).astype(int)
    with pytest.warns(UserWarning, match="filled missing cells"):
        t = from_arrays(df, y, missing="fill", scaling=scaling)
    for s in ("train", "val", "test"):
        xs = getattr(t, f"x_{s}")
        assert torch.isfinite(xs).all() and float(xs.abs().max()) <= bound_of(t.scaler)
    onehot = [i for i, name in enumerate(t.meta["feature_names"]) if name.startswith("colour=")]
    assert len(onehot) == 3 and all(len(torch.unique(t.x_train[:, j])) == 2 for j in onehot)
    fill = next(c["fill"] for c in t.meta["columns"] if c["name"] == "num")
    model = nn.Sequential(nn.Linear(t.n_features, 2))
    save_model(tmp_path / "best.pt", model, t)
    m = load_model(tmp_path / "best.pt")
    rows = df.iloc[:20]
    filled = rows.assign(num=rows["num"].fillna(fill))
    enc = m.features(filled)
    torch.testing.assert_close(m.features(rows), enc)  # a missing cell: the training median, then the scaler
    assert m.scaler.kind == scaling


@pytest.mark.parametrize("scaling", SCALINGS)
def test_a_saved_model_stores_the_scaler_as_plain_data_and_applies_it_to_new_rows(scaling, tmp_path):
    x, y = table(), (table()[:, 0] > 0).astype(int)
    t = from_arrays(x, y, scaling=scaling)
    model = nn.Sequential(nn.Linear(t.n_features, 8), nn.ReLU(), nn.Linear(8, 2))
    save_model(tmp_path / "best.pt", model, t)
    raw = torch.load(tmp_path / "best.pt", weights_only=True)
    sc = raw["preprocessing"]["scaling"]
    assert sc["kind"] == scaling and isinstance(sc["center"], torch.Tensor)
    assert (sc["quantiles"] is not None) == (scaling == "quantile")
    m = load_model(tmp_path / "best.pt")
    _, _, test = _split(y, 0, 0.2, 0.2, "user")
    torch.testing.assert_close(m.features(x[test.numpy()]), t.x_test)
    with torch.no_grad():
        want = model(t.x_test).argmax(1).tolist()
    assert m.predict(x[test.numpy()]) == want


def test_the_default_is_quantile_everywhere():
    """benchmarks/results/scaling.md: quantile was not worse on 29 KEEL tables and far better on heavy tails."""
    import inspect
    from metahp_fast.sklearn import TunedMLPClassifier
    from metahp_fast.tasks import from_table
    assert DEFAULT_SCALING == "standard" and load_task("iris").scaler.kind == "standard"
    for f in (load_task, from_arrays, from_table, TunedMLPClassifier):
        assert inspect.signature(f).parameters["scaling"].default == DEFAULT_SCALING
    assert cli.build_parser().parse_args(["tune"]).scaling == DEFAULT_SCALING


def test_a_model_file_without_a_scaling_is_standardized_and_a_damaged_one_is_refused(tmp_path):
    t = load_task("iris", scaling="standard")
    model = nn.Sequential(nn.Linear(4, 3))
    save_model(tmp_path / "best.pt", model, t)
    data = load_file(tmp_path / "best.pt", "model")
    payload = {k: v for k, v in data.items() if k not in ("format", "kind", "version")}
    del payload["preprocessing"]["scaling"]  # a file from before scalers
    save_file(tmp_path / "old.pt", "model", payload)
    m = load_model(tmp_path / "old.pt")
    assert m.scaler.kind == "standard"
    x = t.x_test.double() * t.std.double() + t.mean.double()
    torch.testing.assert_close(m.features(x), t.x_test)
    bad = {**payload, "preprocessing": {**payload["preprocessing"],
                                        "scaling": {**preprocessing(t)["scaling"], "kind": "minmax"}}}
    save_file(tmp_path / "bad.pt", "model", bad)
    with pytest.raises(ValueError, match="damaged or edited.*scaling must be one of"):
        read_model_file(tmp_path / "bad.pt")
    short = {**payload, "preprocessing": {**payload["preprocessing"], "scaling": {
        **preprocessing(t)["scaling"], "center": torch.zeros(3, dtype=torch.float64),
        "scale": torch.ones(3, dtype=torch.float64)}}}
    save_file(tmp_path / "short.pt", "model", short)
    with pytest.raises(ValueError, match="scaling does not match the model's 4 inputs"):
        read_model_file(tmp_path / "short.pt")


def test_bad_scaling_is_refused_naming_it_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="scaling must be one of"):
        load_task(str(tmp_path / "missing.csv"), scaling="minmax")  # before the file is looked for
    with pytest.raises(ValueError, match="scaling must be one of"):
        from_arrays(np.zeros((10, 2)), np.arange(10) % 2, scaling="Robust")
    with pytest.raises(ValueError, match="scaling must be one of"):
        fit_scaler(np.zeros((3, 2)), 3)
    with pytest.raises(ValueError, match="x_train must be finite"):
        fit_scaler(np.array([[np.nan]]), "robust")
    with pytest.raises(ValueError, match=r"x must have shape \(rows, 2\)"):
        fit_scaler(np.zeros((3, 2)), "robust").transform(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="clip must be a positive number"):
        Scaler("robust", torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), clip=0.0)


def test_the_estimators_take_scaling_and_predict_through_the_fitted_scaler():
    pytest.importorskip("sklearn")
    from metahp_fast.sklearn import TunedMLPClassifier
    x = table(401)
    y = (np.log(x[:, 1]) + x[:, 0] > 0).astype(int)
    est = TunedMLPClassifier(method="random", budget=2, steps=30, hidden=(8,), scaling="quantile", random_state=0)
    est.fit(x, y)
    assert est.scaler_.kind == "quantile"
    want = est.model_(est.scaler_.transform(torch.as_tensor(x))).detach().softmax(1).numpy()
    np.testing.assert_allclose(est.predict_proba(x), want, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="scaling must be one of"):
        TunedMLPClassifier(method="random", budget=2, scaling="minmax").fit(x, y)


def test_the_command_line_tunes_with_scaling_and_saves_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["tune", "--data", "breast_cancer", "--method", "random", "--budget", "2", "--scaling", "robust",
                     "--steps", "20", "--hidden", "8", "--no-progress", "--out", str(out)]) == 0
    saved = read_model_file(out / "best.pt")
    t = load_task("breast_cancer", scaling="robust")
    assert saved["scaler"].kind == "robust" and torch.equal(saved["scaler"].center, t.scaler.center)
    capsys.readouterr()
    assert cli.main(["tune", "--scaling", "minmax", "--out", str(tmp_path / "x")]) == 2
    assert "--scaling: invalid choice: 'minmax'" in capsys.readouterr().err
    assert cli.main(["tune", "--study", "s", "--scaling", "quantile", "--out", str(tmp_path / "y")]) == 2
    assert "--scaling: applies to a single tuning run" in capsys.readouterr().err


@pytest.mark.parametrize("scaling", SCALINGS)
def test_inverse_transform_undoes_the_scaling_within_the_training_range_and_round_trips(scaling):
    x, new = table(), table(301, seed=9)
    new[:3] = [[-50.0, 1e9, 7.0, 1.0, 1e6, 99.0], [50.0, 0.0, 4.5, 0.0, -1e6, -5.0], x[10]]  # beyond the range
    s = fit_scaler(x, scaling)
    z = s.transform(torch.as_tensor(new))
    back = s.inverse_transform(z)
    inside = (new >= x.min(0)) & (new <= x.max(0))
    if scaling == "robust":
        inside &= z.abs().numpy() < CLIP - 0.1  # the smooth clip's ends are too flat to invert exactly
    if scaling == "quantile":
        inside[:, 2] = False  # a constant column cannot be told apart from a value next to it
    # quantile: a rank's rounding, through the midpoint-rank map, times the gap between quantiles it falls in;
    # within |z| < 3 that stays below 1e-8 relative (1.4e-9 measured), past it (the column ends the old clip
    # left out; a gap of 1e7 at the outlier's end) below 1e-6; the other scalings are exact to 1e-9
    ends = inside & (z.abs().numpy() >= CLIP) if scaling == "quantile" else np.zeros_like(inside)
    rtol = 1e-8 if scaling == "quantile" else 1e-9
    assert ends.any() == (scaling == "quantile")  # the ends are exercised
    np.testing.assert_allclose(back.numpy()[inside & ~ends], new[inside & ~ends], rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(back.numpy()[ends], new[ends], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(s.transform(back), z, rtol=0, atol=1e-9)
    z32 = z.float()  # what a task holds
    torch.testing.assert_close(s.transform(s.inverse_transform(z32)).float(), z32, rtol=0, atol=1e-6)


def test_the_scaling_benchmark_runs_resumes_and_reports(tmp_path, monkeypatch, capsys):
    """benchmarks/scaling.py end to end on one heavy-tailed table, two folds, short tunings."""
    pytest.importorskip("sklearn")
    from benchmarks import scaling as bench
    from benchmarks.realworld import TUNE
    monkeypatch.setitem(TUNE, "steps", 20)
    monkeypatch.setitem(TUNE, "budget", 2.0)
    x, _ = bench.DATASETS["breast_cancer_ht"](0)
    assert x.shape == (569, 30) and bench.tail_index(x) > 10  # heavy tails indeed
    argv = ["--datasets", "breast_cancer_ht", "--folds", "2", "--scalings", "standard,quantile", "--out",
            str(tmp_path)]
    assert bench.main(argv) == 0
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert sorted((r["method"], r["fold"]) for r in runs) == sorted(
        (m, f) for m in ("standard", "quantile", "hgb") for f in (0, 1))
    assert all(0 <= r["test_accuracy"] <= 1 and r["test_log_loss"] > 0 for r in runs)
    text = (tmp_path / "report.md").read_text()
    assert "| breast_cancer_ht | 569 | 30 |" in text and "| `quantile` |" in text
    capsys.readouterr()
    assert bench.main(argv) == 0  # everything reused
    assert "fold 0" not in capsys.readouterr().out.split("# Feature scaling")[0]


def test_quantile_maps_wide_tables_in_blocks_of_columns_alike(monkeypatch):
    import metahp_fast.preprocessing as pp
    x = np.random.default_rng(11).standard_cauchy((203, 37))
    s = fit_scaler(x, "quantile")
    whole = s.transform(torch.as_tensor(x))
    monkeypatch.setattr(pp, "BLOCK", 203 * 5)  # 5 columns a block, the last one 2
    torch.testing.assert_close(s.transform(torch.as_tensor(x)), whole, rtol=0, atol=0)


def old_quantile_dict(scaler):
    """``scaler`` as a best.pt saved it before quantile scalers had ``rows``: no such key, clipped at 3."""
    d = scaler.to_dict()
    del d["rows"]
    return {**d, "clip": CLIP}


def test_a_quantile_scaler_saved_before_rows_loads_and_maps_as_it_did(tmp_path):
    """Files from before the midpoint ranks: ranks in [0, 1], clipped at 3 (scikit-learn's normal
    QuantileTransformer, clipped), rare extreme categories merged as they were when the model was trained."""
    from sklearn.preprocessing import QuantileTransformer
    x, new = continuous(1531), continuous(301, seed=3)
    old = Scaler.from_dict(old_quantile_dict(fit_scaler(x, "quantile")))
    assert old.rows is None and old.clip == CLIP
    want = np.clip(QuantileTransformer(n_quantiles=1000, output_distribution="normal").fit(x).transform(new),
                   -CLIP, CLIP)
    np.testing.assert_allclose(old.transform(torch.as_tensor(new)).numpy(), want, atol=1e-9)
    z = old.transform(torch.as_tensor(np.array([[5.0], [6.0], [7.0]])[:, [0, 0, 0]]))
    assert float(z.abs().max()) == CLIP
    rare = Scaler.from_dict(old_quantile_dict(fit_scaler(rare_ends(), "quantile")))
    top = rare.transform(torch.tensor([[5.0], [6.0], [7.0], [99.0]], dtype=torch.float64))
    assert torch.equal(top, torch.full((4, 1), CLIP, dtype=torch.float64))  # the old merge, kept for old files
    torch.testing.assert_close(rare.transform(rare.inverse_transform(top)), top, rtol=0, atol=0)
    # in a model file: loads (torch.load(weights_only=True) too) and applies the old mapping to new rows
    y = (x[:, 0] > 0).astype(int)
    t = from_arrays(x, y, scaling="quantile")
    model = nn.Sequential(nn.Linear(3, 2))
    save_model(tmp_path / "best.pt", model, t)
    data = load_file(tmp_path / "best.pt", "model")
    payload = {k: v for k, v in data.items() if k not in ("format", "kind", "version")}
    payload["preprocessing"]["scaling"] = old_quantile_dict(t.scaler)
    save_file(tmp_path / "old.pt", "model", payload)
    assert "rows" not in torch.load(tmp_path / "old.pt", weights_only=True)["preprocessing"]["scaling"]
    m = load_model(tmp_path / "old.pt")
    assert m.scaler.kind == "quantile" and m.scaler.rows is None and m.scaler.clip == CLIP
    legacy = Scaler("quantile", t.scaler.center, t.scaler.scale, CLIP, t.scaler.quantiles)
    torch.testing.assert_close(m.features(new), legacy.transform(torch.as_tensor(new)).float())
    assert not torch.allclose(m.features(new), load_model(tmp_path / "best.pt").features(new))
    # a new file keeps rows
    assert load_model(tmp_path / "best.pt").scaler.rows == t.scaler.rows == len(t.y_train)


def test_rows_belong_to_an_unclipped_quantile_scaler_only():
    zeros, ones = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    q = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    assert Scaler("quantile", zeros, ones, None, q, rows=7).rows == 7
    for kind, clip, quantiles, rows in (("quantile", CLIP, q, 7), ("robust", None, None, 7),
                                        ("quantile", None, q, 0), ("quantile", None, q, True),
                                        ("quantile", None, q, 7.0)):
        with pytest.raises(ValueError, match="rows"):
            Scaler(kind, zeros, ones, clip, quantiles, rows=rows)
