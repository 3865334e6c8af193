"""Per-candidate dropout (``Population(dropout=...)``): every backend against the reference backend with the
population's shared masks, exactly-unchanged candidates at p = 0, no dropout outside training steps, exports
with ``nn.Dropout``, resumable masks, bad input, and a ``dropout`` dimension tuned end to end."""
import copy
import math
import os

import pytest
import torch
from torch import nn

from metahp_fast import Population, SearchSpace
from metahp_fast.model import dropout_scales
from metahp_fast.search_space import Uniform
from tests.util import random_batches, random_hparams, rel_err

BACKENDS = ["torch"] + (["triton"] if os.environ.get("TRITON_INTERPRET") == "1" else [])
P = [0.0, 0.1, 0.3, 0.5, 0.7]


def _pop(backend, optimizer="adamw", activation="relu", dropout=P, layers=(11, 21, 13, 4), K=5, seed=7,
         dtype=None, **kw):
    if dtype is None:
        dtype = torch.float32 if backend == "triton" else torch.float64
    gen = torch.Generator().manual_seed(3)
    hp = {k: v.to(dtype) for k, v in random_hparams(optimizer, K, gen).items()}
    return Population(list(layers), K, optimizer, hp, activation=activation, seed=seed, dtype=dtype,
                      backend=backend, dropout=dropout, nesterov=optimizer == "sgd",
                      **({"precision": "ieee"} if backend == "triton" else {}), **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer,activation,loss", [("adamw", "relu", "cross_entropy"), ("sgd", "tanh", "mse"),
                                                       ("sgd", "gelu", "cross_entropy")])
def test_backends_train_as_the_reference_with_the_same_masks(backend, optimizer, activation, loss):
    pytest.importorskip("triton") if backend == "triton" else None
    layers, B = (11, 21, 13, 4), 23  # no size a multiple of a kernel block
    widths = [[21, 13], [9, 5], [21, 13], [17, 2], [5, 11]]  # per-candidate widths too
    pop = _pop(backend, optimizer, activation, loss=loss, widths=widths)
    ref = _pop("reference", optimizer, activation, loss=loss, dtype=pop.dtype, widths=widths)
    gen = torch.Generator().manual_seed(5)
    tol = 1e-4 if pop.dtype == torch.float32 else 1e-10
    for x, y in random_batches(layers, loss, B, 6, gen, pop.dtype):
        la, lb = pop.step(x, y), ref.step(x, y)
        assert rel_err(la, lb) < tol
    for k in range(pop.size):
        for a, b in zip(pop.params, ref.params):
            assert rel_err(a[k], b[k]) < tol, k
        for name in pop.optimizer_state:
            for a, b in zip(pop.optimizer_state[name], ref.optimizer_state[name]):
                assert rel_err(a[k], b[k]) < tol, (k, name)
    assert pop.steps_done == ref.steps_done == 6


def test_the_reference_drops_units_as_nn_dropout_would():
    """The reference backend's dropout is nn.Dropout's maths: an independent torch.optim loop whose hidden
    activations are multiplied by the population's masks gives the same weights; dropped units get no gradient."""
    pop = _pop("reference", "sgd", layers=(6, 9, 3), K=3, dropout=[0.0, 0.4, 0.6])
    start = [copy.deepcopy(pop.to_module(k)) for k in range(3)]
    gen = torch.Generator().manual_seed(2)
    batches = random_batches((6, 9, 3), "cross_entropy", 10, 4, gen)
    masks = []
    for x, y in batches:
        masks.append([t.clone() for t in pop._state.dropout(x.shape[0])])  # the draw the step will make
        pop.step(x, y)
    for k, m in enumerate(start):
        hp = {n: float(v[k]) for n, v in pop.hparams.items()}
        opt = torch.optim.SGD(m.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                              nesterov=True)
        for (x, y), scale in zip(batches, masks):
            s = scale[0][k]
            kept = s[s > 0]
            assert torch.allclose(kept, torch.full_like(kept, 1.0 / (1.0 - pop.options["dropout"][k].item())),
                                  rtol=1e-4)
            opt.zero_grad()
            lin = [l for l in m if isinstance(l, nn.Linear)]
            h = torch.relu(lin[0](x)) * s
            nn.functional.cross_entropy(lin[1](h), y).backward()
            opt.step()
        for a, b in zip(m.parameters(), pop.to_module(k).parameters()):
            assert rel_err(b.detach(), a.detach()) < 1e-12


