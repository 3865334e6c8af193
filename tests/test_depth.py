"""Depth as a searched dimension: candidates with different numbers of hidden layers train as a PopulationGroup
(one population per depth, the same minibatches, global candidate numbers), each exactly as a separate
population of its depth and as the reference backend would train it; tuners search, export, refit and resume it."""
import copy
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from metahp_fast import Population, SearchSpace
from metahp_fast.model_file import load_model
from metahp_fast.population_group import PopulationGroup, is_group_state
from metahp_fast.search_space import Fixed, IntUniform, Uniform
from metahp_fast.seeds import derive_seed
from metahp_fast.tasks import load_task
from metahp_fast.training import TrainConfig, make_population, population_from_state
from metahp_fast.tuners import PBT, RandomSearch, SuccessiveHalving
from tests.single_thread import one_thread  # noqa: F401  (autouse)
from tests.util import killed_after, random_batches, random_hparams, rel_err

BACKENDS = ["torch", "reference"]
try:  # the triton backend runs here under its interpreter (tests/conftest.py sets TRITON_INTERPRET=1)
    import triton  # noqa: F401
    if os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available():
        BACKENDS.append("triton")
except ImportError:
    pass

D_IN, HIDDEN, N_OUT = 11, 13, 5  # not multiples of any block size


def _layers(depth):
    return [D_IN] + [HIDDEN] * depth + [N_OUT]


def _group(depths, hp, optimizer, backend, dtype, loss="cross_entropy", seed=3):
    """The group of candidates with ``depths``, each member a population of its depth from ``seed``."""
    kw = {"precision": "ieee"} if backend == "triton" else {}

    def build(depth, rows):
        return Population(_layers(depth), len(rows), optimizer, {k: v[rows] for k, v in hp.items()}, loss=loss,
                          activation="tanh", seed=seed, dtype=dtype, backend=backend, **kw)
    return PopulationGroup.by_depth(depths, build)


def _setup(backend, optimizer, K=7, loss="cross_entropy"):
    dtype = torch.float32 if backend == "triton" else torch.float64
    gen = torch.Generator().manual_seed(hash((backend, optimizer, loss)) % 2 ** 31)
    depths = torch.tensor([2, 1, 3, 3, 1, 2, 3][:K])
    hp = {k: v.to(dtype) for k, v in random_hparams(optimizer, K, gen).items()}
    batches = random_batches(_layers(1), loss, 29, 6, gen, dtype)
    return dtype, depths, hp, batches


@pytest.mark.parametrize("backend,optimizer,loss", [(b, "sgd", "cross_entropy") for b in BACKENDS]
                         + [(b, "adamw", "mse") for b in BACKENDS if b != "triton"])  # the interpreter is slow
def test_each_candidate_trains_as_a_separate_population_of_its_depth(backend, optimizer, loss):
    """One group step per minibatch trains candidate k bit for bit as a separate population of its depth (same
    backend, seed and batches), and as the reference backend (torch.optim per candidate) would."""
    dtype, depths, hp, batches = _setup(backend, optimizer, loss=loss)
    group = _group(depths, hp, optimizer, backend, dtype, loss)
    assert group.size == 7 and group.depths.tolist() == depths.tolist()
    alone = {d: _group(torch.full(((depths == d).sum(),), d), {k: v[depths == d] for k, v in hp.items()},
                       optimizer, backend, dtype, loss) for d in (1, 2, 3)}
    ref = [_group(depths[k:k + 1], {n: v[k:k + 1] for n, v in hp.items()}, optimizer, "reference", torch.float64,
                  loss) for k in range(7)]
    for x, y in batches:
        losses = group.step(x, y)
        want = torch.empty(7, dtype=dtype)
        for d, pop in alone.items():
            want[depths == d] = pop.step(x, y)
        assert torch.equal(losses, want)
        for r in ref:
            r.step(x.double(), y if loss == "cross_entropy" else y.double())
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for k in range(7):
        d = int(depths[k])
        j = int((depths[:k] == d).sum())
        mine, sep, by_ref = group.to_module(k), alone[d].to_module(j), ref[k].to_module(0)
        assert len([m for m in mine if isinstance(m, nn.Linear)]) == d + 1
        for p, q, r in zip(mine.parameters(), sep.parameters(), by_ref.parameters()):
            assert torch.equal(p, q)
            assert rel_err(p, r) < tol


