"""Successive halving and Hyperband over training steps: after each rung only the best ``1/eta`` of the
candidates go on (``Population.select``), so later, longer rungs train fewer candidates."""
from __future__ import annotations

from typing import Any, Optional

import torch

from ..search_space import SearchSpace
from .base import Tuner, TuningRun


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


def _start_bracket(run: TuningRun, plan: list[tuple[int, int]], key: int) -> None:
    """Put a fresh bracket (its first rung's candidates) into ``run.state``."""
    n0 = plan[0][0]
    run.state.update(plan=plan, rung=0, pop=run.population(run.initial_u(n0, key)).state_dict(), ids=run.new_ids(n0))


def _advance_rung(run: TuningRun) -> bool:
    """Train the current rung, record it, keep the best for the next rung; True when the bracket is done."""
    plan, r = run.state["plan"], run.state["rung"]
    pop, ids = run.load(), run.state["ids"]
    metrics = run.train(pop, ids, plan[r][1] - pop.steps_done, key=run.state["round"])
    last = r == len(plan) - 1
    run.observe(pop, ids, metrics, final=last, rung=r)
    run.note(rung=r, population=pop.size, steps=pop.steps_done)
    if last:
        run.state.update(pop=None, ids=None)
        return True
    keep = torch.argsort(run.objective(metrics), stable=True)[:plan[r + 1][0]]
    run.state.update(pop=pop.select(keep).state_dict(), ids=[ids[int(i)] for i in keep], rung=r + 1)
    return False


class SuccessiveHalving(Tuner):
    """Successive halving: ``rungs`` rungs, each ``eta`` times longer with ``1/eta`` of the candidates, as
    many candidates as the budget allows; the pick is the best of the last rung (full ``steps``)."""

    name = "sh"

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

    def _start(self, run: TuningRun) -> None:
        _start_bracket(run, self._plans(run.plan_budget)[0], key=0)

    def _advance(self, run: TuningRun) -> None:
        run.state["done"] = _advance_rung(run)


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

    def _start(self, run: TuningRun) -> None:
        plans = self._plans(run.plan_budget)
        run.state.update(brackets=plans, bracket=0)
        _start_bracket(run, plans[0], key=0)

    def _advance(self, run: TuningRun) -> None:
        run.note(bracket=run.state["bracket"])
        if not _advance_rung(run):
            return
        b = run.state["bracket"] + 1
        run.state["bracket"] = b
        if b == len(run.state["brackets"]):
            run.state["done"] = True
        else:
            _start_bracket(run, run.state["brackets"][b], key=b)
