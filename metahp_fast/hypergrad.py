"""Hypergradients of the validation objective with respect to ``u``: antithetic evolution strategies over one
population (first-order training only), and the exact reference by autograd through a short unroll.

ES: ``P`` directions ``eps_j ~ N(0, I)`` give the pairs ``u +- sigma * eps_j``, trained as one population (the
same initial weights and minibatches for all, so a pair differs only in its hyperparameters), and
``grad ~ sum_j (L+_j - L-_j) eps_j / (2 P sigma)``. Any callable that maps rows of ``u`` to losses can be
plugged in (:func:`es_hypergradient`); :func:`metahp_fast.training.validation_objective` is the usual one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from .backends.torch_backend import functional_step
from .batches import Batches
from .model import forward, loss_only
from .population import Population
from .search_space import SearchSpace, check_u, hparams_from_u
from .tasks import Task
from .training import TrainConfig, prepare_task


@dataclass
class ESEstimate:
    """One antithetic ES estimate: ``grad`` (d,), the pair differences ``diffs`` (P,) = L+ - L-, the measured
    ``losses`` (2P,) (plus rows then minus rows), the rows ``u`` (2P, d) and directions ``eps`` (P, d);
    ``extra_losses`` are the losses of any extra rows evaluated in the same population."""

    grad: Tensor
    diffs: Tensor
    losses: Tensor
    u: Tensor
    eps: Tensor
    extra_losses: Optional[Tensor] = None


def antithetic_directions(n_pairs: int, dim: int, seed: int) -> Tensor:
    """``n_pairs`` standard normal directions (P, d), float64, fixed by ``seed``."""
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive int; got {n_pairs!r}")
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(n_pairs, dim, generator=gen, dtype=torch.float64)


def antithetic_u(center: Tensor, eps: Tensor, sigma: float) -> Tensor:
    """The rows ``[center + sigma * eps; center - sigma * eps]`` (2P, d)."""
    c = center.reshape(1, -1).to(eps.dtype)
    return torch.cat([c + sigma * eps, c - sigma * eps])


def es_gradient(losses: Tensor, eps: Tensor, sigma: float, cap: Optional[float] = None) -> tuple[Tensor, Tensor]:
    """``(grad, diffs)`` from the losses (2P,) of :func:`antithetic_u`'s rows: ``sum_j (L+ - L-) eps_j / (2 P
    sigma)``. Losses above ``cap`` count as ``cap``; non-finite ones (diverged candidates) as ``cap`` or, without
    one, the worst finite loss measured, so a pair with one diverged side still points away from it; with no
    finite loss and no cap the gradient is zero."""
    P = eps.shape[0]
    if losses.shape != (2 * P,):
        raise ValueError(f"losses must have shape ({2 * P},) for {P} pairs; got {tuple(losses.shape)}")
    _check_sigma(sigma)
    L = losses.detach().double()
    if cap is not None:
        L = torch.clamp(torch.nan_to_num(L, nan=cap, posinf=cap), max=cap)
    finite = torch.isfinite(L)
    worst = L[finite].max() if finite.any() else torch.tensor(0.0, dtype=torch.float64)
    L = torch.where(finite, L, worst)
    diffs = L[:P] - L[P:]
    return (diffs.unsqueeze(1) * eps.double()).sum(0) / (2 * P * sigma), diffs


def es_hypergradient(evaluate: Callable[[Tensor], Tensor], center: Tensor, sigma: float, n_pairs: int,
                     seed: int, extra: Optional[Tensor] = None, cap: Optional[float] = None) -> ESEstimate:
    """Antithetic ES estimate of the gradient of ``evaluate`` at ``center`` (d,).

    ``evaluate`` maps rows of ``u`` (n, d) to losses (n,), all rows trained together (one population);
    ``extra`` rows (m, d), e.g. the center itself, are appended to the same call and their losses returned;
    ``cap`` bounds the losses (see :func:`es_gradient`)."""
    center = torch.as_tensor(center, dtype=torch.float64).reshape(-1)
    _check_sigma(sigma)
    eps = antithetic_directions(n_pairs, center.numel(), seed)
    u = antithetic_u(center, eps, sigma)
    rows = u if extra is None else torch.cat([u, torch.as_tensor(extra, dtype=torch.float64).reshape(-1, u.shape[1])])
    out = torch.as_tensor(evaluate(rows)).double().reshape(-1)
    if out.shape[0] != rows.shape[0]:
        raise ValueError(f"evaluate returned {out.shape[0]} losses for {rows.shape[0]} rows of u")
    grad, diffs = es_gradient(out[:u.shape[0]], eps, sigma, cap)
    return ESEstimate(grad, diffs, out[:u.shape[0]], u, eps, None if extra is None else out[u.shape[0]:])


def unrolled_loss(task: Task, space: SearchSpace, u: Tensor, config: TrainConfig, seed: int) -> Tensor:
    """Validation loss after ``config.steps`` steps from ``u`` (d,), as a differentiable function of ``u``:
    the torch backend's pure step unrolled on the minibatches :func:`validation_objective` trains on (the
    same :class:`~metahp_fast.batches.Batches` that :meth:`Population.fit` draws)."""
    if not u.requires_grad:
        raise ValueError("u must require grad (u.requires_grad_()) to differentiate the unroll")
    check_u("u", u.detach(), space)
    base = Population(task.layers(config.hidden), 1, config.optimizer,
                      {**hparams_from_u(space, u.detach().reshape(1, -1)), "init_scale": 1.0},
                      nesterov=config.nesterov, activation=config.activation, loss=task.loss, seed=int(seed),
                      device=config.device, dtype=config.dtype, backend="torch")
    hp = {k: v.clone() for k, v in base.hparams.items()}
    hp.update({k: v.to(config.dtype) for k, v in space.from_unconstrained(u.reshape(1, -1)).items()})
    params = [p.clone() * hp["init_scale"].view((-1,) + (1,) * (p.dim() - 1)) for p in base.params]
    opt_state = {k: [t.clone() for t in v] for k, v in base.optimizer_state.items()}
    step_count, alive = base.step_count.clone(), base.alive.clone()
    task = prepare_task(task, config)
    x, y = task.x_train, task.y_train
    for idx in Batches(len(x), config.batch_size, seed, x.device).take(config.steps):
        _, params, opt_state, step_count, alive = functional_step(
            params, opt_state, step_count, hp, alive, x[idx], y[idx], base.spec)
    return loss_only(forward(params, task.x_val, config.activation), task.y_val, task.loss)[0]


def exact_hypergradient(task: Task, space: SearchSpace, u: Tensor, config: TrainConfig,
                        seed: int) -> tuple[float, Tensor]:
    """``(validation loss, d loss / d u)`` at ``u`` (d,) by autograd through the unroll (the reference that
    ES estimates are checked against; memory grows with ``config.steps``, so keep the unroll short)."""
    u = check_u("u", u, space)[0].clone().requires_grad_()
    loss = unrolled_loss(task, space, u, config, seed)
    (grad,) = torch.autograd.grad(loss, u)
    return float(loss.detach()), grad


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two vectors."""
    a, b = a.double().flatten(), b.double().flatten()
    den = float(a.norm() * b.norm())
    return float(a @ b) / den if den > 0 else math.nan


def _check_sigma(sigma: float) -> None:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
        raise ValueError(f"sigma must be a positive number; got {sigma!r}")


__all__ = ["ESEstimate", "antithetic_directions", "antithetic_u", "es_gradient", "es_hypergradient",
           "unrolled_loss", "exact_hypergradient", "cosine"]