def test_masks_keep_each_unit_with_probability_one_minus_p():
    p = torch.tensor([0.0, 0.25, 0.5, 0.9])
    gen = torch.Generator()
    a = dropout_scales(p, [40, 30], 500, seed=9, gen=gen, dtype=torch.float32)
    b = dropout_scales(p, [40, 30], 500, seed=9, gen=gen, dtype=torch.float64)
    assert [t.shape for t in a] == [(4, 500, 40), (4, 500, 30)]
    for s32, s64 in zip(a, b):
        assert torch.equal(s32 > 0, s64 > 0)  # the same draw in every dtype
        keep = (s64 > 0).double().mean((1, 2))
        assert torch.allclose(keep, 1 - p.double(), atol=0.01)
        assert torch.equal(s64[0], torch.ones_like(s64[0]))  # p = 0: exactly 1
        want = (1 / (1 - p.double())).view(4, 1, 1).expand_as(s64)
        assert torch.allclose(s64[s64 > 0], want[s64 > 0], rtol=1e-4)
    c = dropout_scales(p, [40, 30], 500, seed=10, gen=gen, dtype=torch.float32)
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("backend", ["torch", "reference"] + BACKENDS[1:])
def test_candidates_with_p_zero_train_bit_identically_to_no_dropout(backend):
    """A p = 0 candidate in a dropout population == the same candidate in a population without the option (the
    triton comparison uses tanh, where both populations take the per-layer path)."""
    pytest.importorskip("triton") if backend == "triton" else None
    activation = "tanh" if backend == "triton" else "relu"
    with_ = _pop(backend, "adamw", activation, dropout=[0.0, 0.5, 0.0, 0.3, 0.0])
    without = _pop(backend, "adamw", activation, dropout=None)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(60, 11, generator=gen, dtype=with_.dtype)
    y = torch.randint(0, 4, (60,), generator=gen)
    for xb, yb in [(x[:23], y[:23]), (x[23:46], y[23:46])]:
        la, lb = with_.step(xb, yb), without.step(xb, yb)
        assert torch.equal(la[[0, 2, 4]], lb[[0, 2, 4]])
    with_.fit(x, y, steps=5, batch_size=17, progress=False)
    without.fit(x, y, steps=5, batch_size=17, progress=False)
    for a, b in zip(with_.params, without.params):
        assert torch.equal(a[[0, 2, 4]], b[[0, 2, 4]])
        assert not torch.equal(a[1], b[1])
    all_zero = _pop(backend, "adamw", activation, dropout=0.0)
    fresh = _pop(backend, "adamw", activation, dropout=None)
    for pop in (all_zero, fresh):
        pop.fit(x, y, steps=4, batch_size=17, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(all_zero.params, fresh.params))


def test_evaluation_and_exports_use_no_dropout():
    pop = _pop("torch", dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(31, 11, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (31,), generator=gen)
    pop.fit(x, y, steps=5, batch_size=16, progress=False)
    plain = Population.from_modules([pop.to_module(k) for k in range(pop.size)], "adamw")  # same weights
    assert torch.equal(pop.forward(x), pop.forward(x))
    assert torch.equal(pop.forward(x), plain.forward(x))  # no masks outside training steps
    m1, m2 = pop.evaluate(x, y), plain.evaluate(x, y)
    assert torch.equal(m1["loss"], m2["loss"]) and torch.equal(m1["accuracy"], m2["accuracy"])
    outs = pop.forward(x)
    for k, p in enumerate(P):
        m = pop.to_module(k)
        drops = [d for d in m if isinstance(d, nn.Dropout)]
        assert [d.p for d in drops] == ([pytest.approx(p)] * 2 if p > 0 else [])
        assert [type(d) for d in m if not isinstance(d, nn.Dropout)] == [nn.Linear, nn.ReLU] * 2 + [nn.Linear]
        m.eval()
        with torch.no_grad():
            got = m(x)
        assert torch.allclose(got, outs[k], rtol=1e-12, atol=1e-12)
        assert torch.equal(got.argmax(1), outs[k].argmax(1))  # the export predicts exactly the population's class
        if p > 0:
            m.train()  # retraining the export drops units again
            with torch.no_grad():
                assert not torch.allclose(m(x), got)


def test_exports_import_back_with_their_dropout():
    pop = _pop("torch", dtype=torch.float64)
    back = Population.from_modules([pop.to_module(k) for k in range(pop.size)], "adamw", seed=7)
    assert torch.allclose(back.options["dropout"], torch.tensor(P, dtype=torch.float64))
    assert "dropout" not in Population.from_modules([pop.to_module(0)]).options  # no nn.Dropout: no option
    odd = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.2), nn.Linear(4, 5), nn.ReLU(), nn.Dropout(0.3),
                        nn.Linear(5, 2))
    with pytest.raises(ValueError, match="Dropout"):
        Population.from_modules([odd])


