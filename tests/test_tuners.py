"""Tuners: one interface, budgets respected, halving shrinks the batch, PBT's exploit copies state, ES moves
downhill, runs are deterministic and resume from checkpoints, bad input names itself."""
import math

import pytest
import torch
from torch import nn

from metahp_fast import LogUniform, Population, SearchSpace, Uniform
from metahp_fast.tasks import load_task
from metahp_fast.training import make_population
from metahp_fast.objectives import objective_values, model_metrics
from metahp_fast.tuners import (PBT, TPE, TUNERS, ESGradient, Hyperband, RandomSearch, SuccessiveHalving,
                                copy_candidates, optuna_available, rung_plan)
from tests.single_thread import one_thread  # noqa: F401  (autouse)
from tests.util import killed_after

SMALL = dict(hidden=(16,), steps=40, batch_size=64, backend="torch")


@pytest.fixture(scope="module")
def task():
    return load_task("gaussian_mixture:n_samples=300,n_features=4,n_classes=3,noise=1.5", seed=0)


def _make(name, **kw):
    if name == "tpe":
        pytest.importorskip("optuna")
    return TUNERS[name](**{**SMALL, **kw})


@pytest.mark.parametrize("name", ["random", "sh", "hyperband", "pbt", "es", "tpe"])
def test_every_tuner_returns_a_result_its_model_reproduces(task, name):
    budget = 6 if name == "tpe" else 12
    res = _make(name).run(task, budget, seed=1)
    assert res.method == name and res.task == task.name
    assert 0 < res.cost_steps <= budget * SMALL["steps"] and res.seconds > 0
    assert set(res.best_hparams) == {"lr", "momentum", "weight_decay"}
    assert all(isinstance(v, float) for v in res.best_hparams.values())
    space = SearchSpace.default("sgd")
    for k, v in res.best_hparams.items():
        lo, hi = space[k].bounds()
        assert lo <= v <= hi
    assert isinstance(res.best_model, nn.Sequential)
    with torch.no_grad():
        out = res.best_model(task.x_val)
    assert nn.functional.cross_entropy(out, task.y_val).item() == pytest.approx(res.best_val["loss"], rel=1e-5)
    assert res.best_val["loss"] == min(t["val_loss"] for t in res.trials if t["steps"] >= SMALL["steps"])
    assert res.history and res.history[-1]["cost"] == res.cost_steps
    assert res.best_id in res.curves and res.curves[res.best_id][-1][0] == SMALL["steps"]


