"""Optuna studies evaluated in batches: the sampler proposes, the pruner prunes at rungs, pruned candidates
leave the population, finished ones are told their validation value with their model file."""
import os

import pytest
import torch

optuna = pytest.importorskip("optuna")

from metahp_fast import Fixed, LogUniform, SearchSpace, Uniform, load_model, load_task  # noqa: E402
from metahp_fast.optuna import DIVERGED, default_rungs, enqueue_suggestions, optimize_batched  # noqa: E402
from metahp_fast.population import Population  # noqa: E402
from metahp_fast.seeds import derive_seed  # noqa: E402
from tests.single_thread import one_thread  # noqa: E402,F401

optuna.logging.set_verbosity(optuna.logging.WARNING)
STEPS = 60
SMALL = dict(hidden=[16], steps=STEPS, train_batch_size=64)
SPACE = SearchSpace({"lr": LogUniform(1e-3, 1.0), "momentum": Uniform(0.0, 0.95)}, optimizer="sgd")
States = optuna.trial.TrialState


@pytest.fixture(scope="module")
def task():
    return load_task("digits")


def _val_loss(path, task):
    model = load_model(path).model
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(task.x_val), task.y_val))


@pytest.mark.parametrize("pruner", [
    optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
    optuna.pruners.HyperbandPruner(min_resource=2, max_resource=STEPS, reduction_factor=3),
    optuna.pruners.MedianPruner(n_startup_trials=4),
], ids=["sha", "hyperband", "median"])
def test_batched_study_with_pruner(task, tmp_path, monkeypatch, pruner):
    sizes = []
    select = Population.select

    def spy(self, indices):
        pop = select(self, indices)
        sizes.append((self.steps_done, self.size, pop.size))
        return pop
    monkeypatch.setattr(Population, "select", spy)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner)
    trials = optimize_batched(study, task, 32, batch_size=16, space=SPACE, out_dir=tmp_path, **SMALL)

    assert [t.number for t in trials] == list(range(32))
    assert {t.state for t in trials} == {States.COMPLETE, States.PRUNED}
    rungs = default_rungs(STEPS)
    for t in trials:
        steps = sorted(t.intermediate_values)
        if t.state == States.PRUNED:  # stopped at a rung: nothing reported after the pruner's decision
            assert steps == rungs[:len(steps)] and t.value == t.intermediate_values[steps[-1]]
            assert "model_path" not in t.user_attrs
        else:  # the told value is the model's: its file, loaded, scores it on the validation split
            assert steps == rungs + [STEPS]
            assert t.value == t.intermediate_values[STEPS]
            assert _val_loss(t.user_attrs["model_path"], task) == pytest.approx(t.value, rel=1e-5)
    # pruned candidates left the batch: after each rung the population shrank to the ones still running
    assert sizes
    for batch in (trials[:16], trials[16:]):
        for rung in rungs:
            alive = sum(1 for t in batch if max(t.intermediate_values) > rung)
            before = sum(1 for t in batch if max(t.intermediate_values) >= rung)
            shrink = [s for s in sizes if s[0] == rung and s[1] == before]
            if 0 < alive < before:
                assert (rung, before, alive) in shrink


