"""The conditioned portfolio: surrogates, meta-training on a synthetic meta-dataset whose best configuration
depends on the task, proposals (shapes, bounds, k = 1), ES fine-tuning, and safe files."""
import math
import pickle

import pytest
import torch

from metahp_fast import SearchSpace
from metahp_fast.files import UnsafeFileError
from metahp_fast.meta.conditioned import (ConditionedPortfolio, KernelSurrogate, MLPSurrogate, PortfolioConfig,
                                          soft_min, with_budget)
from metahp_fast.meta.encoder import FEATURES
from metahp_fast.meta.metadataset import MetaDataset, quasi_random_u
from metahp_fast.search_space import u_bounds
from metahp_fast.tasks import from_arrays

SPACE = SearchSpace.default("adamw")
FEATURE = FEATURES.index("class_entropy")


def _synthetic(d=16, m=96, folds=2, points=2, seed=0):
    """Datasets of two kinds (the sign of one encoding feature): on the first kind the best configuration is near
    z = 0.25 in every dimension, on the second near z = 0.75; the loss is the squared distance to it."""
    gen = torch.Generator().manual_seed(seed)
    u = quasi_random_u(SPACE, m, seed=seed)
    low, high = u_bounds(SPACE)
    z = (u - low) / (high - low)
    kind = torch.arange(d) % 2
    target = torch.where(kind[:, None] == 0, 0.25, 0.75).double()
    enc = torch.randn(d, folds, len(FEATURES), generator=gen) * 0.1
    enc[..., FEATURES.index("log_rows")] = 7.0
    enc[..., FEATURE] = torch.where(kind == 0, -1.0, 1.0)[:, None]
    loss = ((z[None] - target[:, None]) ** 2).sum(-1) + 0.1  # (d, m)
    curves, steps = [], []
    for c in range(points):
        val = (loss * (2 - c))[:, None, :].expand(d, folds, m).clone()
        curves.append(MetaDataset(SPACE, u, [f"ds{i}" for i in range(d)], val, val.clone()))
        steps.append(torch.full((d, folds), 50 * (c + 1)))
    return curves, steps, enc, kind


def _task(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return from_arrays(x.numpy(), (x[:, 0] > 0).long().numpy(), name="small")


def test_soft_min_lies_between_the_minimum_and_the_mean():
    x = torch.tensor([[0.1, 0.5, 2.0]])
    for tau in (0.01, 0.1, 1.0):
        s = float(soft_min(x, tau))
        assert 0.1 - 1e-6 <= s <= float(x.mean())
    assert float(soft_min(x, 1e-3)) == pytest.approx(0.1, abs=2e-3)


def test_kernel_surrogate_interpolates_and_is_differentiable():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    s = KernelSurrogate(z, torch.tensor([[0.0, 2.0]]), bandwidth=0.1, prior=0.0)
    q = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]], requires_grad=True)
    out = s(torch.tensor([0]), None, q)
    v = out.detach()
    assert v[0, 0] == pytest.approx(0.0, abs=1e-6) and v[0, 1] == pytest.approx(2.0, abs=1e-6)
    assert v[0, 2] == pytest.approx(1.0, abs=1e-6)  # halfway: the mean
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    # with a prior pseudo-observation, far from every configuration measured it reads the median (1)
    far = KernelSurrogate(z, torch.tensor([[0.0, 2.0]]), bandwidth=0.1, prior=0.3)
    assert float(far(torch.tensor([0]), None, torch.tensor([[[0.0, 1.0]]]))) == pytest.approx(1.0, abs=1e-3)


def test_mlp_surrogate_fit_finds_the_known_best_configuration():
    curves, steps, enc, kind = _synthetic()
    y = curves[0].normalized("val").float()
    z = (curves[0].u - u_bounds(SPACE)[0]) / (u_bounds(SPACE)[1] - u_bounds(SPACE)[0])
    e = enc[:, 0]
    s = MLPSurrogate(len(FEATURES), 4, seed=0)
    s.fit(e, z.float(), y, steps=800, seed=0)
    grid = torch.tensor([[0.25] * 4, [0.75] * 4])
    for d in (0, 1):  # one dataset of each kind: the surrogate ranks its own optimum first
        pred = s(torch.tensor([d]), e[d:d + 1], grid.unsqueeze(0))[0]
        assert int(pred.argmin()) == int(kind[d])