def test_masks_follow_seed_and_step_through_select_state_dict_and_pickling():
    gen = torch.Generator().manual_seed(8)
    batches = random_batches((11, 21, 13, 4), "cross_entropy", 19, 6, gen)
    a, b, c = _pop("torch"), _pop("torch"), _pop("torch", seed=8)
    for x, y in batches[:3]:
        a.step(x, y), b.step(x, y), c.step(x, y)
    assert all(torch.equal(p, q) for p, q in zip(a.params, b.params))
    assert not torch.equal(a.params[0][1], c.params[0][1])  # another seed, other masks
    saved = a.state_dict()
    resumed = _pop("torch", seed=123, dropout=[0.9] * 5)  # overwritten by the state
    resumed.load_state_dict(saved)
    assert resumed.seed == 7 and resumed.steps_done == 3
    clone = copy.deepcopy(a)
    for x, y in batches[3:]:
        a.step(x, y), resumed.step(x, y), clone.step(x, y)
    for p, q, r in zip(a.params, resumed.params, clone.params):
        assert torch.equal(p, q) and torch.equal(p, r)
    sub = a.select([3, 1])
    assert sub.seed == 7 and sub.steps_done == 6
    assert torch.allclose(sub.options["dropout"], torch.tensor([0.5, 0.1], dtype=torch.float64))
    a.copy_candidates(torch.tensor([4]), torch.tensor([0]))
    assert a.options["dropout"][0].item() == pytest.approx(0.7)
    with pytest.raises(ValueError, match="options"):
        _pop("torch", dropout=None).load_state_dict(saved)


def test_tuner_checkpoints_rebuild_dropout_populations():
    from metahp_fast.training import TrainConfig, population_from_state
    pop = _pop("torch", dtype=torch.float32, label_smoothing=0.1)
    pop.step(torch.randn(9, 11), torch.randint(0, 4, (9,)))
    back = population_from_state(pop.state_dict(), TrainConfig(backend="reference"))
    assert back.backend == "reference" and back.steps_done == 1 and back.seed == 7
    assert set(back.options) == {"dropout", "label_smoothing"}
    assert torch.equal(back.options["dropout"], pop.options["dropout"])


@pytest.mark.parametrize("kw,err", [
    (dict(dropout=1.0), ValueError), (dict(dropout=-0.1), ValueError), (dict(dropout=math.nan), ValueError),
    (dict(dropout=[0.1, 0.2]), ValueError), (dict(dropout=[[0.1, 0.2, 0.3]]), ValueError),
    (dict(dropout=0.99999999), ValueError),  # 1.0 in float32: the scale would be inf
    (dict(dropout=0.999999), ValueError),  # 1.0 at the masks' resolution of 2^-16
    (dict(dropout="x"), TypeError), (dict(dropout=0.1, layers=[4, 3]), ValueError),
])
def test_bad_dropout_is_refused_naming_it_before_any_work(kw, err):
    layers = kw.pop("layers", [4, 6, 3])
    with pytest.raises(err, match="dropout"):
        Population(layers, 3, **kw)


def test_search_space_refuses_dropout_outside_zero_one():
    base = SearchSpace.default("sgd").params
    with pytest.raises(ValueError, match="dropout"):
        SearchSpace({**base, "dropout": Uniform(0.0, 1.0)}, optimizer="sgd")
    with pytest.raises(ValueError, match="dropout"):
        SearchSpace({**base, "dropout": Uniform(-0.1, 0.5)}, optimizer="sgd")


