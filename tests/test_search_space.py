"""SearchSpace: seeded sampling, bounds, the natural <-> u map and its gradients, validation."""
import json
import math

import pytest
import torch

from metahp_fast import Population
from metahp_fast.search_space import EDGE, Fixed, IntUniform, LogUniform, SearchSpace, Uniform


def mixed_space() -> SearchSpace:
    return SearchSpace({"lr": LogUniform(1e-4, 0.5), "momentum": Uniform(0.1, 0.9), "width": IntUniform(2, 9),
                        "eps": Fixed(1e-8)})


@pytest.mark.parametrize("space", [SearchSpace.default("sgd"), SearchSpace.default("adamw"), mixed_space()],
                         ids=["sgd", "adamw", "mixed"])
def test_sample_is_seeded_and_within_bounds(space):
    a, b, c = space.sample(500, seed=3), space.sample(500, seed=3), space.sample(500, seed=4)
    assert list(a) == list(space.names)
    for name, dist in space.params.items():
        assert a[name].shape == (500,) and a[name].dtype == torch.float64
        assert torch.equal(a[name], b[name])
        if isinstance(dist, Fixed):
            assert (a[name] == dist.value).all()
            continue
        assert not torch.equal(a[name], c[name])
        assert a[name].min() >= dist.low and a[name].max() <= dist.high


def test_sample_u_is_the_samples_mapped_to_u():
    space = mixed_space()
    u = space.sample_u(7, seed=5)
    assert u.shape == (7, len(space.dims))
    back = space.from_unconstrained(u, round_ints=True)
    for name, want in space.sample(7, seed=5).items():
        torch.testing.assert_close(back[name], want, rtol=1e-9, atol=0)
    assert not torch.equal(u, space.sample_u(7, seed=6))


def test_sample_distributions_have_the_right_shape():
    space = SearchSpace({"lr": LogUniform(1e-3, 1.0), "m": Uniform(2.0, 4.0), "k": IntUniform(1, 4)})
    s = space.sample(8000, seed=0)
    # log-uniform: half the mass below the geometric middle (a uniform draw would put ~3% there)
    assert abs((s["lr"] < math.sqrt(1e-3)).double().mean().item() - 0.5) < 0.03
    assert abs((s["m"] < 3.0).double().mean().item() - 0.5) < 0.03
    assert torch.equal(s["k"], s["k"].round())
    counts = torch.bincount(s["k"].long(), minlength=5)[1:]
    assert counts.min() > 0.2 * 8000 and counts.max() < 0.3 * 8000  # every integer, inclusive ends, ~1/4 each


def test_map_formulas_and_center():
    space = mixed_space()
    v = {"lr": torch.tensor([1e-3, 0.1]), "momentum": torch.tensor([0.3, 0.5]), "width": torch.tensor([2.0, 9.0])}
    u = space.to_unconstrained(v)
    assert u.shape == (2, 3) and space.dims == ("lr", "momentum", "width")
    torch.testing.assert_close(u[:, 0], torch.log(v["lr"]))
    torch.testing.assert_close(u[:, 1], torch.logit((v["momentum"] - 0.1) / 0.8))
    torch.testing.assert_close(u[:, 2], torch.logit((v["width"] - 1.5) / 8.0))
    mid = space.from_unconstrained(space.center())
    assert mid["lr"].item() == pytest.approx(math.sqrt(1e-4 * 0.5), rel=1e-12)
    assert mid["momentum"].item() == pytest.approx(0.5, rel=1e-12)
    assert mid["width"].item() == pytest.approx(5.5, rel=1e-12)
    assert mid["eps"].item() == 1e-8
    assert list(space.from_unconstrained(space.center(), include_fixed=False)) == list(space.dims)


@pytest.mark.parametrize("space", [SearchSpace.default("sgd"), SearchSpace.default("adamw"), mixed_space()],
                         ids=["sgd", "adamw", "mixed"])
