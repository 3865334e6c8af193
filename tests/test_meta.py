"""The meta-learner: encoder, task distribution, prediction, saving, meta-training, resuming, bad input."""
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from metahp_fast import SearchSpace
from metahp_fast.meta import (FEATURES, HELD_OUT, MetaConfig, MetaLearner, MetaTask, TaskDistribution,
                              check_not_held_out, encode)
from metahp_fast.meta import learner as learner_mod
from metahp_fast.tuners import TUNERS
from metahp_fast.tasks import from_arrays, gaussian_mixture_data, load_task
from metahp_fast.training import TrainConfig, validation_objective
from tests.single_thread import one_thread  # noqa: F401  (autouse)

TINY = MetaConfig(hidden=16, inner_hidden=(8,), n_pairs=2, sigma=0.5, meta_batch=2, lr=0.05, seed=0)


def _mixture(seed, n=200, d=5, c=3, **kw):
    x, y = gaussian_mixture_data(seed=seed, n_samples=n, n_features=d, n_classes=c, **kw)
    return from_arrays(x, y, name=f"toy{seed}", seed=seed)


def _toy_tasks(n=4, steps=30):
    return [MetaTask(_mixture(s), steps, 32) for s in range(n)]


def test_encoder_is_dimension_agnostic_and_order_invariant():
    a = encode(_mixture(0, n=150, d=3, c=2), 100, 32)
    b = encode(_mixture(1, n=900, d=40, c=7), 300, 128, "adamw")
    assert a.shape == b.shape == (len(FEATURES),) and torch.isfinite(a).all() and torch.isfinite(b).all()
    task = _mixture(2, n=400, d=12, c=4)
    perm = torch.randperm(len(task.x_train))
    shuffled = dataclasses.replace(task, x_train=task.x_train[perm], y_train=task.y_train[perm])
    torch.testing.assert_close(encode(shuffled, 200, 64), encode(task, 200, 64), atol=1e-5, rtol=1e-5)
    reg = from_arrays(np.random.default_rng(0).normal(size=(120, 4)), np.random.default_rng(1).normal(size=120))
    assert encode(reg, 50, 16).shape == (len(FEATURES),)


def test_encoder_is_fast_on_large_data():
    task = _mixture(0)
    big = dataclasses.replace(task, x_train=torch.randn(100_000, 1000), y_train=torch.randint(0, 10, (100_000,)),
                              n_classes=10, n_features=1000)
    t0 = time.perf_counter()
    e = encode(big, 300, 128)
    assert time.perf_counter() - t0 < 2.0 and torch.isfinite(e).all()


def test_distribution_is_seeded_and_refuses_held_out_datasets():
    d = TaskDistribution(seed=3, sources=("teacher", "gaussian_mixture"))
    a, b = d.sample(5), TaskDistribution(seed=3, sources=("teacher", "gaussian_mixture")).sample(5)
    assert a.task.name == b.task.name and torch.equal(a.task.x_train, b.task.x_train) and a.steps == b.steps
    assert d.sample(6).task.name != a.task.name
    for name in HELD_OUT:
        with pytest.raises(ValueError, match="held out"):
            TaskDistribution(sources=("digits", name))
        with pytest.raises(ValueError, match="held out"):
            check_not_held_out(name)
    with pytest.raises(ValueError, match="held out"):
        MetaLearner(config=TINY).fit([load_task("iris")], meta_steps=1)
    names = [t.task.name for t in TaskDistribution(seed=0).tasks(12)]
    assert not any(n.split("[")[0].split(":")[0] in HELD_OUT for n in names)


def test_predict_returns_natural_values_inside_the_space():
    g = MetaLearner(config=TINY)
    g.fit(_toy_tasks(2, steps=10), meta_steps=1)
    rng = np.random.default_rng(0)
    space = SearchSpace.default("sgd")
    for n, d, c in ((50, 2, 2), (300, 33, 6)):
        hp = g.predict(rng.normal(size=(n, d)), rng.integers(0, c, n), steps=77, batch_size=16)
        assert set(hp) == set(space.names) and all(isinstance(v, float) for v in hp.values())
        for k, v in hp.items():
            lo, hi = space[k].bounds()
            assert lo <= v <= hi, (k, v)
    assert g.predict(_mixture(9)) == g.predict(_mixture(9))