@pytest.mark.parametrize("backend", BACKENDS[:2])
def test_fit_matches_each_depth_trained_alone_with_schedules_and_early_stopping(backend):
    dtype, depths, hp, _ = _setup(backend, "adamw")
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(61, D_IN, generator=gen, dtype=dtype), torch.randint(0, N_OUT, (61,), generator=gen)
    xv, yv = torch.randn(23, D_IN, generator=gen, dtype=dtype), torch.randint(0, N_OUT, (23,), generator=gen)
    sched = torch.rand(9, 7, generator=gen, dtype=dtype) * 0.02
    group = _group(depths, hp, "adamw", backend, dtype)
    kw = dict(steps=9, batch_size=16, seed=4, progress=False, x_val=xv, y_val=yv, eval_every=3, keep_best="loss")
    hist = group.fit(x, y, lr_schedule=sched, **kw)
    assert hist["loss"].shape == (9, 7) and hist["val_loss"].shape == (3, 7) and hist["best_step"].shape == (7,)
    for d in (1, 2, 3):
        at = depths == d
        pop = _group(torch.full((int(at.sum()),), d), {k: v[at] for k, v in hp.items()}, "adamw", backend, dtype)
        h = pop.fit(x, y, lr_schedule=sched[:, at], **kw)
        for key in ("loss", "val_loss", "val_accuracy", "best_step", "best_val"):
            assert torch.equal(hist[key][..., at], h[key]), key
        for i, k in enumerate(at.nonzero().flatten().tolist()):
            for p, q in zip(group.to_module(k).parameters(), pop.to_module(i).parameters()):
                assert torch.equal(p, q)
    assert group.steps_done == 9
    # a callable schedule sees the global (K,) base rates and answers in global order
    a, b = _group(depths, hp, "adamw", backend, dtype), _group(depths, hp, "adamw", backend, dtype)
    a.fit(x, y, steps=4, batch_size=16, progress=False, lr_schedule=lambda t, base: base * (t + 1) / 4)
    b.fit(x, y, steps=4, batch_size=16, progress=False,
          lr_schedule=torch.stack([hp["lr"] * (t + 1) / 4 for t in range(4)]))
    for k in range(7):
        for p, q in zip(a.to_module(k).parameters(), b.to_module(k).parameters()):
            assert torch.equal(p, q)


def test_global_view_select_copy_and_state_dict():
    dtype, depths, hp, batches = _setup("torch", "sgd")
    group = _group(depths, hp, "sgd", "torch", dtype)
    torch.testing.assert_close(group.hparams["lr"], hp["lr"], rtol=0, atol=0)
    group.hparams = {"lr": torch.arange(1, 8, dtype=dtype) / 100}
    assert group.hparams["lr"].tolist() == pytest.approx([k / 100 for k in range(1, 8)])
    assert group.members[0].hparams["lr"].tolist() == pytest.approx([0.02, 0.05])  # depth 1: candidates 1, 4
    group.hparams["momentum"] = 0.5
    assert set(group.hparams["momentum"].tolist()) == {0.5}
    with pytest.raises(ValueError, match="unknown hyperparameter 'beta1'"):
        group.hparams["beta1"] = 0.9
    for x, y in batches[:3]:
        group.step(x, y)
    before = [group.to_module(k) for k in range(7)]
    x_val = batches[0][0]
    out = group.forward(x_val)
    for k in range(7):
        torch.testing.assert_close(out[k], before[k](x_val), rtol=0, atol=0)
    back = PopulationGroup.from_modules(before, "sgd", {"lr": group.hparams["lr"], "momentum": 0.5}, backend="torch")
    assert back.depths.tolist() == depths.tolist() and torch.equal(back.forward(x_val), out)
    assert torch.equal(back.hparams["lr"], group.hparams["lr"])
    with pytest.raises(TypeError, match=r"modules\[1\] must be an nn.Sequential"):
        PopulationGroup.from_modules([before[0], nn.Linear(3, 2)])
    sub = group.select([6, 1, 1, 0])
    assert sub.depths.tolist() == [3, 1, 1, 2] and sub.hparams["lr"].tolist() == pytest.approx([.07, .02, .02, .01])
    for j, k in enumerate([6, 1, 1, 0]):
        for p, q in zip(sub.to_module(j).parameters(), before[k].parameters()):
            assert torch.equal(p, q)
    assert group.select(torch.tensor([False, True, False, False, True, False, False])).depths.tolist() == [1, 1]
    # state_dict: plain values and tensors, a rebuilt group resumes bit for bit
    state = group.state_dict()
    assert is_group_state(state) and not is_group_state(group.members[0].state_dict())
    again = population_from_state(copy.deepcopy(state), TrainConfig(backend="torch"))
    for x, y in batches[3:]:
        assert torch.equal(group.step(x, y), again.step(x, y))
    with pytest.raises(ValueError, match="another layout"):
        group.load_state_dict(sub.state_dict())
    # copy within a depth keeps the members; across depths the candidate takes its source's depth
    hp_before = group.hparams["lr"].clone()
    group.copy_candidates(torch.tensor([2]), torch.tensor([6]))  # both depth 3
    group.copy_candidates(torch.tensor([0, 3]), torch.tensor([1, 5]))  # depth 2 -> 1 and 3 -> 2
    assert group.depths.tolist() == [2, 2, 3, 3, 1, 3, 3]
    assert torch.equal(group.hparams["lr"], hp_before)  # hyperparameters stay
    for dst, src in ((6, 2), (1, 0), (5, 3)):
        for p, q in zip(group.to_module(dst).parameters(), group.to_module(src).parameters()):
            assert torch.equal(p, q)
    with pytest.raises(ValueError, match="dst must be distinct"):
        group.copy_candidates(torch.tensor([0, 1]), torch.tensor([2, 2]))
    # copies and pickles are independent groups that train alike
    twin = pickle.loads(pickle.dumps(group))
    deep = copy.deepcopy(group)
    x, y = batches[0]
    a, b, c = twin.step(x, y), deep.step(x, y), group.step(x, y)
    assert torch.equal(a, c) and torch.equal(b, c)


