"""Gradient-based tuning: Adam on ``u`` with hypergradients from antithetic ES, each iteration one
population of ``2 * n_pairs + 1`` candidates (the pairs and the current center) trained the full ``steps``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from ..hypergrad import es_hypergradient
from ..search_space import SearchSpace
from ..training import make_population
from ..objectives import baseline_objective
from .base import Tuner, TuningRun, _positive
from .checkpoint import TunerState


@dataclass
class ESState(TunerState):
    """The search's center ``u`` (d,), Adam's moments ``m`` and ``v`` on it, the loss cap and the number of
    iterations the budget buys."""

    center: Tensor
    m: Tensor
    v: Tensor
    cap: float
    iterations: int


class ESGradient(Tuner):
    """ES-gradient tuning from ``init`` (default: the center of the space) with ``n_pairs`` antithetic pairs
    of spread ``sigma`` (in ``u``) per iteration and Adam (``lr``, ``betas``) on ``u``; the pick is the best
    candidate trained on the way (pairs and centers alike). Losses are capped at the larger of the untrained
    model's and the label prior's, so diverged or exploding candidates count as "learned nothing"."""

    name = "es"
    State = ESState

    def __init__(self, space: Optional[SearchSpace] = None, *, n_pairs: int = 3, sigma: float = 0.5,
                 lr: float = 1.0, betas: tuple[float, float] = (0.5, 0.9), **kwargs: Any):
        super().__init__(space, **kwargs)
        if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
            raise ValueError(f"n_pairs must be a positive int; got {n_pairs!r}")
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1); got {betas!r}")
        self.n_pairs, self.sigma, self.lr = n_pairs, _positive("sigma", sigma), _positive("lr", lr)
        self.betas = (float(betas[0]), float(betas[1]))

    def settings(self) -> dict[str, Any]:
        return {"n_pairs": self.n_pairs, "sigma": self.sigma, "lr": self.lr, "betas": list(self.betas)}

    def check_budget(self, budget: float) -> None:
        super().check_budget(budget)
        n = 2 * self.n_pairs + 1
        self.require_trainings(budget, n, f"for ES with n_pairs={self.n_pairs}: one iteration trains {n} candidates")

    def _start(self, run: TuningRun) -> ESState:
        iterations = int(run.plan_budget // (2 * self.n_pairs + 1))  # >= 1: run() checked the budget
        center = run.space.center() if run.init is None else run.init.clone().reshape(-1, run.init.shape[-1])[0]
        d = center.numel()
        center = run.clamp_u(center)
        first = make_population(run.task, run.space, center.unsqueeze(0), run.config, run.seed)
        untrained = run.objective(first.evaluate(run.task.x_val, run.task.y_val))
        cap = max(baseline_objective(run.task, self.objective), float(untrained[0]))
        return ESState(center=center, m=torch.zeros(d, dtype=torch.float64), v=torch.zeros(d, dtype=torch.float64),
                       cap=cap, iterations=iterations)

    def _evaluate(self, run: TuningRun, u: Tensor) -> Tensor:
        """Train and score the rows of ``u``, each clamped into the space's ranges first: a pair whose side
        lands past an end is measured at that end, so no candidate trains outside the user's space and the
        difference still points the right way."""
        pop = run.population(run.clamp_u(u))
        ids = run.new_ids(pop.size)
        metrics = run.train(pop, ids, run.config.steps, key=run.state.round)
        run.observe(pop, ids, metrics, final=True, iteration=run.state.round)
        return run.objective(metrics)

    def _advance(self, run: TuningRun) -> None:
        it, own = run.state.round, run.own
        center = own.center
        est = es_hypergradient(lambda u: self._evaluate(run, u), center, self.sigma, self.n_pairs,
                               seed=run.seed_for(it, 2), extra=center.unsqueeze(0),
                               cap=own.cap)
        b1, b2 = self.betas
        t = it + 1
        m = b1 * own.m + (1 - b1) * est.grad
        v = b2 * own.v + (1 - b2) * est.grad ** 2
        step = self.lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + 1e-12)
        new_center = run.clamp_u(center - step)
        run.note(center=center.tolist(), center_objective=float(est.extra_losses[0]), grad=est.grad.tolist())
        own.center, own.m, own.v = new_center, m, v
        run.state.done = t >= own.iterations