def test_save_load_round_trip(tmp_path):
    g = MetaLearner(config=TINY)
    g.constant = torch.tensor([-2.0, 0.5, -9.0], dtype=torch.float64)
    g.fit(_toy_tasks(2, steps=10), meta_steps=2, plot=tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG" and g.history[-1]["vs_constant"] > 0
    g.save(tmp_path / "g.pt")
    h = MetaLearner.load(tmp_path / "g.pt")
    task = _mixture(7)
    assert h.predict(task, steps=123) == g.predict(task, steps=123)
    assert h.config == g.config and h.space == g.space and h.history == g.history
    assert torch.equal(h.constant, g.constant)


def test_a_damaged_or_edited_file_is_refused_at_load_and_predict_takes_names(tmp_path):
    """Files that pass the version check but whose parts disagree fail at load with one message (they raised
    KeyError, TypeError or RuntimeError, some only at predict); predict takes a dataset name like the tuners
    and defaults to the learner's own optimizer."""
    g = MetaLearner(config=TINY)
    g.fit(_toy_tasks(2, steps=10), meta_steps=1)
    g.save(tmp_path / "g.pt")
    edits = {"no features": lambda d: d.pop("features"), "extra config": lambda d: d["config"].update(bogus=1),
             "other hidden": lambda d: d["config"].update(hidden=32),
             "short in_mean": lambda d: d["learner"].update(in_mean=torch.zeros(3)),
             "no weights": lambda d: d.pop("learner")}
    for what, edit in edits.items():
        d = torch.load(tmp_path / "g.pt", weights_only=True)
        edit(d)
        torch.save(d, tmp_path / "edited.pt")
        with pytest.raises(ValueError, match=r"path: .*edited\.pt' (is a damaged or edited|was made with other)"):
            MetaLearner.load(tmp_path / "edited.pt")
    assert MetaLearner.load(tmp_path / "g.pt").predict("iris") == g.predict(load_task("iris"))
    with pytest.raises(ValueError, match="y must be None when x is a Task or a dataset name"):
        g.predict("iris", np.zeros(3))


def test_fit_on_a_trained_learner_says_meta_steps_is_a_total():
    """meta_steps is the total to reach (so a killed run resumes to the same end); a learner that has done that
    many already says so instead of returning untouched."""
    g = MetaLearner(config=TINY)
    g.fit(_toy_tasks(2, steps=10), meta_steps=2)
    with pytest.raises(ValueError, match="meta_steps=2 is the total to reach, and this learner has done 2 already"):
        g.fit(_toy_tasks(2, steps=10), meta_steps=2)
    g.fit(_toy_tasks(2, steps=10), meta_steps=3)
    assert g.meta_steps_done == 3


def _center_objective(g, mts):
    """Mean validation loss at g's prediction over ``mts`` (fixed seeds)."""
    out = []
    for i, mt in enumerate(mts):
        u = g.predict_u(mt.task, mt.steps, mt.batch_size)
        cfg = TrainConfig(hidden=g.config.inner_hidden, steps=mt.steps, batch_size=mt.batch_size, backend="torch")
        out.append(float(validation_objective(mt.task, g.space, u, cfg, seed=100 + i)[0]))
    return sum(out) / len(out)


def test_meta_training_lowers_the_meta_objective():
    mts = _toy_tasks(4, steps=30)
    g = MetaLearner(config=dataclasses.replace(TINY, n_pairs=4, meta_batch=4, lr=0.03))
    g.set_output(torch.tensor([math.log(1.5e-3), 0.0, math.log(1e-5)]))  # far too small an lr for 30 steps
    before = _center_objective(g, mts)
    g.fit(mts, meta_steps=20)
    after = _center_objective(g, mts)
    assert after < 0.8 * before, (before, after)
    assert g.history[-1]["objective"] < g.history[0]["objective"]
    mean_log_lr = sum(float(g.predict_u(mt.task, 30, 32)[0]) for mt in mts) / len(mts)
    assert mean_log_lr > math.log(3e-3)  # the lr went up


def test_resume_after_interrupt_matches_uninterrupted(tmp_path, monkeypatch):
    mts = _toy_tasks(3, steps=10)
    full = MetaLearner(config=TINY).fit(mts, meta_steps=6)
    ckpt = tmp_path / "ckpt.pt"
    real, calls = learner_mod.es_hypergradient, []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) > 2 * 5 - 1:  # dies inside meta-step 5 (2 tasks per meta-step)
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(learner_mod, "es_hypergradient", dying)
    with pytest.raises(KeyboardInterrupt):
        MetaLearner(config=TINY).fit(mts, meta_steps=6, checkpoint=ckpt, checkpoint_every=2)
    monkeypatch.setattr(learner_mod, "es_hypergradient", real)
    assert torch.load(ckpt, weights_only=True)["learner"]["meta_steps_done"] == 4  # loads without pickle
    resumed = MetaLearner(config=TINY).fit(mts, meta_steps=6, checkpoint=ckpt, checkpoint_every=2)
    assert resumed.meta_steps_done == 6 and len(resumed.history) == 6
    for p, q in zip(full.net.parameters(), resumed.net.parameters()):
        assert torch.equal(p, q)
    assert [h["objective"] for h in resumed.history] == [h["objective"] for h in full.history]
    with pytest.raises(ValueError, match="different meta-training run"):
        MetaLearner(config=dataclasses.replace(TINY, lr=0.01)).fit(mts, meta_steps=7, checkpoint=ckpt)


