"""NearestPortfolio: the greedy portfolio of the meta-datasets nearest a task in (log rows, log steps)."""
import math

import pytest
import torch

from metahp_fast import SearchSpace
from metahp_fast.files import UnsafeFileError
from metahp_fast.meta.metadataset import MetaDataset
from metahp_fast.meta.nearest import NearestPortfolio, weighted_greedy
from metahp_fast.meta.portfolio import greedy_portfolio
from metahp_fast.tasks import from_arrays


def _sized_meta(m=12, seed=0):
    """Small datasets (200-400 rows) are best served by configurations 0-2, large ones (20k-40k) by 9-11; the
    rest are mediocre everywhere. Steps grow with rows, as the meta-dataset's 10-epoch rule makes them."""
    g = torch.Generator().manual_seed(seed)
    rows = {f"small{i}": 200 + 50 * i for i in range(5)} | {f"large{i}": 20000 + 5000 * i for i in range(5)}
    names = sorted(rows)
    val = 1.0 + 0.1 * torch.rand(len(names), 2, m, generator=g, dtype=torch.float64)
    for d, n in enumerate(names):
        val[d, :, slice(0, 3) if n.startswith("small") else slice(m - 3, m)] -= 0.5
    space = SearchSpace.default("adamw")
    meta = MetaDataset(space, space.sample_u(m, seed=seed), names, val, val.clone())
    steps = torch.tensor([[min(600, math.ceil(10 * rows[n] / 128))] * 2 for n in names])
    return meta, steps, rows


def _task(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return from_arrays(x.numpy(), (x[:, 0] > 0).long().numpy(), name=f"toy{n}", seed=seed)


def _fit(meta, steps, rows):
    return NearestPortfolio.fit([meta], [steps], rows, epochs=10.0, max_steps=600, batch_size=128)


def test_equal_weights_give_the_static_greedy_portfolio():
    norm = torch.rand(9, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for k in (1, 3, 7):
        assert weighted_greedy(norm, torch.ones(9, dtype=torch.float64), k) == greedy_portfolio(norm, k)
    w = torch.zeros(9, dtype=torch.float64)
    w[4] = 1.0  # all weight on one row: its own best configuration first
    assert weighted_greedy(norm, w, 1) == [int(norm[4].argmin())]


def test_small_and_large_tasks_get_the_configurations_their_neighbours_like():
    meta, steps, rows = _sized_meta()
    p = _fit(meta, steps, rows)
    # leaving datasets out finds the size signal where k cannot cover both kinds; at k >= 2 the static
    # portfolio already covers them, and ties go to the wider bandwidth
    assert p.bandwidths[1] < math.inf and p.bandwidths[8] == math.inf
    small = p.members(rows=300, steps=24, k=3)
    large = p.members(rows=30000, steps=600, k=3)
    assert set(small) <= {0, 1, 2} and set(large) <= {9, 10, 11}
    u = p.propose_u(_task(260), k=2)  # 260 train rows -> the meta-dataset's rule gives its steps
    assert all(any(torch.equal(r, meta.u[j]) for j in (0, 1, 2)) for r in u)
    vals = p.propose(_task(260), k=2, budget=30)
    assert set(vals) >= set(meta.space.dims) and all(v.shape == (2,) for v in vals.values())


def test_without_a_size_signal_it_falls_back_to_the_static_portfolio():
    meta, steps, rows = _sized_meta()
    flat = torch.rand(meta.val.shape[0], 1, meta.val.shape[2], generator=torch.Generator().manual_seed(3),
                      dtype=torch.float64).expand_as(meta.val).clone()
    flat[:, :, 5] -= 1.0  # one configuration best everywhere
    meta = MetaDataset(meta.space, meta.u, meta.datasets, flat, flat.clone())
    p = _fit(meta, steps, rows)
    assert p.members(300, 24, 1) == p.members(30000, 600, 1) == [5]


def test_round_trips_through_a_safe_file_and_refuses_bad_input(tmp_path):
    meta, steps, rows = _sized_meta()
    p = _fit(meta, steps, rows)
    p.save(tmp_path / "p.pt")
    q = NearestPortfolio.load(tmp_path / "p.pt")
    assert q.bandwidths == p.bandwidths and q.members(300, 24, 4) == p.members(300, 24, 4)
    torch.load(tmp_path / "p.pt", weights_only=True)  # nothing in it can run code
    with pytest.raises(ValueError, match="k must be an int from 1 to 12"):
        p.members(300, 24, 13)
    with pytest.raises(ValueError, match="budget must be a positive int"):
        p.propose_u(_task(260), k=2, budget=0)
    with pytest.raises(TypeError, match="task must be a Task"):
        p.propose_u("keel:pima", k=2)
    with pytest.raises(ValueError, match="norm must be"):
        NearestPortfolio(meta.space, meta.u, p.norm[:, :5], p.features, p.datasets, 10.0, 600, 128)
    with pytest.raises(FileNotFoundError, match="path: no portfolio file"):
        NearestPortfolio.load(tmp_path / "missing.pt")
    import pickle
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": object()}))
    with pytest.raises((UnsafeFileError, ValueError)):
        NearestPortfolio.load(tmp_path / "evil.pt")


def test_load_portfolio_reads_either_kind_and_refuses_other_files(tmp_path):
    from metahp_fast.files import save_file
    from metahp_fast.meta.conditioned import ConditionedPortfolio
    from metahp_fast.meta.portfolio import load_portfolio
    meta, steps, rows = _sized_meta()
    _fit(meta, steps, rows).save(tmp_path / "n.pt")
    ConditionedPortfolio(meta.space).save(tmp_path / "c.pt")
    assert isinstance(load_portfolio(tmp_path / "n.pt"), NearestPortfolio)
    assert isinstance(load_portfolio(tmp_path / "c.pt"), ConditionedPortfolio)
    save_file(tmp_path / "other.pt", "meta-dataset-part", {"x": 1})
    with pytest.raises(ValueError, match="not a 'conditioned-portfolio' or 'nearest-portfolio' file"):
        load_portfolio(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="path: no portfolio file"):
        load_portfolio(tmp_path / "none.pt")


def test_the_shipped_portfolio_is_the_nearest_one_and_proposes_pool_configurations():
    from metahp_fast.meta.portfolio import pretrained_portfolio
    p = pretrained_portfolio("adamw")
    assert isinstance(p, NearestPortfolio) and len(set(p.datasets)) >= 20
    small, large = p.propose_u(_task(400), k=8), p.propose_u(_task(5000), k=8)
    for u in (small, large):
        assert all(any(torch.equal(r, q) for q in p.u) for r in u) and len({tuple(r.tolist()) for r in u}) == 8
    with pytest.raises(ValueError, match="optimizer: no pretrained nearest portfolio for 'sgd'; available"):
        pretrained_portfolio("sgd")
    with pytest.raises(ValueError, match="kind must be one of"):
        pretrained_portfolio("adamw", kind="magic")