def test_trial_values_equal_training_alone(task, tmp_path):
    """A trial trained in a batch of 16 scores what the same hyperparameters score trained alone (same
    initial weights, same batches)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trials = optimize_batched(study, task, 16, batch_size=16, space=SPACE, seed=3, **SMALL)
    t = min((t for t in trials if t.state == States.COMPLETE), key=lambda t: t.number)
    pop = Population(task.layers([16]), 1, "sgd", {k: [v] for k, v in t.params.items()}, seed=3)
    done = 0
    for r, step in enumerate(default_rungs(STEPS) + [STEPS]):
        pop.fit(task.x_train, task.y_train, steps=step - done, batch_size=64, seed=derive_seed(3, r), progress=False)
        done = step
    assert float(pop.evaluate(task.x_val, task.y_val)["loss"][0]) == pytest.approx(t.value, rel=1e-4)


def test_structural_dimensions_train_per_trial_in_one_batch(task, tmp_path):
    """A space with depth in {1, 2} and dropout: one batch of 8 trials trains as one group, each trial told its
    value, its model file of its own depth and dropout, scoring that value. Optuna distributions with depth and
    width do the same, and a trial scores what its structure and lr score trained alone."""
    space = SPACE.with_ranges({"depth": (1, 2), "dropout": (0.0, 0.3)})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trials = optimize_batched(study, task, 8, batch_size=8, space=space, seed=3, out_dir=tmp_path, rungs=[], **SMALL)
    assert all(t.state == States.COMPLETE for t in trials) and {t.params["depth"] for t in trials} == {1, 2}
    for t in trials:
        model = load_model(t.user_attrs["model_path"]).model
        linear = [m for m in model if isinstance(m, torch.nn.Linear)]
        drops = [m.p for m in model if isinstance(m, torch.nn.Dropout)]
        assert len(linear) == t.params["depth"] + 1 and all(m.out_features == 16 for m in linear[:-1])
        assert drops == pytest.approx([t.params["dropout"]] * t.params["depth"], rel=1e-6)
        assert _val_loss(t.user_attrs["model_path"], task) == pytest.approx(t.value, rel=1e-5)

    D = optuna.distributions
    dists = {"lr": D.FloatDistribution(1e-2, 0.5, log=True), "depth": D.CategoricalDistribution([1, 2]),
             "width": D.IntDistribution(4, 16)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trials = optimize_batched(study, task, 6, batch_size=6, space=dists, seed=3, out_dir=tmp_path / "d", rungs=[],
                              **SMALL)
    assert {t.params["depth"] for t in trials} == {1, 2}
    for t in trials:
        linear = [m for m in load_model(t.user_attrs["model_path"]).model if isinstance(m, torch.nn.Linear)]
        assert [m.out_features for m in linear[:-1]] == [t.params["width"]] * t.params["depth"]
        assert _val_loss(t.user_attrs["model_path"], task) == pytest.approx(t.value, rel=1e-5)
    t = max(trials, key=lambda t: t.params["depth"])  # (without dropout: its masks depend on the batch)
    alone = Population(task.layers([16] * t.params["depth"]), 1, "sgd", {"lr": [t.params["lr"]]},
                       widths=torch.tensor([t.params["width"]]), seed=3)
    alone.fit(task.x_train, task.y_train, steps=STEPS, batch_size=64, seed=derive_seed(3, 0), progress=False)
    assert float(alone.evaluate(task.x_val, task.y_val)["loss"][0]) == pytest.approx(t.value, rel=1e-4)


def test_enqueued_suggestions_run_first(task, tmp_path):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    portfolio = [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.02, "momentum": 0.5}]
    assert enqueue_suggestions(study, portfolio, space=SPACE) == 2
    trials = optimize_batched(study, task, 4, batch_size=4, space=SPACE, **SMALL)
    assert [t.params for t in trials[:2]] == portfolio
    assert all(t.state == States.COMPLETE for t in trials)


def test_meta_learner_prediction_is_enqueued(task):
    from metahp_fast import MetaLearner

    g = MetaLearner.pretrained("sgd")
    study = optuna.create_study()
    enqueue_suggestions(study, g, task=task, steps=STEPS, train_batch_size=64)
    trials = optimize_batched(study, task, 1, batch_size=1, **SMALL)
    predicted = g.predict(task, steps=STEPS, batch_size=64)
    space = SearchSpace.default("sgd")
    for name in space.dims:  # the prediction, clipped to the default space's ranges
        lo, hi = space[name].bounds()
        assert trials[0].params[name] == pytest.approx(min(max(predicted[name], lo), hi), rel=1e-6)


def test_diverged_candidate_fails_alone(task):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = {"lr": optuna.distributions.FloatDistribution(1e-3, 1e5, log=True)}  # Optuna distributions as the space
    study.enqueue_trial({"lr": 1e5})
    trials = optimize_batched(study, task, 4, batch_size=4, space=space, **SMALL)
    assert trials[0].state == States.FAIL and trials[0].user_attrs[DIVERGED]
    assert all(t.state == States.COMPLETE or t.user_attrs.get(DIVERGED) for t in trials[1:])


@pytest.mark.parametrize("when", ["training", "saving"])
def test_a_trial_failed_as_stale_by_another_worker_leaves_the_batch_alone(task, tmp_path, monkeypatch, when):
    """A worker that stalls past the grace period finds its trial failed by another worker (whose retry counts):
    reporting, or writing its model file, must neither crash the worker nor touch the other trials."""
    import metahp_fast.optuna as mo
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def fail_trial_1():
        if study.trials[1].state == States.RUNNING:
            study.tell(1, state=States.FAIL)  # what another worker's fail_stale does
    fit, save = Population.fit, mo.save_model
    monkeypatch.setattr(Population, "fit", lambda self, *a, **k: (when == "training" and fail_trial_1(),
                                                                   fit(self, *a, **k))[1])
    monkeypatch.setattr(mo, "save_model", lambda path, *a, **k: (when == "saving" and "00001" in str(path)
                                                                and fail_trial_1(), save(path, *a, **k))[1])
    trials = optimize_batched(study, task, 4, batch_size=4, space=SPACE, out_dir=tmp_path, **SMALL)
    assert [t.state for t in trials] == [States.COMPLETE, States.FAIL, States.COMPLETE, States.COMPLETE]
    assert "model_path" not in trials[1].user_attrs and not (tmp_path / "trial_00001.pt").exists()
    for t in trials[::2]:
        assert _val_loss(t.user_attrs["model_path"], task) == pytest.approx(t.value, rel=1e-5)


def test_fixed_hyperparameters_and_the_study_stays_ordinary(task, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from optuna.visualization.matplotlib import plot_intermediate_values, plot_optimization_history

    space = SearchSpace({"lr": LogUniform(1e-2, 0.5), "momentum": Fixed(0.8)}, optimizer="sgd")
    study = optuna.create_study(study_name="plain", storage=f"sqlite:///{tmp_path / 'study.db'}",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    optimize_batched(study, task, 8, batch_size=4, space=space, out_dir=tmp_path / "models", **SMALL)
    assert set(study.best_trial.params) == {"lr"}
    assert load_model(study.best_trial.user_attrs["model_path"]).info["hparams"]["momentum"] == 0.8
    # another process's view: the study loads from its storage like any other, and Optuna's plots draw it
    again = optuna.load_study(study_name="plain", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert again.best_value == study.best_value and len(again.trials) == 8
    for plot in (plot_optimization_history, plot_intermediate_values):
        ax = plot(again)
        ax.figure.savefig(tmp_path / f"{plot.__name__}.png")
        assert os.path.getsize(tmp_path / f"{plot.__name__}.png") > 0


def test_model_files_best_only_for_improving_trials(task, tmp_path):
    """With model_files="best", a finished trial gets a file only if it is its batch's best and beats every
    trial completed before its batch: the study's best trial has one, loadable, scoring its told value."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    trials = optimize_batched(study, task, 40, batch_size=8, space=SPACE, out_dir=tmp_path, model_files="best",
                              rungs=[], **SMALL)
    done = [t for t in trials if t.state == States.COMPLETE]
    assert len(done) >= 30
    with_file = [t for t in trials if "model_path" in t.user_attrs]
    expected = []
    for b in range(0, 40, 8):
        batch = [t for t in done if b <= t.number < b + 8]
        before = [t.value for t in done if t.number < b]
        best = min(batch, key=lambda t: t.value)
        if not before or best.value < min(before):
            expected.append(best.number)
    assert [t.number for t in with_file] == expected and len(expected) >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"trial_{n:05d}.pt" for n in expected)
    best = study.best_trial
    assert _val_loss(best.user_attrs["model_path"], task) == pytest.approx(best.value, rel=1e-5)
    # the same study with every file written: same trials and values (files change nothing else)
    again = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    all_files = optimize_batched(again, task, 40, batch_size=8, space=SPACE, out_dir=tmp_path / "all", rungs=[],
                                 **SMALL)
    assert [t.value for t in all_files] == [t.value for t in trials]
    assert all("model_path" in t.user_attrs for t in all_files if t.state == States.COMPLETE)


