"""Static portfolios from a meta-dataset: normalization, the greedy and constant builders, propose, files."""
import math

import pytest
import torch

from metahp_fast import SearchSpace
from metahp_fast.meta.metadataset import MetaDataset
from metahp_fast.meta.metadataset import normalize
from metahp_fast.meta.portfolio import (StaticPortfolio, constant_portfolio, greedy_portfolio,
                                        portfolio_score)


def _meta(d=7, m=11, seed=0):
    space = SearchSpace.default("adamw")
    g = torch.Generator().manual_seed(seed)
    val = torch.rand(d, 3, m, generator=g, dtype=torch.float64) + 0.1
    val[0, 2] = math.nan  # dataset 0 has two folds
    return MetaDataset(space, space.sample_u(m, seed=seed), [f"ds{i}" for i in range(d)], val, val + 0.05)


def test_normalize_maps_best_to_0_median_to_1_and_diverged_to_the_worst():
    x = torch.tensor([[1.0, 2.0, 3.0, math.inf, math.nan], [5.0, 5.0, 5.0, 5.0, 5.0]])
    n = normalize(x)
    assert n[0, :3].tolist() == [0.0, 0.5, 1.0] and n[0, 3] == n[0, 4] == 1.0  # median 3, worst finite 3
    assert n[1].tolist() == [0.0] * 5  # median == best: divides by 1
    with pytest.raises(ValueError, match="finite"):
        normalize(torch.full((2, 3), math.inf))


def test_greedy_covers_datasets_that_the_constant_portfolio_leaves_out():
    # configs 0 and 1 are good on datasets A and B, config 2 alone is good on C: constant picks 0 and 1
    norm = torch.tensor([[0.0, 0.1, 1.0], [0.0, 0.1, 1.0], [1.0, 1.0, 0.0]])
    assert constant_portfolio(norm, 2) == [0, 1]
    assert greedy_portfolio(norm, 2) == [0, 2]
    assert portfolio_score(norm, [0, 2]) == 0.0 < portfolio_score(norm, [0, 1])


def test_greedy_is_optimal_at_k1_and_never_gets_worse_with_k():
    norm = _meta(d=9, m=17, seed=3).normalized()
    order = greedy_portfolio(norm, 17)
    assert sorted(order) == list(range(17))  # no member twice
    scores = [portfolio_score(norm, order[:k]) for k in range(1, 18)]
    assert all(b <= a for a, b in zip(scores, scores[1:]))
    assert order[0] == constant_portfolio(norm, 1)[0]
    # each member is the best next one: no other single choice lowers the score more
    for k in range(1, 5):
        best_next = min(portfolio_score(norm, order[:k] + [j]) for j in range(17) if j not in order[:k])
        assert portfolio_score(norm, order[:k + 1]) == pytest.approx(best_next)


def test_propose_gives_k_configurations_inside_the_space():
    meta = _meta()
    for method in ("constant", "greedy"):
        p = StaticPortfolio(meta, method)
        hp = p.propose("any task", k=4, budget=100)
        assert set(hp) >= set(meta.space.dims) and all(v.shape == (4,) for v in hp.values())
        for name in meta.space.dims:
            assert bool(meta.space[name].contains(hp[name]).all())
    with pytest.raises(ValueError, match="k must be"):
        StaticPortfolio(meta).propose(k=0)
    with pytest.raises(ValueError, match="method"):
        StaticPortfolio(meta, "best")


def test_meta_dataset_checks_shapes_and_round_trips_through_a_safe_file(tmp_path):
    meta = _meta()
    with pytest.raises(ValueError, match="val must have shape"):
        MetaDataset(meta.space, meta.u, meta.datasets, meta.val[:, :, :3])
    assert torch.equal(meta.fold_mean()[0], meta.val[0, :2].mean(0)) and torch.equal(meta.fold_mean()[1],
                                                                                      meta.val[1].mean(0))
    with pytest.raises(ValueError, match="datasets"):
        MetaDataset(meta.space, meta.u, ["a", "a"] + meta.datasets[2:], meta.val)
    path = tmp_path / "meta.pt"
    meta.save(path)
    torch.load(path, weights_only=True)  # tensors and JSON values only
    back = MetaDataset.load(path)
    assert back.datasets == meta.datasets and torch.equal(back.val.nan_to_num(), meta.val.nan_to_num()) and torch.equal(back.u, meta.u)
    sub = meta.subset(["ds3", "ds1"])
    assert torch.equal(sub.val, meta.val[[3, 1]]) and torch.equal(sub.test, meta.test[[3, 1]])
    with pytest.raises(ValueError, match="not in this meta-dataset"):
        meta.subset(["nope"])