@pytest.mark.parametrize("optimizer", ["sgd"])
def test_pretrained_loads_and_predicts(optimizer):
    """The learners shipped in the package (SGD), each with its sidecar (command, seed, held-out sets)."""
    g = MetaLearner.pretrained(optimizer)
    assert g.config.optimizer == optimizer
    hp = g.predict(load_task("wine"), steps=300, batch_size=128, optimizer=optimizer)
    space = SearchSpace.default(optimizer)
    assert set(hp) == set(space.names) and all(space[k].bounds()[0] <= v <= space[k].bounds()[1] for k, v in hp.items())
    assert g.constant is not None and g.meta_steps_done > 0
    side = json.loads((Path(learner_mod.__file__).parent / f"pretrained_{optimizer}.json").read_text())
    assert side["config"]["optimizer"] == optimizer and sorted(side["held_out"]) == sorted(HELD_OUT)
    assert side["command"].startswith("python benchmarks/meta_train.py")


def test_bad_input_names_the_argument(tmp_path):
    g = MetaLearner(config=TINY)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="x has 10 rows but y has 9"):
        g.predict(rng.normal(size=(10, 3)), rng.integers(0, 2, 9))
    with pytest.raises(ValueError, match="y is required"):
        g.predict(rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="optimizer='adamw'"):
        g.predict(_mixture(0), optimizer="adamw")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        g.predict(_mixture(0), steps=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        encode(_mixture(0), 10, -1)
    with pytest.raises(TypeError, match="task must be a Task"):
        encode("iris", 10, 10)
    with pytest.raises(ValueError, match="tasks must be a non-empty list"):
        g.fit([], meta_steps=1)
    with pytest.raises(ValueError, match="meta_steps must be a positive int"):
        g.fit(_toy_tasks(1), meta_steps=0)
    with pytest.raises(ValueError, match="n_pairs must be a positive int"):
        MetaConfig(n_pairs=0)
    with pytest.raises(FileNotFoundError, match="path"):
        MetaLearner.load(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"")
    torch.save({"version": 99}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="version"):
        MetaLearner.load(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"optimizer: no pretrained meta-learner for 'adamw'; available: \['sgd'\]"):
        MetaLearner.pretrained("adamw")


def test_cli_predict_meta_train_and_warm_started_tune(tmp_path, capsys):
    from metahp_fast import cli
    assert cli.main(["predict", "--data", "iris", "--steps", "100"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["hparams"]) == {"lr", "momentum", "weight_decay"} and out["steps"] == 100
    model = tmp_path / "g.pt"
    assert cli.main(["meta-train", "--tasks", "2", "--meta-steps", "1", "--out", str(model), "--no-progress"]) == 0
    assert "saved the meta-learner" in capsys.readouterr().out and not (tmp_path / "g.pt.checkpoint").exists()
    assert MetaLearner.load(model).meta_steps_done == 1
    assert cli.main(["predict", "--data", "wine", "--model", str(model)]) == 0
    capsys.readouterr()
    small = ["--data", "iris", "--method", "random", "--budget", "2", "--steps", "20", "--hidden", "8", "--no-progress"]
    assert cli.main(["tune", *small, "--meta", "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "warm start: the pretrained meta-learner predicts lr=" in printed
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["warm_start"].startswith("the pretrained meta-learner predicts")
    # the prediction printed is the one g makes for this task and budget, and it is the first candidate trained
    want = MetaLearner.pretrained().predict(load_task("iris", seed=0), steps=20, batch_size=128)
    first = min(report["trials"], key=lambda t: t["id"])["hparams"]
    assert {k: first[k] for k in want} == pytest.approx(want, rel=1e-5)
    assert cli.main(["tune", *small, "--no-meta", "--out", str(tmp_path / "b")]) == 0
    assert "warm start: off (--meta turns it on)" in capsys.readouterr().out
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["meta_prediction"] is None and report["zero_shot_trial"] is None
    assert cli.main(["tune", *small, "--optimizer", "adamw", "--meta", "--out", str(tmp_path / "c")]) == 0
    assert "warm start: none (no pretrained meta-learner for 'adamw'" in capsys.readouterr().out
    rng = np.random.default_rng(0)  # a regression dataset: outside what the pretrained learner was trained on
    x = rng.normal(size=(90, 3)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=(x @ np.ones((3, 2))).astype(np.float32))
    assert cli.main(["tune", *small, "--data", str(tmp_path / "reg.npz"), "--meta",
                     "--out", str(tmp_path / "d")]) == 0
    assert "warm start: none (the meta-learners are meta-trained on classification" in capsys.readouterr().out
    assert cli.main(["predict", "--data", "iris", "--model", str(tmp_path / "missing.pt")]) == 2
    assert "--model: no meta-learner file" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["random", "sh", "es", "tpe"])
def test_every_tuner_takes_a_meta_learner_as_warm_start(method):
    """``init=MetaLearner`` centers the run on g's prediction for the task being tuned: the first candidate
    (ES: the first center; TPE: the first trial) is exactly that prediction."""
    if method == "tpe":
        pytest.importorskip("optuna")
    g = MetaLearner.pretrained()
    task = load_task("iris", seed=0)
    want = g.predict(task, steps=30, batch_size=32)
    kw = dict(hidden=(16,), steps=30, batch_size=32, backend="torch")
    if method == "es":
        res = TUNERS[method](init=g, n_pairs=2, **kw).run(task, 5, seed=0)
        got = res.history[0]["center"]
        got = dict(zip(g.space.dims, g.space.from_unconstrained(torch.tensor(got, dtype=torch.float64)).values()))
    else:
        res = TUNERS[method](init=g, **kw).run(task, 4, seed=0)
        got = min(res.trials, key=lambda t: t["id"])["hparams"]
    for k in g.space.dims:
        assert float(got[k]) == pytest.approx(want[k], rel=1e-5), k


def test_a_meta_learner_for_another_space_is_refused():
    g = MetaLearner.pretrained()
    with pytest.raises(ValueError, match="init: the meta-learner predicts"):
        TUNERS["random"](optimizer="adamw", init=g)


def test_meta_headroom_script_scores_g_against_random_configurations(tmp_path, capsys):
    """benchmarks/meta_headroom.py at a tiny size: both tables, one row per task, and g's number is the one a
    separate training of g's prediction alone gives."""
    from benchmarks import meta_headroom
    from metahp_fast.training import validation_objective
    from metahp_fast.objectives import baseline_objective
    out = tmp_path / "h.md"
    assert meta_headroom.main(["--out", str(out), "--unseen", "2", "--random", "4", "--seeds", "1"]) == 0
    md = out.read_text()
    tables = [[line.split("|")[1:-1] for line in part.splitlines() if line.startswith("| ") and "---" not in line]
              for part in md.split("## ")[1:]]
    assert [len(t) for t in tables] == [2 + 2, 3 + 2]  # header, rows, mean
    for t in tables:
        for row in t[1:-1]:
            g_, const, best, median = map(float, row[3:7])
            assert 0 <= best <= median <= 1.5 and 0 <= g_ <= 1.5 and 0 <= const <= 1.5
    assert md.count("g closes") == 2
    wine = next(r for r in tables[1] if r[0].strip() == "wine (seed 0)")
    g = MetaLearner.pretrained()
    task = load_task("wine", seed=0)
    u = g.predict_u(task, 300, 128).unsqueeze(0)
    cfg = TrainConfig(hidden=g.config.inner_hidden, steps=300, batch_size=128, backend="torch")
    alone = float(validation_objective(task, g.space, u, cfg, seed=1)[0]) / baseline_objective(task)
    assert float(wine[3]) == pytest.approx(alone, abs=2e-3)


def test_selection_floor_script_scores_each_rule(tmp_path):
    """benchmarks/selection_floor.py at a tiny size: one row per task, and the plain rule's pick is the candidate
    with the lowest validation loss (its regret recomputed here from the same population)."""
    from benchmarks import selection_floor
    out = tmp_path / "s.md"
    assert selection_floor.main(["--out", str(out), "--tasks", "2", "--size", "6"]) == 0
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines()
            if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 2 + 2  # header, tasks, median and mean
    for row in rows[1:3]:
        regrets = [float(v) for v in row[3:]]
        assert len(regrets) == len(selection_floor.RULES) and all(math.isfinite(r) for r in regrets)
    # the first task's plain pick again, through Population.evaluate instead of the script's per-row losses
    from metahp_fast.quality import normalized_regret
    from metahp_fast.training import make_population, prepare_task
    space, cfg = SearchSpace.default("sgd"), TrainConfig(hidden=(128,), steps=300, batch_size=128, backend="torch")
    task = prepare_task(TaskDistribution(seed=selection_floor.DIST_SEED).sample(selection_floor.START).task, cfg)
    vals = space.sample(6, seed=0)
    pop = make_population(task, space, space.to_unconstrained({k: vals[k] for k in space.dims}), cfg, 0)
    best_v, best_t = torch.full((6,), math.inf), torch.full((6,), math.inf)
    for c in range(selection_floor.CHECKPOINTS):  # the script's schedule: 10 chunks of 30 steps
        pop.fit(task.x_train, task.y_train, steps=30, batch_size=128, seed=c, progress=False)
        val, test = pop.evaluate(task.x_val, task.y_val)["loss"], pop.evaluate(task.x_test, task.y_test)["loss"]
        better = val < best_v
        best_v, best_t = torch.where(better, val, best_v), torch.where(better, test, best_t)
    want = normalized_regret(float(test[int(val.argmin())]), float(test.min()), float(test.median()))
    assert float(rows[1][3]) == pytest.approx(want, abs=1.5e-3)
    early = normalized_regret(float(best_t[int(best_v.argmin())]), float(test.min()), float(test.median()))
    assert float(rows[1][3 + selection_floor.RULES.index("best checkpoint")]) == pytest.approx(early, abs=1.5e-3)
    # --harness: the held-out datasets, three seeds each
    assert selection_floor.main(["--harness", "--size", "4", "--out", str(out)]) == 0
    text = out.read_text()
    assert "The harness's held-out datasets (wine, breast_cancer, iris)" in text
    assert sum(line.startswith("| wine (seed ") for line in text.splitlines()) == 3


def test_selection_floor_harness_median_is_over_seeds_then_tasks():
    from benchmarks.selection_floor import harness_median
    rows = [{"task": f"{t} (seed {i})", "r": v} for t, vs in (("a", (0.0, 5.0, 1.0)), ("b", (2.0, 3.0, 9.0)),
                                                              ("c", (0.5, 0.5, 7.0))) for i, v in enumerate(vs)]
    assert harness_median(rows, "r") == 1.0  # task medians 1.0, 3.0, 0.5; the plain median of all nine is 2.0


def test_selection_floor_oracle_picks_the_lowest_mean_test_loss_of_the_retrainings():
    """The oracle rule: the configuration whose N further trainings (other seeds) have the lowest mean test loss,
    scored on the first training; recomputed here from populations trained the same way."""
    from benchmarks import selection_floor
    from metahp_fast.quality import normalized_regret
    from metahp_fast.training import make_population, prepare_task
    steps, batch, size, seed = 20, 16, 5, 3
    row = selection_floor.score_task(load_task("iris", seed=seed), steps, batch, seed=seed, size=size, oracle=2)
    space, cfg = SearchSpace.default("sgd"), TrainConfig(hidden=(128,), steps=steps, batch_size=batch, backend="torch")
    task = prepare_task(load_task("iris", seed=seed), cfg)
    u = space.sample_u(size, seed=seed)
    first = make_population(task, space, u, cfg, seed)
    for c in range(selection_floor.CHECKPOINTS):
        first.fit(task.x_train, task.y_train, steps=steps // 10, batch_size=batch, seed=seed * 1000 + c, progress=False)
    test = first.evaluate(task.x_test, task.y_test)["loss"].double()
    again = []
    for r in (1, 2):
        pop = make_population(task, space, u, cfg, seed * 1000 + 100 * r)
        pop.fit(task.x_train, task.y_train, steps=steps, batch_size=batch, seed=seed * 1000 + 100 * r, progress=False)
        again.append(pop.evaluate(task.x_test, task.y_test)["loss"].double())
    k = int(torch.stack(again).mean(0).argmin())
    want = normalized_regret(float(test[k]), float(test.min()), float(test.median()))
    assert row[selection_floor.ORACLE] == pytest.approx(want, abs=1e-4)
