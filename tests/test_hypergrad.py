"""Hypergradients: the antithetic ES estimate against the exact one (autograd through the unroll), the exact
one against finite differences, and the estimator's edge cases."""
import math

import numpy as np
import pytest
import torch

from metahp_fast import LogUniform, SearchSpace, Uniform
from metahp_fast.hypergrad import (antithetic_directions, antithetic_u, cosine, es_gradient, es_hypergradient,
                                   exact_hypergradient)
from metahp_fast.tasks import from_arrays
from metahp_fast.training import TrainConfig, validation_objective
from tests.single_thread import one_thread  # noqa: F401  (autouse)


@pytest.fixture(scope="module")
def problem():
    """A small smooth problem: a tanh MLP regressing a teacher's output, full-batch SGD, float64."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 5))
    y = np.tanh(x @ rng.standard_normal((5, 3))) @ rng.standard_normal(3) + 0.1 * rng.standard_normal(120)
    task = from_arrays(x, y, name="smooth", kind="regression")
    space = SearchSpace({"lr": LogUniform(1e-3, 1.0), "momentum": Uniform(0.0, 0.99),
                         "weight_decay": LogUniform(1e-4, 1.0)}, optimizer="sgd")
    config = TrainConfig(hidden=(8,), steps=20, batch_size=1000, activation="tanh", dtype=torch.float64,
                         backend="torch")
    return task, space, config


@pytest.mark.parametrize("u", [[-3.0, 0.0, -3.0], [-4.0, 1.0, -2.5], [-2.0, -1.0, -1.5]])
def test_es_estimate_agrees_with_the_exact_hypergradient(problem, u):
    task, space, config = problem
    u = torch.tensor(u, dtype=torch.float64)
    loss, exact = exact_hypergradient(task, space, u, config, seed=0)
    est = es_hypergradient(lambda rows: validation_objective(task, space, rows, config, seed=0), u, sigma=0.05,
                           n_pairs=32, seed=1, extra=u.unsqueeze(0))
    assert cosine(est.grad, exact) > 0.9, (est.grad, exact)
    # the center trained inside the ES population reaches the loss the unroll computes
    assert float(est.extra_losses[0]) == pytest.approx(loss, rel=1e-9)
    assert est.u.shape == (64, 3) and est.diffs.shape == (32,)


def test_exact_hypergradient_matches_finite_differences(problem):
    task, space, config = problem
    u = torch.tensor([-3.0, 0.5, -2.0], dtype=torch.float64)
    _, exact = exact_hypergradient(task, space, u, config, seed=0)
    h = 1e-5
    eye = torch.eye(3, dtype=torch.float64)
    vals = validation_objective(task, space, torch.cat([u + h * eye, u - h * eye]), config, seed=0)
    fd = (vals[:3] - vals[3:]) / (2 * h)
    torch.testing.assert_close(exact, fd, rtol=1e-4, atol=1e-8)


def test_exact_hypergradient_through_init_scale_and_minibatches(problem):
    task, _, config = problem
    space = SearchSpace({"lr": LogUniform(1e-3, 1.0), "init_scale": LogUniform(0.1, 10.0)}, optimizer="sgd")
    config = TrainConfig(**{**config.__dict__, "batch_size": 32, "steps": 10})
    u = torch.tensor([-2.0, 0.3], dtype=torch.float64)
    _, exact = exact_hypergradient(task, space, u, config, seed=3)
    h = 1e-5
    eye = torch.eye(2, dtype=torch.float64)
    vals = validation_objective(task, space, torch.cat([u + h * eye, u - h * eye]), config, seed=3)
    torch.testing.assert_close(exact, (vals[:2] - vals[2:]) / (2 * h), rtol=1e-4, atol=1e-8)


def test_es_gradient_of_a_linear_function_and_antithetic_layout():
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    center = torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64)
    est = es_hypergradient(lambda u: u @ w, center, sigma=0.1, n_pairs=400, seed=0)
    assert cosine(est.grad, w) > 0.98
    # L+ - L- of a linear function is exactly 2 sigma w.eps
    torch.testing.assert_close(est.diffs, 2 * 0.1 * est.eps @ w)
    eps = antithetic_directions(3, 2, seed=1)
    u = antithetic_u(torch.zeros(2, dtype=torch.float64), eps, 0.5)
    torch.testing.assert_close(u, torch.cat([0.5 * eps, -0.5 * eps]))
    assert torch.equal(antithetic_directions(3, 2, seed=1), eps)


def test_diverged_and_exploding_losses_do_not_poison_the_gradient():
    eps = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    losses = torch.tensor([math.inf, 1.0, 0.5, 1.0], dtype=torch.float64)  # u+ of pair 0 diverged
    grad, diffs = es_gradient(losses, eps, sigma=0.5)
    assert torch.isfinite(grad).all() and grad[0] > 0 and diffs[1] == 0  # points away from the diverged side
    grad_cap, _ = es_gradient(torch.tensor([1e30, 1.0, 0.5, 1.0], dtype=torch.float64), eps, 0.5, cap=2.0)
    torch.testing.assert_close(grad_cap, torch.tensor([(2.0 - 0.5) / 2, 0.0], dtype=torch.float64))
    zero, _ = es_gradient(torch.full((4,), math.nan, dtype=torch.float64), eps, 0.5)
    assert torch.equal(zero, torch.zeros(2, dtype=torch.float64))


def test_bad_arguments_name_themselves(problem):
    task, space, config = problem
    eps = antithetic_directions(2, 3, seed=0)
    with pytest.raises(ValueError, match="losses must have shape \\(4,\\)"):
        es_gradient(torch.zeros(3), eps, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        es_gradient(torch.zeros(4), eps, 0.0)
    with pytest.raises(ValueError, match="n_pairs"):
        antithetic_directions(0, 3, seed=0)
    with pytest.raises(ValueError, match="evaluate returned 3 losses for 4 rows"):
        es_hypergradient(lambda u: torch.zeros(3), torch.zeros(3), 0.1, 2, seed=0)
    with pytest.raises(ValueError, match=r"u must have shape \(3,\)"):
        exact_hypergradient(task, space, torch.zeros(2), config, seed=0)
    with pytest.raises(ValueError, match="u must hold finite"):
        validation_objective(task, space, torch.tensor([[math.nan, 0.0, 0.0]]), config, seed=0)
