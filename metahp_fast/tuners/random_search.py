"""Random search: ``budget`` (with folds, ``budget / folds``) candidates drawn from the space (or around ``init``), trained as one population."""
from __future__ import annotations

from .base import Tuner, TuningRun
from .checkpoint import NoState


class RandomSearch(Tuner):
    """``int(budget)`` candidates trained together for the full ``steps``, in rounds of ``eval_every`` steps."""

    name = "random"

    def check_budget(self, budget: float) -> None:
        super().check_budget(budget)
        self.require_trainings(budget, 1, "for random search: it trains whole candidates, each the full steps")

    def _start(self, run: TuningRun) -> NoState:
        n = int(run.plan_budget)  # >= 1: run() checked the budget
        run.state.pop, run.state.ids = run.population(run.initial_u(n, 0)).state_dict(), run.new_ids(n)
        return NoState()

    def _advance(self, run: TuningRun) -> None:
        pop, ids = run.load(), run.state.ids
        steps = min(run.config.every, run.config.steps - pop.steps_done)
        metrics = run.train(pop, ids, steps, key=run.state.round)
        done = pop.steps_done >= run.config.steps
        run.observe(pop, ids, metrics, final=done)
        run.state.pop, run.state.done = pop.state_dict(), done
        run.note(population=pop.size, steps=pop.steps_done)