def test_rung_plan_fits_the_budget_and_is_as_large_as_it_can_be():
    for budget, steps, eta, rungs in [(64, 300, 3, 4), (16, 40, 2, 3), (5, 27, 3, 4), (1, 10, 3, 1)]:
        plan = rung_plan(budget, steps, eta, rungs)
        ts = [t for _, t in plan]
        assert ts[-1] == steps and ts == sorted(ts)
        cost = lambda p: sum(n * (t - t0) for (n, t), t0 in zip(p, [0] + [t for _, t in p][:-1]))  # noqa: E731
        assert cost(plan) <= budget * steps
        bigger = [(max(1, (plan[0][0] + 1) // eta ** i), t) for i, (_, t) in enumerate(plan)]
        assert cost(bigger) > budget * steps
    assert rung_plan(64, 300, 3, 4) == [(584, 11), (194, 33), (64, 100), (21, 300)]
    with pytest.raises(ValueError, match="budget=0.5 is too small"):
        rung_plan(0.5, 300, 3, 4)


def test_successive_halving_drops_candidates_and_keeps_the_best(task):
    res = _make("sh", eta=2, rungs=3).run(task, 8, seed=0)
    plan = rung_plan(8, SMALL["steps"], 2, 3)
    sizes = [h["population"] for h in res.history]
    assert sizes == [n for n, _ in plan] and sizes[0] > sizes[-1]
    assert res.cost_steps == sum(n * (t - t0) for (n, t), t0 in zip(plan, [0] + [t for _, t in plan][:-1]))
    for r, (n, t) in enumerate(plan[:-1]):
        entered = [tr["id"] for tr in res.trials if tr["rung"] >= r]
        went_on = {tr["id"] for tr in res.trials if tr["rung"] > r}
        assert len(entered) == n and len(went_on) == plan[r + 1][0]
        # the survivors of rung r had the lowest validation losses at its end (the learning curves hold them)
        at_end = {i: dict((s, v) for s, v in res.curves[i])[t] for i in entered}
        assert max(at_end[i] for i in went_on) <= min(at_end[i] for i in entered if i not in went_on)


def test_hyperband_runs_every_bracket_within_the_budget(task):
    res = _make("hyperband", eta=2, rungs=3).run(task, 12, seed=0)
    assert sorted({h["bracket"] for h in res.history}) == [0, 1, 2]
    assert [h["rung"] for h in res.history] == [0, 1, 2, 0, 1, 0]
    assert res.cost_steps <= 12 * SMALL["steps"]


def test_copy_candidates_copies_weights_optimizer_state_and_step_counts():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, generator=gen), torch.randint(0, 2, (32,), generator=gen)
    pop = Population([3, 5, 2], 4, "adamw", {"lr": torch.tensor([0.01, 0.02, 0.03, 0.04])}, init="independent")
    for _ in range(3):
        pop.step(x, y)
    pop.step(x[:8], y[:8], lr=torch.tensor([0.01, 0.02, 0.0, 0.04]))
    copy_candidates(pop, torch.tensor([1, 1]), torch.tensor([3, 0]))
    for t in [*pop.params, *pop.optimizer_state["exp_avg"], *pop.optimizer_state["exp_avg_sq"]]:
        assert torch.equal(t[3], t[1]) and torch.equal(t[0], t[1])
    assert pop.step_count.tolist() == [4, 4, 4, 4]
    # with equal hyperparameters, copies then train identically to their source (AdamW state included)
    pop.hparams["lr"] = torch.full((4,), 0.02)
    pop.step(x, y)
    assert torch.equal(pop.params[0][3], pop.params[0][1]) and not torch.equal(pop.params[0][2], pop.params[0][1])
    with pytest.raises(ValueError, match="src and dst"):
        copy_candidates(pop, torch.tensor([0]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="dst must be distinct"):
        copy_candidates(pop, torch.tensor([0, 1]), torch.tensor([2, 2]))


def test_pbt_exploits_and_explores(task):
    res = _make("pbt", rounds=4, fraction=0.25).run(task, 8, seed=0)
    assert [h.get("exploited") for h in res.history] == [2, 2, 2, None]
    assert len(res.trials) == 8 + 3 * 2  # every exploit starts a new candidate
    assert res.cost_steps == 8 * SMALL["steps"]
    children = [i for i in res.curves if i >= 8]
    assert children and all(res.curves[i][0][0] > 0 for i in children)  # their curves start at the parent's step


def test_pbt_revives_diverged_candidates_by_copying_the_best(task):
    space = SearchSpace({"lr": LogUniform(1e-2, 1e9), "momentum": Uniform(0.0, 0.9),
                         "weight_decay": LogUniform(1e-6, 1e-3)}, optimizer="sgd")
    res = PBT(space, rounds=4, fraction=0.5, **SMALL).run(task, 8, seed=0)
    assert any(math.isinf(t["val_loss"]) for t in res.trials)
    final = [t for t in res.trials if t["steps"] == SMALL["steps"]]
    assert sum(math.isfinite(t["val_loss"]) for t in final) > sum(
        math.isfinite(t["val_loss"]) for t in res.trials if t["id"] < 8 and t["steps"] == 10)


def test_es_gradient_moves_the_center_downhill(task):
    space = SearchSpace({"lr": LogUniform(1e-4, 1.0), "momentum": Uniform(0.0, 0.9),
                         "weight_decay": LogUniform(1e-6, 1e-3)}, optimizer="sgd")
    init = space.to_unconstrained({"lr": 3e-4, "momentum": 0.5, "weight_decay": 1e-5})[0]
    res = ESGradient(space, init=init, n_pairs=3, sigma=0.5, lr=0.5, **SMALL).run(task, 28, seed=0)
    centers = [h["center"] for h in res.history]
    assert centers[0] == pytest.approx(init.tolist())
    assert len(centers) == 4  # 28 // (2 * 3 + 1)
    assert centers[-1][0] > centers[0][0] + 1.0  # the learning rate grew: too small a one learns too slowly
    objs = [h["center_objective"] for h in res.history]
    assert objs[-1] < objs[0]


@pytest.mark.parametrize("name", ["random", "sh", "hyperband", "pbt", "es", "tpe"])
def test_every_trial_stays_inside_a_narrow_space(task, name):
    """No tuner trains a candidate outside the user's ranges, even when its moves (ES's antithetic pairs
    around a center near an end, PBT's explore step) would step past one: ES once picked lr=0.129 in a space
    capped at 0.05."""
    space = SearchSpace.default("sgd").with_ranges({"lr": (1e-3, 0.05), "weight_decay": (1e-6, 1e-3)})
    budget = {"es": 21, "pbt": 8}.get(name, 8)
    kw = {"sigma": 1.5, "lr": 1.0} if name == "es" else {}
    res = _make(name, space=space, **kw).run(task, budget, seed=1)
    for t in res.trials:
        for hp, v in t["hparams"].items():
            if hp in ("lr", "weight_decay", "momentum"):
                low, high = space[hp].bounds()
                assert low * (1 - 1e-6) <= v <= high * (1 + 1e-6), (t["id"], hp, v)
    assert res.best_hparams["lr"] <= 0.05 * (1 + 1e-6)


def test_init_warm_starts_the_first_candidate(task):
    space = SearchSpace.default("sgd")
    init = space.to_unconstrained({"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4})[0]
    res = RandomSearch(init=init, init_spread=0.1, init_mix=0.0, **SMALL).run(task, 4, seed=0)
    first = min(res.trials, key=lambda t: t["id"])
    assert first["hparams"]["lr"] == pytest.approx(0.05, rel=1e-6)
    assert first["hparams"]["momentum"] == pytest.approx(0.9, rel=1e-6)
    lrs = [t["hparams"]["lr"] for t in res.trials]
    assert max(lrs) / min(lrs) < math.exp(4 * 0.1)  # all near the warm start
    pytest.importorskip("optuna")
    tpe = TPE(init=init, **SMALL).run(task, 2, seed=0)
    assert min(tpe.trials, key=lambda t: t["id"])["hparams"]["lr"] == pytest.approx(0.05, rel=1e-6)


def test_init_takes_natural_values_and_refuses_what_it_cannot_center_on(task):
    space = SearchSpace.default("sgd")
    natural = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}
    res = RandomSearch(init=natural, init_mix=0.0, **SMALL).run(task, 2, seed=0)
    first = min(res.trials, key=lambda t: t["id"])["hparams"]
    assert first == pytest.approx(natural, rel=1e-6)
    assert torch.allclose(RandomSearch(init=natural).init, space.to_unconstrained(natural)[0])
    with pytest.raises(ValueError, match=r"init: .*needs \['lr', 'momentum', 'weight_decay'\]"):
        RandomSearch(init={"lr": 0.05})
    with pytest.raises(ValueError, match="init must be one u vector \\(3,\\), the center; got 2 rows"):
        RandomSearch(init=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])  # its second row was silently dropped
    with pytest.raises(TypeError, match="init must be a u vector"):
        RandomSearch(init="fast")


def test_a_meta_learner_that_fixes_a_tuned_hyperparameter_centers_it_at_that_value(task):
    """A learner whose space fixes momentum warm-starts a tuner that tunes it, at the fixed value (it raised a
    KeyError mid-run)."""
    from metahp_fast import Fixed
    from metahp_fast.meta import MetaLearner
    space = SearchSpace({"lr": LogUniform(1e-3, 1.0), "momentum": Fixed(0.8),
                         "weight_decay": LogUniform(1e-6, 1e-2)}, optimizer="sgd")
    res = RandomSearch(init=MetaLearner(space=space), init_mix=0.0, **SMALL).run(task, 2, seed=0)
    assert min(res.trials, key=lambda t: t["id"])["hparams"]["momentum"] == pytest.approx(0.8, rel=1e-6)


def test_a_warm_start_at_the_end_of_a_range_spreads_inside_it_without_copies(task):
    """Draws around a center at lr's upper end fold back inside the range (reflected, not clamped), so the
    initial candidates are distinct configurations, not several copies of the end point."""
    space = SearchSpace.default("sgd")
    top = space["lr"].high
    init = space.to_unconstrained({"lr": top, "momentum": 0.5, "weight_decay": 1e-4})[0]
    res = RandomSearch(init=init, init_spread=0.5, init_mix=0.0, **SMALL).run(task, 12, seed=0)
    lrs = [t["hparams"]["lr"] for t in sorted(res.trials, key=lambda t: t["id"])]
    assert lrs[0] == pytest.approx(top, rel=1e-6)  # the first exactly at the center
    assert all(space["lr"].low <= v <= top * (1 + 1e-6) for v in lrs)
    assert sum(v == pytest.approx(top, rel=1e-6) for v in lrs) == 1 and len(set(lrs)) == len(lrs)
    # the fold itself: a draw past an end lands as far inside it; a draw past both ends is clamped
    from metahp_fast.search_space import u_bounds
    from metahp_fast.tuners.base import TuningRun
    run = TuningRun.__new__(TuningRun)
    run.space = space
    lo, hi = u_bounds(space)
    u = torch.stack([hi + 0.25, lo - 0.5, (lo + hi) / 2, hi + 10 * (hi - lo)])
    folded = run.reflect_u(u)
    assert torch.allclose(folded[0], hi - 0.25) and torch.allclose(folded[1], lo + 0.5)
    assert torch.equal(folded[2], u[2]) and bool(((folded[3] >= lo) & (folded[3] <= hi)).all())


def test_init_mix_draws_a_share_of_the_candidates_from_the_space(task):
    """By default half the initial candidates hedge against a poor warm start: drawn from the whole space,
    exactly the draws a run without ``init`` makes for those slots; the rest stay near the center."""
    space = SearchSpace.default("sgd")
    init = space.to_unconstrained({"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4})[0]
    warm = RandomSearch(init=init, init_spread=0.1, **SMALL).run(task, 8, seed=0)
    cold = RandomSearch(**SMALL).run(task, 8, seed=0)
    lr = {t["id"]: t["hparams"]["lr"] for t in warm.trials}
    near = [lr[i] for i in range(4)]
    assert near[0] == pytest.approx(0.05, rel=1e-6) and max(near) / min(near) < math.exp(4 * 0.1)
    cold_lr = {t["id"]: t["hparams"]["lr"] for t in cold.trials}
    assert [lr[i] for i in range(4, 8)] == pytest.approx([cold_lr[i] for i in range(4, 8)], rel=1e-6)
    for bad in (1.0, -0.1, "half", True):
        with pytest.raises(ValueError, match="init_mix"):
            RandomSearch(init=init, init_mix=bad, **SMALL)


def test_runs_are_deterministic_by_seed(task):
    a, b = SuccessiveHalving(**SMALL).run(task, 6, seed=3), SuccessiveHalving(**SMALL).run(task, 6, seed=3)
    assert a.best_hparams == b.best_hparams and a.trials == b.trials
    for p, q in zip(a.best_model.parameters(), b.best_model.parameters()):
        assert torch.equal(p, q)
    c = SuccessiveHalving(**SMALL).run(task, 6, seed=4)
    assert c.best_hparams != a.best_hparams


@pytest.mark.parametrize("name, budget, kill_after, kw", [
    ("random", 4, 3, {}), ("sh", 6, 1, {}), ("pbt", 4, 2, {}), ("es", 20, 1, {}), ("hyperband", 6, 2, {}),
    ("tpe", 3, 1, {}), ("sh", 18, 1, {"folds": 3}), ("pbt", 8, 2, {"folds": 2})],
    ids=["random", "sh", "pbt", "es", "hyperband", "tpe", "sh-folds", "pbt-folds"])
def test_a_killed_run_resumes_from_its_checkpoint(task, tmp_path, monkeypatch, name, budget, kill_after, kw):
    full = _make(name, **kw).run(task, budget, seed=2)
    ckpt = tmp_path / "run.ckpt"
    killed_after(monkeypatch, TUNERS[name], kill_after,
                 lambda: _make(name, **kw).run(task, budget, seed=2, checkpoint=ckpt))
    assert ckpt.exists()
    resumed = _make(name, **kw).run(task, budget, seed=2, checkpoint=ckpt)
    assert resumed.best_hparams == full.best_hparams and resumed.cost_steps == full.cost_steps
    assert [t["val_loss"] for t in resumed.trials] == [t["val_loss"] for t in full.trials]
    for p, q in zip(resumed.best_model.parameters(), full.best_model.parameters()):
        assert torch.equal(p, q)
    assert len(resumed.history) == len(full.history)


def test_a_checkpoint_of_another_run_is_refused(task, tmp_path):
    ckpt = tmp_path / "c.pt"
    RandomSearch(**SMALL).run(task, 2, seed=0, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"checkpoint .* different run .*budget"):
        RandomSearch(**SMALL).run(task, 3, seed=0, checkpoint=ckpt)
    ckpt.write_text("garbage")
    with pytest.raises(ValueError, match="checkpoint .* cannot be read"):
        RandomSearch(**SMALL).run(task, 2, seed=0, checkpoint=ckpt)


def test_a_checkpoint_made_on_other_data_of_the_same_shape_is_refused(tmp_path):
    """The task's fingerprint covers its rows and labels: other data of the same shape, the same features with
    flipped labels or with swapped columns all refuse the checkpoint (they once resumed and returned the first
    run's result); the checkpoint still resumes on its own data."""
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = (x[:, 0] > 0).astype(int)
    ckpt = tmp_path / "c.pt"
    first = RandomSearch(**SMALL).run((x, y), 4, seed=0, checkpoint=ckpt)
    for other in ((rng.normal(size=(200, 6)) * 50 + 7, y), (x, 1 - y), (x[:, ::-1].copy(), y)):
        with pytest.raises(ValueError, match=r"different run \(differs in \['task'\]\)"):
            RandomSearch(**SMALL).run(other, 4, seed=0, checkpoint=ckpt)
    again = RandomSearch(**SMALL).run((x, y), 4, seed=0, checkpoint=ckpt)  # its own data still resumes
    assert again.best_val == first.best_val and again.trials == first.trials


@pytest.mark.parametrize("name, budget, kw", [("sh", 6, {}), ("pbt", 4, {}), ("es", 7, {"n_pairs": 3}),
                                              ("tpe", 2, {}), ("hyperband", 6, {}), ("random", 4, {"folds": 2})])
def test_a_checkpoint_is_a_safe_file_of_plain_values(task, tmp_path, name, budget, kw):
    """Every tuner's checkpoint loads with torch.load(weights_only=True): tensors and JSON-compatible values only
    (populations as state dicts, the dtype as a string), so resuming one can never run code."""
    from metahp_fast.files import load_file
    from metahp_fast.tuners.checkpoint import CHECKPOINT_VERSION
    ckpt = tmp_path / "c.pt"
    _make(name, **kw).run(task, budget, seed=0, checkpoint=ckpt)
    raw = torch.load(ckpt, weights_only=True)
    assert raw["kind"] == "tuner-checkpoint" and raw["header"]["version"] == CHECKPOINT_VERSION == 4
    assert raw["header"]["config"]["dtype"] == "float32" and raw["header"]["method"] == name

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, (str, int)) and plain(x) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        return isinstance(v, (torch.Tensor, str, int, float, bool, type(None)))
    assert plain(raw)
    state = load_file(ckpt, "tuner-checkpoint")["state"]
    assert state["done"] is True and state["best"]["pop"]["params"][0].dtype == torch.float32


def test_an_old_or_pickled_checkpoint_is_refused_with_what_to_do(task, tmp_path):
    """Checkpoints from before safe files (version 1, a plain torch.save) are refused, not read through shims;
    one holding pickled objects is refused without being unpickled."""
    from metahp_fast.tuners.checkpoint import CHECKPOINT_VERSION
    ckpt = tmp_path / "old.pt"
    torch.save({"header": {"version": 1, "method": "random"}, "state": {"done": False, "round": 0}}, ckpt)
    with pytest.raises(ValueError, match=rf"earlier metahp_fast \(checkpoint version 1; this one resumes version "
                                         rf"{CHECKPOINT_VERSION}\); "
                                         r"delete it to start over"):
        RandomSearch(**SMALL).run(task, 2, seed=0, checkpoint=ckpt)
    torch.save({"header": {"version": 1}, "state": {"model": torch.nn.Linear(2, 2)}}, ckpt)
    with pytest.raises(ValueError, match="holds pickled Python objects, which could run code"):
        RandomSearch(**SMALL).run(task, 2, seed=0, checkpoint=ckpt)


def test_a_checkpoint_made_with_the_space_in_another_order_is_refused(task, tmp_path):
    """The order of a space's hyperparameters fixes the columns of u: a run resumed with them reordered would
    read every candidate's u wrongly."""
    a = SearchSpace.default("sgd")
    b = SearchSpace({k: a[k] for k in reversed(a.names)}, optimizer="sgd")
    ckpt = tmp_path / "c.pt"
    RandomSearch(a, **SMALL).run(task, 2, seed=0, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"different run \(differs in \['order'\]\)"):
        RandomSearch(b, **SMALL).run(task, 2, seed=0, checkpoint=ckpt)


def test_error_objective_picks_by_accuracy(task):
    res = RandomSearch(objective="error", **SMALL).run(task, 6, seed=0)
    assert res.best_val["accuracy"] == max(t["val_accuracy"] for t in res.trials)
    assert model_metrics(res.best_model, task)["accuracy"] >= 0


def test_objective_values_treat_diverged_as_infinite():
    m = {"loss": torch.tensor([0.5, math.inf]), "accuracy": torch.tensor([0.75, math.nan])}
    assert objective_values(m, "loss").tolist() == [0.5, math.inf]
    assert objective_values(m, "error").tolist() == [0.25, math.inf]


def test_all_diverged_raises_a_clear_error(task):
    space = SearchSpace({"lr": LogUniform(1e6, 1e7)}, optimizer="sgd")
    with pytest.raises(RuntimeError, match="every candidate diverged"):
        RandomSearch(space, **SMALL).run(task, 2, seed=0)


def test_tuners_accept_arrays_and_names(task):
    res = RandomSearch(**SMALL).run((task.x_train.numpy(), task.y_train.numpy()), 2, seed=0)
    assert res.task == "user"
    assert RandomSearch(**{**SMALL, "steps": 5}).run("iris", 2, seed=0).task == "iris"


def test_make_population_shares_initial_weights(task):
    space = SearchSpace.default("sgd")
    u = space.to_unconstrained({k: v for k, v in space.sample(3, seed=0).items()})
    from metahp_fast.training import TrainConfig
    pop = make_population(task, space, u, TrainConfig(hidden=(4,)), seed=0)
    assert torch.equal(pop.params[0][0], pop.params[0][2])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(budget=0), ValueError, "budget"),
    (dict(budget=math.nan), ValueError, "budget"),
    (dict(budget="64"), ValueError, "budget"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(task_or_data=[1, 2]), TypeError, "task_or_data"),
], ids=["budget0", "budget_nan", "budget_str", "seed", "data"])
def test_bad_run_arguments(task, kwargs, exc, match):
    args = {"task_or_data": task, "budget": 4, "seed": 0, **kwargs}
    with pytest.raises(exc, match=match):
        RandomSearch(**SMALL).run(**args)


def test_bad_tuner_options():
    with pytest.raises(ValueError, match="init must have shape \\(3,\\)"):
        RandomSearch(init=[0.0, 1.0])
    with pytest.raises(ValueError, match="init must hold finite"):
        RandomSearch(init=[0.0, math.inf, 1.0])
    with pytest.raises(ValueError, match="space is for optimizer 'adamw'"):
        RandomSearch(SearchSpace.default("adamw"), optimizer="sgd")
    with pytest.raises(ValueError, match="objective"):
        RandomSearch(objective="accuracy")
    with pytest.raises(ValueError, match="eta"):
        SuccessiveHalving(eta=1)
    with pytest.raises(ValueError, match="rungs"):
        Hyperband(rungs=0)
    with pytest.raises(ValueError, match="fraction"):
        PBT(fraction=0.7)
    with pytest.raises(ValueError, match="sigma"):
        ESGradient(sigma=-1.0)
    with pytest.raises(ValueError, match="hidden"):
        RandomSearch(hidden=(0,))
    with pytest.raises(ValueError, match="steps"):
        RandomSearch(steps=0)


def test_budget_too_small_for_the_method(task):
    with pytest.raises(ValueError, match="budget=4 is too small for ES with n_pairs=3"):
        ESGradient(**SMALL).run(task, 4, seed=0)
    # checked before any work: the dataset named here does not even exist
    for tuner, budget, said in ((ESGradient(**SMALL), 2, "too small for ES"),
                                (PBT(size=8, **SMALL), 4, "PBT trains"),
                                (SuccessiveHalving(**SMALL), 0.1, "too small for"),
                                (Hyperband(**SMALL), 3, "budget=3 is too small for Hyperband with rungs=4: its 4 "
                                 "brackets share the budget equally .* give at least 4$"),
                                (RandomSearch(**SMALL), 0, "positive"),
                                (RandomSearch(**SMALL), 0.5, "for random search: it trains whole candidates.* at least 1$"),
                                (RandomSearch(folds=2, **SMALL), 1.5, r"at least 2 \(with folds=2 every"),
                                (Hyperband(folds=2, **SMALL), 7, r"at least 8 \(with folds=2")):
        with pytest.raises(ValueError, match=said):
            tuner.run("no-such-dataset", budget, seed=0)
        with pytest.raises(ValueError, match=said):
            tuner.check_budget(budget)
    with pytest.raises(ValueError, match="PBT trains 8 candidates"):
        PBT(size=8, **SMALL).run(task, 4, seed=0)
    assert Hyperband(**SMALL).run(task, 4, seed=0).cost_steps <= 4 * SMALL["steps"]  # the least it takes
    if optuna_available():  # a fraction of a training never buys a TPE trial past the budget
        with pytest.raises(ValueError, match="for TPE: every trial trains one candidate the full steps; give at least 1"):
            TPE(**SMALL).check_budget(0.5)
    reg = load_task("teacher:n_classes=0,n_samples=100", seed=0)
    with pytest.raises(ValueError, match="objective='error' needs a classification task"):
        RandomSearch(objective="error", **SMALL).run(reg, 2, seed=0)


def test_tpe_without_optuna_says_how_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"the TPE tuner needs optuna: pip install 'metahp-fast\[tune\]'"):
        TPE()