def test_bad_input(task):
    study = optuna.create_study()
    with pytest.raises(ValueError, match="study must minimize"):
        optimize_batched(optuna.create_study(direction="maximize"), task, 4, **SMALL)
    with pytest.raises(TypeError, match="study must be an optuna.Study"):
        optimize_batched("study", task, 4, **SMALL)
    with pytest.raises(ValueError, match="n_trials must be a positive int"):
        optimize_batched(study, task, 0, **SMALL)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        optimize_batched(study, task, 4, batch_size=0, **SMALL)
    with pytest.raises(ValueError, match="rungs must be step counts in \\[1, steps=60\\)"):
        optimize_batched(study, task, 4, rungs=[10, 60], **SMALL)
    with pytest.raises(ValueError, match="unknown hyperparameter 'beta1' for optimizer='sgd'"):
        optimize_batched(study, task, 4, space={"beta1": optuna.distributions.FloatDistribution(0.5, 0.9)}, **SMALL)
    with pytest.raises(ValueError, match="numeric hyperparameters"):
        optimize_batched(study, task, 4, space={"lr": optuna.distributions.CategoricalDistribution(["a", "b"])},
                         **SMALL)
    with pytest.raises(ValueError, match="outside the valid range of momentum"):
        optimize_batched(study, task, 4, space={"momentum": optuna.distributions.FloatDistribution(0.5, 1.5)},
                         **SMALL)
    D = optuna.distributions
    for bad, said in (({"depth": D.FloatDistribution(1, 3)}, "space\\['depth'\\] must be an optuna Int- or Cat"),
                      ({"depth": D.IntDistribution(0, 2)}, "space\\['depth'\\]: .* of at least 1"),
                      ({"width": D.CategoricalDistribution([8, 16.5])}, "width takes whole numbers"),
                      ({"dropout": D.FloatDistribution(0, 1)}, "space\\['dropout'\\]: .* within \\[0, 1\\)")):
        with pytest.raises((ValueError, TypeError), match=said):
            optimize_batched(study, task, 4, space=bad, **SMALL)
    with pytest.raises(ValueError, match=r"suggestions\[0\] has no value for \['momentum'\]"):
        enqueue_suggestions(study, {"lr": 0.1}, space=SPACE)
    with pytest.raises(ValueError, match=r"model_files must be one of \['all', 'best'\]; got 'some'"):
        optimize_batched(study, task, 4, model_files="some", **SMALL)
    assert study.trials == []  # nothing was asked


@pytest.mark.parametrize("rungs", [[], [4, 12]], ids=["no-rungs", "rungs"])
def test_benchmark_plain_loop_trains_the_batched_function(task, rungs):
    """benchmarks/optuna_speed.py's plain Optuna objective (one nn.Sequential + torch.optim.SGD per trial)
    scores every trial, at every report step, what optimize_batched scored it: the comparison differs only by
    the trials each search tried."""
    from benchmarks.optuna_speed import plain_objective

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    trials = optimize_batched(study, task, 5, batch_size=5, steps=30, seed=2, rungs=rungs)
    objective = plain_objective(task, 30, rungs, seed=2)
    for t in trials:
        replay = optuna.create_study(pruner=optuna.pruners.NopPruner())
        replay.enqueue_trial(t.params)
        replay.optimize(objective, n_trials=1)
        again = replay.trials[0]
        assert again.params == t.params
        assert again.value == pytest.approx(t.value, rel=1e-4)  # float32 sums in another order, 30 steps
        assert again.intermediate_values.keys() == {r: 0 for r in rungs}.keys()
        for r in rungs:
            assert again.intermediate_values[r] == pytest.approx(t.intermediate_values[r], rel=1e-4)