@pytest.mark.parametrize("tuner", ["RandomSearch", "SuccessiveHalving", "PBT"])
def test_tuners_search_dropout_and_keep_the_picks_own(tuner, tmp_path):
    from metahp_fast import tuners
    from metahp_fast.model_file import load_model, read_model_file
    from metahp_fast.tasks import load_task
    base = SearchSpace.default("adamw")
    space = SearchSpace({**base.params, "dropout": Uniform(0.0, 0.5)}, optimizer="adamw")
    task = load_task("wine", seed=0)
    res = getattr(tuners, tuner)(space, steps=30, hidden=(16,)).run(task, 6, seed=1)
    values = {t["hparams"]["dropout"] for t in res.trials}
    assert len(values) > 1 and all(0 <= v <= 0.5 for v in values)
    p = res.best_hparams["dropout"]
    drops = [m.p for m in res.best_model if isinstance(m, nn.Dropout)]
    assert drops == [pytest.approx(p, abs=1e-6)] and not res.best_model.training
    refit = res.refit()
    assert [m.p for m in refit.best_model if isinstance(m, nn.Dropout)] == [pytest.approx(p, abs=1e-6)]
    refit.save(tmp_path / "best.pt")
    saved = read_model_file(tmp_path / "best.pt")
    assert saved["hparams"]["dropout"] == pytest.approx(p)
    assert [m.p for m in saved["model"] if isinstance(m, nn.Dropout)] == [pytest.approx(p, abs=1e-6)]
    with torch.no_grad():
        want = refit.best_model(task.x_test).argmax(1)
    assert load_model(tmp_path / "best.pt").predict(task.preprocessor.inverse_transform(task.x_test)) is not None
    assert torch.equal(saved["model"](task.x_test).argmax(1), want)


def test_a_space_with_depth_and_dropout_tunes_end_to_end():
    """Depth groups carry dropout: each depth's members get their candidates' own p, and the pick's export has
    its depth and an nn.Dropout after each hidden activation iff its p > 0."""
    from metahp_fast.search_space import IntUniform
    from metahp_fast.tasks import load_task
    from metahp_fast.tuners import SuccessiveHalving
    base = SearchSpace.default("adamw")
    space = SearchSpace({**base.params, "depth": IntUniform(1, 2), "dropout": Uniform(0.0, 0.5)}, optimizer="adamw")
    task = load_task("wine", seed=0)
    res = SuccessiveHalving(space, steps=30, hidden=(12,), backend="torch").run(task, 6, seed=1)
    assert {t["hparams"]["depth"] for t in res.trials} <= {1.0, 2.0}
    assert len({t["hparams"]["dropout"] for t in res.trials}) > 1
    d, p = int(res.best_hparams["depth"]), res.best_hparams["dropout"]
    assert len([m for m in res.best_model if isinstance(m, nn.Linear)]) == d + 1
    drops = [m.p for m in res.best_model if isinstance(m, nn.Dropout)]
    assert drops == ([pytest.approx(p, abs=1e-6)] * d if p > 0 else [])
    refit = res.refit()
    assert [m.p for m in refit.best_model if isinstance(m, nn.Dropout)] == drops
    # the group keeps each candidate's p through select, a copy across depths and a state_dict round trip
    from metahp_fast import PopulationGroup
    from metahp_fast.training import TrainConfig, population_from_state
    ps = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    g = PopulationGroup.by_depth([1, 2, 1, 2], lambda depth, rows: Population(
        [13] + [12] * depth + [3], len(rows), "adamw", seed=1, dropout=ps[rows], backend="torch"))
    assert torch.allclose(g.select([3, 0]).options["dropout"], ps[[3, 0]].float())
    g.copy_candidates(torch.tensor([1]), torch.tensor([0]))
    assert g.depths.tolist() == [2, 2, 1, 2] and torch.allclose(g.options["dropout"], ps[[1, 1, 2, 3]].float())
    back = population_from_state(g.state_dict(), TrainConfig(backend="reference"))
    assert torch.equal(back.options["dropout"], g.options["dropout"])