def test_epochs_size_one_training_to_the_data(task):
    """epochs: ceil(epochs * train rows / batch) steps per full training, capped; the run trains exactly that."""
    n = len(task.y_train)
    t = RandomSearch(steps=7, batch_size=32, epochs=3)
    assert t.steps_for(task) == math.ceil(3 * n / 32)
    assert RandomSearch(batch_size=32, epochs=100, max_steps=50).steps_for(task) == 50
    assert RandomSearch(steps=7).steps_for(task) == 7
    res = t.run(task, 2, seed=0)
    assert res.config["steps"] == math.ceil(3 * n / 32) and res.config["epochs"] == 3
    assert all(tr["steps"] == res.config["steps"] for tr in res.trials)
    assert t.config.steps == 7  # the tuner itself is unchanged: it serves tasks of any size
    for bad in (dict(epochs=0), dict(epochs=-1.0), dict(epochs=float("inf")), dict(max_steps=0)):
        with pytest.raises(ValueError, match="epochs|max_steps"):
            RandomSearch(**bad)


@pytest.mark.parametrize("name", ["random", "sh", "pbt"])
def test_early_stopping_judges_each_candidate_at_its_best_evaluation(task, name):
    """With early_stopping, a candidate's objective is the best point of its own learning curve (what an
    independent for-loop over its evaluations finds), the best trial records that step, and refit('best')
    retrains the pick for it."""
    kw = dict(SMALL, steps=60, eval_every=10)
    plain = _make(name, **kw).run(task, 8, seed=5)
    early = _make(name, early_stopping=True, **kw).run(task, 8, seed=5)
    assert early.config["early_stopping"] is True and plain.config["early_stopping"] is False
    assert not any("best_step" in t for t in plain.trials)
    for t in early.trials:
        curve = [(s, v) for s, v in early.curves[t["id"]] if math.isfinite(v)]
        if name == "pbt":  # a child's curve starts with its parent's last point, not its own evaluation
            curve = curve[1:] if len(curve) > 1 and t["id"] >= 8 else curve
        best_step, best_loss = min(curve, key=lambda sv: sv[1])
        assert t["val_loss"] == pytest.approx(best_loss, rel=1e-6)
        assert t["best_step"] == best_step
    # the same training in both runs until selection differs: the early run's last values are never better
    first = {t["id"]: t for t in plain.trials}
    if name == "random":
        assert all(t["val_loss"] <= first[t["id"]]["val_loss"] + 1e-7 for t in early.trials)
    best = next(t for t in early.trials if t["id"] == early.best_id)
    refit = early.refit("best")
    rows = len(task.y_train) + len(task.y_val)
    assert refit.config["refit"]["chosen_step"] == best["best_step"]
    assert refit.config["refit"]["steps"] == max(1, round(best["best_step"] * rows / len(task.y_train)))


def test_early_stopping_resumes_from_a_checkpoint(task, tmp_path, monkeypatch):
    kw = dict(SMALL, early_stopping=True)
    full = SuccessiveHalving(**kw).run(task, 6, seed=2)
    ckpt = tmp_path / "run.ckpt"
    killed_after(monkeypatch, SuccessiveHalving, 1,
                 lambda: SuccessiveHalving(**kw).run(task, 6, seed=2, checkpoint=ckpt))
    with pytest.raises(ValueError, match="different run"):  # the setting is part of what a checkpoint belongs to
        SuccessiveHalving(**SMALL).run(task, 6, seed=2, checkpoint=ckpt)
    resumed = SuccessiveHalving(**kw).run(task, 6, seed=2, checkpoint=ckpt)
    assert resumed.trials == full.trials and resumed.best_hparams == full.best_hparams


def test_early_stopping_must_be_a_bool():
    with pytest.raises(ValueError, match="early_stopping must be True or False"):
        RandomSearch(early_stopping="yes")