@pytest.mark.parametrize("surrogate", ["kernel", "mlp"])
def test_fit_conditions_the_proposals_on_the_task(surrogate):
    curves, steps, enc, kind = _synthetic()
    cfg = PortfolioConfig(max_k=4, hidden=32, meta_steps=300, surrogate=surrogate, noise=0.0, seed=1)
    p = ConditionedPortfolio(SPACE, cfg).fit(curves, steps, enc)
    for d in (0, 1):  # k = 1: each kind's point lies nearer its own optimum than the other kind's
        e = with_budget(enc[d, 0], 100, cfg.batch_size).unsqueeze(0)
        with torch.no_grad():
            z = p._z(e, 1)[0, 0]
        own, other = (0.25, 0.75) if kind[d] == 0 else (0.75, 0.25)
        assert float((z - own).norm()) < 0.6 * float((z - other).norm()), (d, z)
    assert p.history and p.history[-1]["loss"] < p.history[0]["loss"]


def test_propose_shapes_bounds_and_k1():
    curves, steps, enc, _ = _synthetic(d=6, m=32)
    p = ConditionedPortfolio(SPACE, PortfolioConfig(max_k=8, hidden=16, meta_steps=20)).fit(curves, steps, enc)
    task = _task()
    low, high = u_bounds(SPACE)
    for k in (1, 3, 8):
        u = p.propose_u(task, k, budget=40)
        assert u.shape == (k, 4) and u.dtype == torch.float64
        assert bool(((u >= low - 1e-5) & (u <= high + 1e-5)).all())
        hp = p.propose(task, k)
        assert set(hp) == set(SPACE.names) and all(v.shape == (k,) for v in hp.values())
        for name in SPACE.dims:
            assert bool(SPACE[name].contains(hp[name]).all())
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="k must be"):
            p.propose(task, bad)
    with pytest.raises(ValueError, match="budget"):
        p.propose(task, 2, budget=0)
    with pytest.raises(TypeError, match="task"):
        p.propose("not a task", 2)


def test_bad_fit_input_is_refused_before_work():
    curves, steps, enc, _ = _synthetic(d=4, m=16)
    p = ConditionedPortfolio(SPACE, PortfolioConfig(max_k=2, meta_steps=5))
    with pytest.raises(ValueError, match="encodings"):
        p.fit(curves, steps, enc[:, :, :3])
    with pytest.raises(ValueError, match="same length"):
        p.fit(curves, steps[:1], enc)
    with pytest.raises(ValueError, match="surrogate"):
        PortfolioConfig(surrogate="gp")
    with pytest.raises(TypeError, match="space"):
        ConditionedPortfolio("adamw")


def test_save_load_round_trip_and_safety(tmp_path):
    curves, steps, enc, _ = _synthetic(d=6, m=32)
    p = ConditionedPortfolio(SPACE, PortfolioConfig(max_k=4, hidden=16, meta_steps=30)).fit(curves, steps, enc)
    path = tmp_path / "p.pt"
    p.save(path)
    torch.load(path, weights_only=True)  # plain tensors and JSON values only
    q = ConditionedPortfolio.load(path)
    task = _task()
    assert torch.equal(p.propose_u(task, 4, 50), q.propose_u(task, 4, 50))
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": "metahp_fast", "kind": "conditioned-portfolio", "x": math.inf.__class__}, f)
    with pytest.raises((UnsafeFileError, ValueError)):
        ConditionedPortfolio.load(evil)
    with pytest.raises(FileNotFoundError, match="path"):
        ConditionedPortfolio.load(tmp_path / "missing.pt")


def test_pretrained_portfolio_loads_and_proposes():
    p = ConditionedPortfolio.pretrained("adamw")
    hp = p.propose(_task(200), 8)
    assert all(v.shape == (8,) and torch.isfinite(v).all() for v in hp.values())
    with pytest.raises(ValueError, match="optimizer"):
        ConditionedPortfolio.pretrained("sgd")


def test_es_fine_tune_moves_g_with_real_training():
    curves, steps, enc, _ = _synthetic(d=6, m=32)
    cfg = PortfolioConfig(max_k=2, hidden=16, meta_steps=20, epochs=2.0, batch_size=32)
    p = ConditionedPortfolio(SPACE, cfg).fit(curves, steps, enc)
    task = _task(120)
    before = p.propose_u(task, 2)
    log = p.fine_tune_es([task], k=2, meta_steps=2, n_pairs=1, lr=0.05, hidden=(8,))
    assert len(log) == 2 and all(math.isfinite(r["soft_min_val"]) for r in log)
    assert not torch.equal(before, p.propose_u(task, 2))
