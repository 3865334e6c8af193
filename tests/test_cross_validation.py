"""Cross-validated scoring (``folds=``): the cuts partition the train rows, every tuner scores a candidate by
its mean over the cuts and returns the model trained on the task's own split, a candidate that diverges on one
cut is never the pick, killed runs resume, bad input names itself."""
import math

import pytest
import torch

from metahp_fast import SearchSpace
from metahp_fast.tasks import load_task
from metahp_fast.training import TrainConfig, fit, make_population
from metahp_fast.tuners import PBT, TUNERS, RandomSearch, SuccessiveHalving, copy_candidates
from metahp_fast.tuners.cross_validation import FoldedPopulation, fold_tasks
from tests.single_thread import one_thread  # noqa: F401  (autouse)

SMALL = dict(hidden=(16,), steps=40, batch_size=64, backend="torch")


@pytest.fixture(scope="module")
def task():
    return load_task("gaussian_mixture:n_samples=301,n_features=5,n_classes=3,noise=1.5", seed=0)


def _rows(x):
    return {tuple(r.tolist()) for r in x}


@pytest.mark.parametrize("folds", [2, 4, 5])
def test_the_cuts_hold_out_stratified_validation_sized_parts_of_the_train_rows(task, folds):
    cuts = fold_tasks(task, folds, seed=3)
    assert len(cuts) == folds and cuts[0] is task
    n_train, n_val = len(task.y_train), len(task.y_val)
    train, everything = _rows(task.x_train), _rows(task.x_train) | _rows(task.x_val)
    held = [_rows(c.x_val) for c in cuts[1:]]
    assert all(h <= train and len(h) == n_val for h in held)
    if (folds - 1) * n_val <= n_train:  # disjoint parts (181 train and 60 validation rows: up to 4 folds)
        assert len(set().union(*held)) == (folds - 1) * n_val
    else:  # overlapping parts that cover the train split
        assert set().union(*held) == train
    lookup = {tuple(r.tolist()): int(y) for r, y in zip(torch.cat([task.x_train, task.x_val]),
                                                         torch.cat([task.y_train, task.y_val]))}
    share = torch.bincount(task.y_train, minlength=task.n_classes) / n_train
    for c, h in zip(cuts[1:], held):
        assert _rows(c.x_train) == everything - h and len(c.x_train) == n_train  # as many rows as the own split
        assert torch.equal(c.x_test, task.x_test) and torch.equal(c.y_test, task.y_test)
        counts = torch.bincount(c.y_val, minlength=task.n_classes)
        assert ((counts - share * n_val).abs() <= 1).all()  # stratified: each class's share, within a row
        assert all(lookup[tuple(r.tolist())] == int(y) for r, y in zip(c.x_val, c.y_val))  # labels kept
        assert all(lookup[tuple(r.tolist())] == int(y) for r, y in zip(c.x_train, c.y_train))
    again = fold_tasks(task, folds, seed=3)
    assert all(torch.equal(a.x_val, b.x_val) for a, b in zip(cuts, again))
    other = fold_tasks(task, folds, seed=4)
    assert not torch.equal(other[1].x_val, cuts[1].x_val)


