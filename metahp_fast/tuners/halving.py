"""Successive halving and Hyperband over training steps: after each rung only the best ``1/eta`` of the
candidates go on (``Population.select``), so later, longer rungs train fewer candidates."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..search_space import SearchSpace
from .base import Tuner, TuningRun
from .checkpoint import TunerState


def rung_plan(budget: float, steps: int, eta: int, rungs: int) -> list[tuple[int, int]]:
    """``[(candidates, cumulative steps)]`` per rung: steps ``steps / eta^(rungs-1-i)`` (the last rung the
    full ``steps``), ``n0 // eta^i`` candidates, with the largest ``n0`` whose cost fits ``budget * steps``."""
    ts = sorted({max(1, round(steps / eta ** (rungs - 1 - i))) for i in range(rungs)})

    def plan(n0: int) -> list[tuple[int, int]]:
        return [(max(1, n0 // eta ** i), t) for i, t in enumerate(ts)]

    def cost(n0: int) -> int:
        return sum(n * (t - t0) for (n, t), t0 in zip(plan(n0), [0] + ts[:-1]))

    cap = budget * steps
    if cost(1) > cap:
        raise ValueError(f"budget={budget} is too small for {len(ts)} rungs; it needs at least "
                         f"{cost(1) / steps:.3g} full trainings")
    lo, hi = 1, max(1, int(cap // ts[0]) + 1)
    while lo < hi:  # the largest n0 with cost(n0) <= cap (cost grows with n0)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= cap else (lo, mid - 1)
    return plan(lo)


def _check_int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name} must be an int >= {low}; got {v!r}")
    return v


@dataclass
class HalvingState(TunerState):
    """Where a run of successive halving (or Hyperband) is: its brackets' rung plans ``[(candidates,
    cumulative steps)]``, the current bracket and its current rung (the live candidates are ``run.state.pop``)."""

    brackets: list[list[list[int]]]
    bracket: int = 0
    rung: int = 0


def _start_bracket(run: TuningRun, plan: list[list[int]], key: int) -> None:
    """Put a fresh bracket's first rung of candidates into ``run.state``."""
    n0 = plan[0][0]
    run.state.pop, run.state.ids = run.population(run.initial_u(n0, key)).state_dict(), run.new_ids(n0)
    run.own.rung = 0


def _advance_rung(run: TuningRun) -> bool:
    """Train the current rung, record it, keep the best for the next rung; True when the bracket is done."""
    own = run.own
    plan, r = own.brackets[own.bracket], own.rung
    pop, ids = run.load(), run.state.ids
    metrics = run.train(pop, ids, plan[r][1] - pop.steps_done, key=run.state.round)
    last = r == len(plan) - 1
    run.observe(pop, ids, metrics, final=last, rung=r)
    run.note(rung=r, population=pop.size, steps=pop.steps_done)
    if last:
        run.state.pop, run.state.ids = None, None
        return True
    keep = torch.argsort(run.objective(metrics), stable=True)[:plan[r + 1][0]]
    run.state.pop, run.state.ids = pop.select(keep).state_dict(), [ids[int(i)] for i in keep]
    own.rung = r + 1
    return False


def _plain(plans: list[list[tuple[int, int]]]) -> list[list[list[int]]]:
    """Rung plans as nested lists of ints (as a checkpoint holds them)."""
    return [[[int(n), int(t)] for n, t in plan] for plan in plans]


class SuccessiveHalving(Tuner):
    """Successive halving: ``rungs`` rungs, each ``eta`` times longer with ``1/eta`` of the candidates, as
    many candidates as the budget allows; the pick is the best of the last rung (full ``steps``)."""

    name = "sh"
    State = HalvingState

    def __init__(self, space: Optional[SearchSpace] = None, *, eta: int = 3, rungs: int = 3, **kwargs: Any):
        super().__init__(space, **kwargs)
        self.eta, self.rungs = _check_int("eta", eta, 2), _check_int("rungs", rungs, 1)

    def settings(self) -> dict[str, Any]:
        return {"eta": self.eta, "rungs": self.rungs}

    def check_budget(self, budget: float) -> None:
        super().check_budget(budget)
        try:
            self._plans(self.plan_budget(budget))
        except ValueError as e:
            if self.folds == 1:
                raise
            raise ValueError(f"budget={budget} with folds={self.folds} plans as {self.plan_budget(budget):g} "
                             f"cross-validated trainings: {e}") from None

    def _plans(self, budget: float) -> list[list[tuple[int, int]]]:
        """The brackets' rung plans for ``budget`` (one bracket; Hyperband has one per rung count)."""
        return [rung_plan(budget, self.config.steps, self.eta, self.rungs)]

    def _start(self, run: TuningRun) -> HalvingState:
        state = HalvingState(brackets=_plain(self._plans(run.plan_budget)))
        run.state.own = state
        _start_bracket(run, state.brackets[0], key=0)
        return state

    def _advance(self, run: TuningRun) -> None:
        if _advance_rung(run):  # the last bracket's last rung (successive halving has one bracket)
            b = run.own.bracket + 1
            run.own.bracket = b
            if b == len(run.own.brackets):
                run.state.done = True
            else:
                _start_bracket(run, run.own.brackets[b], key=b)


class Hyperband(SuccessiveHalving):
    """Hyperband: successive-halving brackets from ``rungs`` rungs (many candidates, short first rung) down to
    one (a plain random search), each with an equal share of the budget; the pick is the best final
    candidate of all brackets."""

    name = "hyperband"

    def __init__(self, space: Optional[SearchSpace] = None, *, eta: int = 3, rungs: int = 4, **kwargs: Any):
        super().__init__(space, eta=eta, rungs=rungs, **kwargs)

    def check_budget(self, budget: float) -> None:
        Tuner.check_budget(self, budget)
        self.require_trainings(budget, self.rungs, f"for Hyperband with rungs={self.rungs}: its {self.rungs} brackets "
                               "share the budget equally and each trains at least one candidate the full steps")
        super().check_budget(budget)

    def _plans(self, budget: float) -> list[list[tuple[int, int]]]:
        share = budget / self.rungs
        return [rung_plan(share, self.config.steps, self.eta, s) for s in range(self.rungs, 0, -1)]

    def _advance(self, run: TuningRun) -> None:
        run.note(bracket=run.own.bracket)
        super()._advance(run)