def test_a_diverging_candidate_leaves_the_others_of_every_depth_alone():
    dtype, depths, hp, batches = _setup("torch", "sgd")
    wild = {k: v.clone() for k, v in hp.items()}
    wild["lr"][2] = 1e300  # tanh keeps activations bounded: only an absurd rate overflows in a few steps
    calm, group = _group(depths, hp, "sgd", "torch", dtype), _group(depths, wild, "sgd", "torch", dtype)
    for x, y in batches:
        group.step(x * 100, y), calm.step(x * 100, y)
    assert group.alive.tolist() == [k != 2 for k in range(7)]
    assert torch.isinf(group.evaluate(*batches[0])["loss"][2])
    for k in (0, 1, 3, 4, 5, 6):
        for p, q in zip(group.to_module(k).parameters(), calm.to_module(k).parameters()):
            assert torch.equal(p, q)


def test_make_population_builds_a_group_only_when_the_space_tunes_depth():
    task = load_task("wine", seed=0)
    base = SearchSpace.default("adamw")
    plain = SearchSpace({**base.params, "width": IntUniform(4, 20)}, optimizer="adamw")
    deep = SearchSpace({**plain.params, "depth": IntUniform(1, 3)}, optimizer="adamw")
    cfg = TrainConfig(hidden=(16,), optimizer="adamw")
    u = deep.sample_u(9, seed=0)
    assert type(make_population(task, plain, u[:, :-1], cfg, seed=0)) is Population
    group = make_population(task, deep, u, cfg, seed=0)
    values = deep.from_unconstrained(u, round_ints=True)
    assert isinstance(group, PopulationGroup) and group.depths.tolist() == values["depth"].long().tolist()
    assert group.widths[:, 0].tolist() == values["width"].long().tolist()
    for k in range(9):  # every hidden layer of the candidate's width, under the space's widest layer
        m = group.to_module(k)
        lin = [layer for layer in m if isinstance(layer, nn.Linear)]
        assert [layer.out_features for layer in lin[:-1]] == [int(values["width"][k])] * int(values["depth"][k])
    # candidate k starts as make_population would build it in a space of its depth alone
    k = 4
    fixed = SearchSpace({**plain.params, "depth": Fixed(float(values["depth"][k]))}, optimizer="adamw")
    alone = make_population(task, fixed, u[k:k + 1, :-1], cfg, seed=0)
    for p, q in zip(group.to_module(k).parameters(), alone.to_module(0).parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("bad", [IntUniform(0, 3), Uniform(1.0, 3.0), Fixed(1.5), Fixed(0)])
def test_a_depth_below_one_or_not_whole_is_refused(bad):
    with pytest.raises(ValueError, match="depth="):
        SearchSpace({"lr": SearchSpace.default("sgd")["lr"], "depth": bad}, optimizer="sgd")
    with pytest.raises(ValueError, match="depth="):
        SearchSpace({"lr": SearchSpace.default("sgd")["lr"], "depth": bad})


def test_a_group_refuses_bad_depths_and_members():
    dtype, depths, hp, _ = _setup("torch", "sgd")
    with pytest.raises(ValueError, match="depth must be at least 1"):
        _group(torch.tensor([0, 1, 2, 1, 1, 1, 1]), hp, "sgd", "torch", dtype)
    with pytest.raises(ValueError, match="depth must be a 1-D list of whole numbers"):
        _group(torch.tensor([1.5] * 7), hp, "sgd", "torch", dtype)
    group = _group(depths, hp, "sgd", "torch", dtype)
    with pytest.raises(ValueError, match="distinct depths"):
        PopulationGroup([group.members[0], group.members[0]], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="member_of"):
        PopulationGroup(group.members, [0] * 7)
    with pytest.raises(IndexError, match="candidate index"):
        group.to_module(7)
    assert group.locate(np.int64(-1)) == group.locate(torch.tensor(6)) == (2, 2)  # depth 3's third
    with pytest.raises(ValueError, match="x must have shape"):
        group.step(torch.randn(4, D_IN + 1, dtype=dtype), torch.zeros(4, dtype=torch.long))


def _space():
    base = SearchSpace.default("adamw")
    return SearchSpace({**base.params, "depth": IntUniform(1, 3)}, optimizer="adamw")


@pytest.mark.parametrize("tuner,kw", [(RandomSearch, {}), (SuccessiveHalving, {}), (PBT, {}),
                                      (SuccessiveHalving, {"folds": 2})], ids=["random", "sh", "pbt", "sh-folds"])
def test_tuners_search_depth_save_refit_and_ensemble(tuner, kw, tmp_path):
    task = load_task("wine", seed=0)
    res = tuner(_space(), steps=30, hidden=(12,), backend="torch", **kw).run(task, 8, seed=1)
    depths = {t["hparams"]["depth"] for t in res.trials}
    assert len(depths) > 1 and depths <= {1.0, 2.0, 3.0}
    d = int(res.best_hparams["depth"])
    lin = [m for m in res.best_model if isinstance(m, nn.Linear)]
    assert len(lin) == d + 1 and all(m.out_features == 12 for m in lin[:-1])
    with torch.no_grad():
        out = res.best_model(task.x_val)
    if not kw:
        loss = nn.functional.cross_entropy(out, task.y_val).item()
        assert loss == pytest.approx(res.best_val["loss"], rel=1e-4, abs=1e-6)
    res.save(tmp_path / "best.pt")
    g = load_model(tmp_path / "best.pt")
    assert g.info["layers"] == [13] + [12] * d + [3]
    rows = task.preprocessor.inverse_transform(task.x_test)  # the raw features best.pt scales again
    with torch.no_grad():
        want = torch.softmax(res.best_model(task.x_test), 1)
    np.testing.assert_allclose(g.predict_proba(rows), want.numpy(), rtol=1e-4, atol=1e-6)
    assert len(g.predict(rows)) == len(task.y_test)
    refit = res.refit()
    assert len([m for m in refit.best_model if isinstance(m, nn.Linear)]) == d + 1
    # the chosen depth retrained from the run's initial weights of that depth, on train + validation rows
    hp = {k: v for k, v in res.best_hparams.items() if k != "depth"}
    pop = Population([13] + [12] * d + [3], 1, "adamw", hp, seed=1, backend="torch")
    pop.fit(torch.cat([task.x_train, task.x_val]), torch.cat([task.y_train, task.y_val]),
            steps=refit.config["refit"]["steps"], batch_size=128, seed=derive_seed(1, 0x5EF17), progress=False)
    for p, q in zip(refit.best_model.parameters(), pop.to_module(0).parameters()):
        assert torch.equal(p, q)
    assert res.ensemble(3).best_model is not None


@pytest.mark.parametrize("tuner,budget,kill_after", [(SuccessiveHalving, 8, 1), (PBT, 6, 2), (RandomSearch, 5, 2)],
                         ids=["sh", "pbt", "random"])
def test_a_killed_run_with_a_group_resumes_from_its_checkpoint(tuner, budget, kill_after, tmp_path, monkeypatch):
    task = load_task("wine", seed=0)
    make = lambda: tuner(_space(), steps=20, hidden=(10,), backend="torch")  # noqa: E731
    full = make().run(task, budget, seed=2)
    ckpt = tmp_path / "run.ckpt"
    killed_after(monkeypatch, tuner, kill_after, lambda: make().run(task, budget, seed=2, checkpoint=ckpt))
    resumed = make().run(task, budget, seed=2, checkpoint=ckpt)
    assert resumed.best_hparams == full.best_hparams and resumed.cost_steps == full.cost_steps
    assert [t["val_loss"] for t in resumed.trials] == [t["val_loss"] for t in full.trials]
    for p, q in zip(resumed.best_model.parameters(), full.best_model.parameters()):
        assert torch.equal(p, q)