def test_a_cross_validated_candidate_is_scored_by_its_mean_over_the_cuts(task):
    folds, n = 3, 4
    res = RandomSearch(folds=folds, **SMALL).run(task, folds * n, seed=1)
    assert res.cost_steps == folds * n * SMALL["steps"] and len(res.trials) == n
    assert res.config["folds"] == folds
    # the same candidates trained by hand on every cut, from the run's initial weights and batches
    space = SearchSpace.default("sgd")
    u = torch.stack([space.to_unconstrained({k: torch.tensor([t["hparams"][k]], dtype=torch.float64)
                                             for k in space.names})[0] for t in res.trials])
    cfg = TrainConfig(**{k: v for k, v in SMALL.items()})
    from metahp_fast.tuners.base import TuningRun
    run = TuningRun(RandomSearch(folds=folds, **SMALL), task, folds * n, 1, None)
    losses = []
    for cut in run.cuts:
        pop = make_population(task, space, u.float(), cfg, seed=1)
        rounds = [cfg.every] * (SMALL["steps"] // cfg.every)
        for r, s in enumerate(rounds):
            h = fit(pop, cut, s, cfg, run.seed_for(r))
        losses.append(h["val_loss"][-1].double())
    mean = torch.stack(losses).mean(0)
    assert torch.allclose(torch.tensor([t["val_loss"] for t in res.trials], dtype=torch.float64), mean, rtol=1e-5)
    j = int(mean.argmin())
    assert res.best_id == res.trials[j]["id"] and res.best_val["loss"] == pytest.approx(float(mean[j]), rel=1e-5)
    # and its model is the one trained on the task's own train split (cut 0), not a mean of anything
    own = make_population(task, space, u[j:j + 1].float(), cfg, seed=1)
    for r, s in enumerate(rounds):
        fit(own, task, s, cfg, run.seed_for(r))
    for p, q in zip(res.best_model.parameters(), own.to_module(0).parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_one_fold_is_the_plain_validation_split(task):
    a = SuccessiveHalving(**SMALL).run(task, 8, seed=2)
    b = SuccessiveHalving(folds=1, **SMALL).run(task, 8, seed=2)
    assert a.best_hparams == b.best_hparams and [t["val_loss"] for t in a.trials] == \
        [t["val_loss"] for t in b.trials]


def test_a_candidate_that_diverges_on_one_cut_is_never_the_pick(task, monkeypatch):
    """Candidate 0 diverges on the second cut only (its loss there set to nan): its mean reads inf, the others
    are untouched."""
    from metahp_fast.tuners import base
    real_fit = base.fit

    def fit_one_cut_diverging(pop, cut, steps, config, seed):
        h = real_fit(pop, cut, steps, config, seed)
        if "(cut 1)" in cut.name:
            h["val_loss"][:, 0] = math.nan
        return h
    clean = RandomSearch(folds=2, **SMALL).run(task, 8, seed=5)
    monkeypatch.setattr(base, "fit", fit_one_cut_diverging)
    res = RandomSearch(folds=2, **SMALL).run(task, 8, seed=5)
    first = min(t["id"] for t in res.trials)
    objective = {t["id"]: t["objective"] for t in res.trials}
    assert objective[first] == math.inf and res.best_id != first
    assert [t["val_loss"] for t in res.trials][1:] == [t["val_loss"] for t in clean.trials][1:]


@pytest.mark.parametrize("name, budget", [("sh", 16), ("hyperband", 24), ("pbt", 8), ("es", 14), ("random", 6)])
def test_folds_plan_the_candidates_of_budget_over_folds_at_folds_times_the_cost(task, name, budget):
    """folds=2 at budget 2B trains the schedule of folds=1 at budget B (the same first candidates, the same
    rung sizes) on both cuts: exactly twice the candidate-steps."""
    cv = TUNERS[name](folds=2, **SMALL).run(task, budget, seed=0)
    plain = TUNERS[name](**SMALL).run(task, budget / 2, seed=0)
    assert cv.cost_steps == 2 * plain.cost_steps <= budget * SMALL["steps"]
    assert len(cv.trials) == len(plain.trials)
    first = [t["hparams"] for t in plain.trials if t["id"] == 0]
    assert [t["hparams"] for t in cv.trials if t["id"] == 0] == first
    assert [h["population"] for h in cv.history if "population" in h] == \
        [h["population"] for h in plain.history if "population" in h]


def test_pbt_exploit_copies_every_cut(task):
    space = SearchSpace.default("sgd")
    cfg = TrainConfig(**SMALL)
    u = space.sample_u(4, seed=0).float()
    pops = FoldedPopulation([make_population(task, space, u, cfg, seed=s) for s in (0, 1)])
    copy_candidates(pops, torch.tensor([0]), torch.tensor([3]))
    for p in pops.pops:
        assert all(torch.equal(t[3], t[0]) for t in p.params)
    assert not torch.equal(pops.pops[0].params[0][0], pops.pops[1].params[0][0])  # the cuts stay apart
    sel = pops.select([1, 3])
    assert isinstance(sel, FoldedPopulation) and sel.size == 2 and len(sel.pops) == 2


def test_a_checkpoint_with_other_folds_is_refused(task, tmp_path):
    """Killed runs resume with folds (tests/test_tuners.py, sh-folds and pbt-folds); another folds is another run."""
    ckpt = tmp_path / "cv.ckpt"
    SuccessiveHalving(folds=3, **SMALL).run(task, 18, seed=2, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"different run .*folds"):
        SuccessiveHalving(folds=2, **SMALL).run(task, 18, seed=2, checkpoint=ckpt)


@pytest.mark.parametrize("folds", [0, -1, 1.5, True, "4", None])
def test_bad_folds_are_named(folds):
    with pytest.raises(ValueError, match="folds must be an int >= 1"):
        RandomSearch(folds=folds, **SMALL)


def test_a_budget_too_small_for_the_folds_says_so(task):
    with pytest.raises(ValueError, match=r"budget=2 with folds=4 .*0.5"):
        SuccessiveHalving(folds=4, **SMALL).check_budget(2)
    with pytest.raises(ValueError, match="folds=4 every candidate costs 4 trainings"):
        TUNERS["es"](folds=4, **SMALL).check_budget(20)
    with pytest.raises(ValueError, match=r"budget must be >= 8.*folds=4"):
        PBT(folds=4, **SMALL).check_budget(4)


def test_too_few_train_rows_for_the_folds_is_refused(task):
    import dataclasses
    tiny = dataclasses.replace(task, x_train=task.x_train[:1], y_train=task.y_train[:1])
    with pytest.raises(ValueError, match=r"folds=3 needs at least 2 train rows"):
        RandomSearch(folds=3, **SMALL).run(tiny, 6, seed=0)


def test_objective_error_is_the_mean_error_over_the_cuts(task, monkeypatch):
    """Cut 1's validation accuracy forced to 1 in one run and to 0 in another: every candidate's error objective
    differs by exactly 1/2 between them (the cuts weigh alike), and equals 1 - the reported mean accuracy."""
    from metahp_fast.tuners import base
    real_fit = base.fit

    def forcing(value):
        def fit_forced(pop, cut, steps, config, seed):
            h = real_fit(pop, cut, steps, config, seed)
            if "(cut 1)" in cut.name:
                h["val_accuracy"][:] = value
            return h
        return fit_forced
    runs = []
    for value in (1.0, 0.0):
        monkeypatch.setattr(base, "fit", forcing(value))
        runs.append(RandomSearch(folds=2, objective="error", **SMALL).run(task, 6, seed=0))
    right, wrong = ({t["id"]: t for t in r.trials} for r in runs)
    assert right.keys() == wrong.keys() and len(right) == 3
    for i in right:
        assert wrong[i]["objective"] - right[i]["objective"] == pytest.approx(0.5)
        assert right[i]["objective"] == pytest.approx(1 - right[i]["val_accuracy"])


def test_a_regression_task_gets_unstratified_cuts_of_the_same_sizes():
    from metahp_fast.tasks import from_arrays
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(203, 5, generator=gen)
    task = from_arrays(x, 2 * x[:, 0] + 0.1 * torch.randn(203, generator=gen), kind="regression")
    cuts = fold_tasks(task, 3, seed=1)
    for c in cuts[1:]:
        assert len(c.y_train) == len(task.y_train) and len(c.y_val) == len(task.y_val)
        assert c.y_train.dtype == task.y_train.dtype and c.y_train.shape[1:] == task.y_train.shape[1:]
    res = SuccessiveHalving(folds=3, **SMALL).run(task, 18, seed=0)
    assert math.isfinite(res.best_val["loss"]) and res.cost_steps <= 18 * SMALL["steps"]
