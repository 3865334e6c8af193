"""Population based training: at regular intervals the worst candidates take the weights and optimizer
state of the best (exploit) and perturb the hyperparameters they inherit in ``u`` (explore)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import Tensor

from ..population import Population
from ..population_group import PopulationGroup
from ..search_space import STRUCTURAL, SearchSpace, hparams_from_u
from ..training import split_structural
from .base import Tuner, TuningRun, _positive
from .checkpoint import TunerState
from .cross_validation import FoldedPopulation


@torch.no_grad()
def copy_candidates(pop: Union[Population, PopulationGroup, FoldedPopulation], src: Tensor, dst: Tensor) -> None:
    """Overwrite candidates ``dst`` with the weights, optimizer state, step counts and alive flags of ``src``
    (same length; with folds, on every cut), in place; hyperparameters are left to the caller. In a group of
    depths, a candidate copied from another depth takes that depth (exploit chooses architecture too)."""
    src, dst = torch.as_tensor(src, dtype=torch.long), torch.as_tensor(dst, dtype=torch.long)
    if src.shape != dst.shape or src.dim() != 1:
        raise ValueError(f"src and dst must be 1-D index lists of one length; got {tuple(src.shape)}, "
                         f"{tuple(dst.shape)}")
    if len(set(dst.tolist())) != len(dst) or (torch.cat([src, dst]) >= pop.size).any() or \
            (torch.cat([src, dst]) < 0).any():
        raise ValueError(f"dst must be distinct indices and all indices in [0, {pop.size})")
    for p in pop.pops if isinstance(pop, FoldedPopulation) else [pop]:
        p.copy_candidates(src, dst)


@dataclass
class PBTState(TunerState):
    """Every live candidate's ``u`` (K, d), rows in the order of ``run.state.pop`` and ``ids``."""

    u: Tensor


class PBT(Tuner):
    """Population based training of ``size`` candidates (default ``int(budget)``) for the full ``steps`` in
    ``rounds`` intervals. After each interval but the last, the worst ``fraction`` copy a random one of the
    best ``fraction`` and perturb its ``u`` by Gaussian noise of standard deviation ``perturb``."""

    name = "pbt"
    State = PBTState

    def __init__(self, space: Optional[SearchSpace] = None, *, size: Optional[int] = None, rounds: int = 10,
                 fraction: float = 0.25, perturb: float = 0.25, **kwargs: Any):
        super().__init__(space, **kwargs)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 2):
            raise ValueError(f"size must be an int >= 2 or None; got {size!r}")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be a positive int; got {rounds!r}")
        if not isinstance(fraction, (int, float)) or not 0 < fraction <= 0.5:
            raise ValueError(f"fraction must be in (0, 0.5]; got {fraction!r}")
        self.size, self.rounds, self.fraction = size, rounds, float(fraction)
        self.perturb = _positive("perturb", perturb)

    def settings(self) -> dict[str, Any]:
        return {"size": self.size, "rounds": self.rounds, "fraction": self.fraction, "perturb": self.perturb}

    def check_budget(self, budget: float) -> None:
        super().check_budget(budget)
        plan = self.plan_budget(budget)
        k = self.size or int(plan)
        if k < 2 or k > plan:
            raise ValueError(f"PBT trains {k} candidates for the full steps: budget must be >= "
                             f"{max(k, 2) * self.folds}; got {budget}{self.budget_note()}")

    def _start(self, run: TuningRun) -> PBTState:
        k = self.size or int(run.plan_budget)
        u = run.initial_u(k, 0)
        run.state.pop, run.state.ids = run.population(u).state_dict(), run.new_ids(k)
        return PBTState(u=u)

    def _advance(self, run: TuningRun) -> None:
        pop, ids, u = run.load(), list(run.state.ids), run.own.u
        r, steps = run.state.round, run.config.steps
        end = min(steps, round((r + 1) * steps / self.rounds)) if r + 1 < self.rounds else steps
        metrics = run.train(pop, ids, max(1, end - pop.steps_done), key=r)
        done = pop.steps_done >= steps
        run.observe(pop, ids, metrics, final=done)
        run.note(population=pop.size, steps=pop.steps_done)
        if not done:
            obj = run.objective(metrics)
            order = torch.argsort(obj, stable=True)
            q = max(1, int(pop.size * self.fraction))
            top, bottom = order[:q], order[-q:]
            gen = torch.Generator().manual_seed(run.seed_for(r, 1))
            src = top[torch.randint(0, q, (q,), generator=gen)]
            copy_candidates(pop, src, bottom)
            u = u.clone()
            step = self.perturb * torch.randn(q, u.shape[1], generator=gen, dtype=u.dtype)
            # widths, depths and dropout were copied with the weights (a group moves a candidate copied across
            # depths)
            step[:, [run.space.dims.index(k) for k in STRUCTURAL if k in run.space.dims]] = 0
            u[bottom] = run.reflect_u(u[src] + step)
            pop.hparams = {k: v.to(pop.dtype) for k, v in split_structural(hparams_from_u(run.space, u))[0].items()}
            curves = run.state.curves
            for b, s, i in zip(bottom.tolist(), src.tolist(), run.new_ids(q)):
                curves[i] = [curves[ids[s]][-1]]  # the child's curve starts where its parent's is
                ids[b] = i
            run.note(exploited=q)
        run.state.pop, run.state.ids, run.state.done, run.own.u = pop.state_dict(), ids, done, u