def test_round_trip_natural_u_natural_and_u_natural_u(space):
    values = space.sample(64, seed=1)
    back = space.from_unconstrained(space.to_unconstrained(values), round_ints=True)
    assert list(back) == list(space.names)
    for name in space.names:
        torch.testing.assert_close(back[name], values[name], rtol=1e-12, atol=0)
    gen = torch.Generator().manual_seed(0)
    u = torch.empty(64, len(space.dims), dtype=torch.float64).uniform_(-5, 5, generator=gen)
    torch.testing.assert_close(space.to_unconstrained(space.from_unconstrained(u)), u, rtol=1e-9, atol=1e-9)


def test_from_unconstrained_gradient_matches_finite_differences():
    space = mixed_space()
    u0 = torch.tensor([-3.0, 0.7, -1.2], dtype=torch.float64)

    def f(u):
        v = space.from_unconstrained(u, include_fixed=False)
        return torch.stack([v[n] for n in space.dims])

    jac = torch.autograd.functional.jacobian(f, u0)
    h = 1e-6
    fd = torch.stack([(f(u0 + h * e) - f(u0 - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)], 1)
    torch.testing.assert_close(jac, fd, rtol=1e-7, atol=1e-10)
    # the map is coordinate-wise: a diagonal Jacobian, d lr / d u = lr, d x / d u = (b - a) s (1 - s) for Uniform
    assert torch.count_nonzero(jac - torch.diag(torch.diagonal(jac))) == 0
    s = torch.sigmoid(u0[1])
    assert jac[0, 0].item() == pytest.approx(math.exp(-3.0), rel=1e-12)
    assert jac[1, 1].item() == pytest.approx((0.8 * s * (1 - s)).item(), rel=1e-12)
    # and a loss of the natural values backpropagates to u
    u = u0.clone().requires_grad_(True)
    v = space.from_unconstrained(u)
    (v["lr"] * 2 + v["momentum"] ** 2).backward()
    assert u.grad[0].item() == pytest.approx(2 * math.exp(-3.0), rel=1e-12)
    assert u.grad[2].item() == 0.0


def test_int_rounding_only_when_asked_and_edges_stay_finite():
    space = SearchSpace({"k": IntUniform(1, 4), "m": Uniform(0.0, 0.99)})
    u = torch.tensor([[0.3, 40.0], [-40.0, -40.0]], dtype=torch.float64)
    cont = space.from_unconstrained(u)["k"]
    assert not torch.equal(cont, cont.round())
    rounded = space.from_unconstrained(u, round_ints=True)["k"]
    assert torch.equal(rounded, rounded.round()) and rounded.min() >= 1 and rounded.max() <= 4
    ends = space.to_unconstrained({"k": [1.0, 4.0], "m": [0.0, 0.99]})  # lists -> float64
    assert torch.isfinite(ends).all()
    assert ends[0, 1].item() == pytest.approx(math.log(EDGE / (1 - EDGE)), rel=1e-9)
    assert space.from_unconstrained(ends)["m"][0].item() == pytest.approx(0.0, abs=1e-5)


def test_int_ends_round_trip_over_any_width():
    """The ends of a wide integer range come back as themselves (0..10**6 once gave 1 and 999999)."""
    for low, high in ((0, 10), (-5, 5), (0, 10 ** 6), (1, 3 * 10 ** 6)):
        d = IntUniform(low, high)
        x = torch.tensor([low, low + 1, high - 1, high], dtype=torch.float64)
        assert d.from_u(d.to_u(x), round_ints=True).tolist() == x.tolist()


def test_spaces_differ_by_order_as_their_u_columns_do():
    a = SearchSpace.default("sgd")
    b = SearchSpace({k: a[k] for k in reversed(a.names)}, optimizer="sgd")
    assert a != b and a == SearchSpace.default("sgd")
    u = a.sample_u(1, seed=0)
    assert a.from_unconstrained(u)["lr"] != b.from_unconstrained(u)["lr"]


def test_clip():
    space = mixed_space()
    c = space.clip({"lr": [1e-9, 0.01, 5.0], "momentum": [-1.0, 0.5, 2.0], "width": [0.2, 4.4, 30.0],
                    "eps": [0.0, 1.0, 2.0]})
    assert c["lr"].tolist() == [1e-4, 0.01, 0.5]
    assert c["momentum"].tolist() == [0.1, 0.5, 0.9]
    assert c["width"].tolist() == [2.0, 4.0, 9.0]
    assert c["eps"].tolist() == [1e-8] * 3
    with pytest.raises(ValueError, match="nope"):
        space.clip({"nope": 1.0})


@pytest.mark.parametrize("make, bad", [
    (lambda: LogUniform(0.0, 1.0), "low=0.0"),
    (lambda: LogUniform(-1.0, 1.0), "low=-1.0"),
    (lambda: LogUniform(0.1, 0.1), "high=0.1"),
    (lambda: Uniform(2.0, 1.0), "low=2.0"),
    (lambda: Uniform(float("nan"), 1.0), "nan"),
    (lambda: Uniform(0.0, float("inf")), "inf"),
    (lambda: IntUniform(1.5, 3), "1.5"),
    (lambda: IntUniform(3, 3), "low=3"),
    (lambda: Fixed(float("nan")), "nan"),
    (lambda: Fixed("0.1"), "'0.1'"),
    (lambda: Uniform(-1e308, 1e308), "finite width"),
    (lambda: IntUniform(0, 10 ** 30), r"within \+-2\*\*53"),
], ids=["log0", "logneg", "logeq", "unif_order", "nan", "inf", "int_frac", "int_eq", "fixed_nan", "fixed_str",
        "unif_wide", "int_huge"])
def test_invalid_distributions_raise_naming_the_value(make, bad):
    with pytest.raises(ValueError, match=bad):
        make()


def test_invalid_spaces_raise():
    with pytest.raises(ValueError, match=r"beta1.*valid names are \['init_scale', 'lr', 'momentum', "
                                         r"'weight_decay', 'width', 'depth', 'dropout'\]"):
        SearchSpace({"lr": LogUniform(1e-3, 1.0), "beta1": Uniform(0.5, 0.9)}, optimizer="sgd")
    with pytest.raises(ValueError, match="width"):  # a width is a whole number of units, at least 1
        SearchSpace({"lr": LogUniform(1e-3, 1.0), "width": Uniform(0.5, 64.0)}, optimizer="sgd")
    with pytest.raises(ValueError, match="width"):
        SearchSpace({"lr": LogUniform(1e-3, 1.0), "width": IntUniform(0, 64)}, optimizer="sgd")
    with pytest.raises(ValueError, match="momentum"):
        SearchSpace({"momentum": Uniform(0.0, 1.5)}, optimizer="sgd")  # momentum must stay below 1
    with pytest.raises(ValueError, match="rmsprop"):
        SearchSpace({"lr": LogUniform(1e-3, 1.0)}, optimizer="rmsprop")
    with pytest.raises(ValueError, match="no default"):
        SearchSpace.default("rmsprop")
    with pytest.raises(TypeError, match="lr"):
        SearchSpace({"lr": (1e-3, 1.0)})
    with pytest.raises(ValueError):
        SearchSpace({})
    SearchSpace({"lr": LogUniform(1e-3, 1.0), "init_scale": LogUniform(0.5, 2.0)}, optimizer="adamw")  # valid


def test_bad_values_and_u_raise():
    space = SearchSpace.default("sgd")
    with pytest.raises(ValueError, match="momentum"):
        space.to_unconstrained({"lr": [0.1], "weight_decay": [1e-4]})
    with pytest.raises(ValueError, match="outside"):
        space.to_unconstrained({"lr": [0.1], "momentum": [1.5], "weight_decay": [1e-4]})
    with pytest.raises(ValueError, match="outside"):
        space.to_unconstrained({"lr": [-0.1], "momentum": [0.5], "weight_decay": [1e-4]})
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        space.from_unconstrained(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="positive"):
        space.sample(0)


def test_serialization_and_repr():
    for space in (SearchSpace.default("sgd"), SearchSpace.default("adamw"), mixed_space()):
        again = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
        assert again == space
        assert all(type(again[n]) is type(space[n]) for n in space.names)
        assert torch.equal(again.sample(5, seed=2)["lr"], space.sample(5, seed=2)["lr"])
    r = repr(SearchSpace.default("adamw"))
    assert "LogUniform(low=0.0001, high=0.03)" in r and "Fixed(value=1e-08)" in r and "'adamw'" in r
    assert SearchSpace.default("sgd") != SearchSpace.default("adamw")
    with pytest.raises(ValueError, match="Gamma"):
        SearchSpace.from_dict({"params": {"lr": {"type": "Gamma", "low": 1}}})


def test_default_spaces_as_specified():
    sgd, adamw = SearchSpace.default("sgd"), SearchSpace.default("adamw")
    assert sgd.params == {"lr": LogUniform(1e-3, 1.0), "momentum": Uniform(0.0, 0.99),
                          "weight_decay": LogUniform(1e-6, 1e-2)}
    assert adamw.params == {"lr": LogUniform(1e-4, 3e-2), "beta1": Uniform(0.5, 0.99),
                            "beta2": Uniform(0.9, 0.9999), "eps": Fixed(1e-8),
                            "weight_decay": LogUniform(1e-6, 1e-1)}
    assert adamw.dims == ("lr", "beta1", "beta2", "weight_decay")


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_samples_feed_a_population(optimizer):
    space = SearchSpace.default(optimizer)
    values = space.sample(6, seed=0)
    pop = Population([5, 7, 3], size=6, optimizer=optimizer, hparams=values, dtype=torch.float64)
    for name in space.names:
        assert torch.equal(pop.hparams[name], values[name])


def test_with_ranges_keeps_each_kind_and_refuses_what_it_cannot_do():
    base = SearchSpace.default("sgd")
    wide = base.with_ranges({"lr": (1e-4, 3.0), "momentum": (0.0, 0.9)})
    assert isinstance(wide["lr"], LogUniform) and wide["lr"].bounds() == (1e-4, 3.0)
    assert isinstance(wide["momentum"], Uniform) and wide["momentum"].bounds() == (0.0, 0.9)
    assert wide["weight_decay"] == base["weight_decay"] and base["lr"].bounds() == (1e-3, 1.0)  # a copy
    with pytest.raises(ValueError, match=r"ranges: unknown hyperparameters \['beta1'\]"):
        base.with_ranges({"beta1": (0.5, 0.9)})
    with pytest.raises(ValueError, match="ranges: lr: LogUniform needs low > 0"):
        base.with_ranges({"lr": (0.0, 1.0)})
    with pytest.raises(ValueError, match="ranges: eps is fixed"):
        SearchSpace.default("adamw").with_ranges({"eps": (1e-9, 1e-7)})
    with pytest.raises(ValueError, match=r"ranges\['lr'\] must be a \(low, high\) pair"):
        base.with_ranges({"lr": 0.1})
    with pytest.raises(ValueError, match="momentum=.* reaches values outside the valid range"):
        base.with_ranges({"momentum": (0.5, 1.5)})


def test_with_ranges_adds_structural_dimensions_of_their_kinds():
    base = SearchSpace.default("sgd")
    grown = base.with_ranges({"depth": (1, 3), "width": (64.0, 256.0), "dropout": (0.0, 0.3), "lr": (1e-2, 0.5)})
    assert grown.dims == ("lr", "momentum", "weight_decay", "depth", "width", "dropout")
    assert grown["depth"] == IntUniform(1, 3) and grown["width"] == IntUniform(64, 256)
    assert grown["dropout"] == Uniform(0.0, 0.3) and "depth" not in base.params  # a copy
    assert grown.with_ranges({"depth": (2, 4)})["depth"] == IntUniform(2, 4)  # re-ranged once it is there
    with pytest.raises(ValueError, match=r"ranges: unknown hyperparameters \['layers'\]; valid names are \['lr', "
                                         r"'momentum', 'weight_decay', 'width', 'depth', 'dropout'\]"):
        base.with_ranges({"layers": (1, 2)})
    for bad, said in (({"depth": (0, 2)}, "ranges: depth: .* of at least 1"),
                      ({"width": (8.5, 16)}, "ranges: width: IntUniform needs integer bounds"),
                      ({"dropout": (0.0, 1.0)}, r"ranges: dropout: .* within \[0, 1\)"),
                      ({"depth": (2, 2)}, "ranges: depth: IntUniform needs low < high")):
        with pytest.raises(ValueError, match=said):
            base.with_ranges(bad)
