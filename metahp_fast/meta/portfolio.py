"""Portfolios: k configurations proposed at once for a new dataset, the population's first round.

A meta-dataset records the validation (and test) loss that M fixed configurations reach on many datasets.
From it, ``constant`` takes the configurations best on average, and ``greedy`` builds the portfolio the way
auto-sklearn 2.0 and TabRepo do: each next member is the one that most lowers the mean over datasets of the
portfolio's best normalized validation loss. Both are static: they ignore the task and the budget they are
given, which a conditioned portfolio (a meta-learner g(task, budget, k)) uses."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from .metadataset import MetaDataset, normalize
from .shipped import shipped_file


def greedy_portfolio(norm: Tensor, k: int) -> list[int]:
    """Indices of k configurations chosen greedily: each minimizes the mean over datasets of the portfolio's
    best normalized loss (ties go to the lower index)."""
    norm = torch.as_tensor(norm, dtype=torch.float64)
    _check_k(k, norm.shape[1])
    best = torch.full((norm.shape[0],), math.inf, dtype=torch.float64)
    chosen: list[int] = []
    for _ in range(k):
        score = torch.minimum(best[:, None], norm).mean(0)
        score[chosen] = math.inf
        j = int(score.argmin())
        chosen.append(j)
        best = torch.minimum(best, norm[:, j])
    return chosen


def constant_portfolio(norm: Tensor, k: int) -> list[int]:
    """Indices of the k configurations with the lowest mean normalized loss (k = 1: the best single one)."""
    norm = torch.as_tensor(norm, dtype=torch.float64)
    _check_k(k, norm.shape[1])
    return [int(i) for i in torch.argsort(norm.mean(0), stable=True)[:k]]


def portfolio_score(norm: Tensor, members: Sequence[int]) -> float:
    """Mean over datasets of the best normalized loss among ``members``: what the greedy step minimizes."""
    return float(torch.as_tensor(norm, dtype=torch.float64)[:, list(members)].amin(1).mean())


class StaticPortfolio:
    """A portfolio built once from a meta-dataset: ``propose(task, k, budget)`` -> k configurations as natural
    values (name -> (k,) float64 tensor), the same for every task and budget."""

    METHODS = ("constant", "greedy")

    def __init__(self, meta: MetaDataset, method: str = "greedy", max_k: int = 32):
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}; got {method!r}")
        self.meta, self.method = meta, method
        build = greedy_portfolio if method == "greedy" else constant_portfolio
        self.order = build(meta.normalized("val"), min(max_k, meta.u.shape[0]))

    def propose(self, task: Any = None, k: int = 8, budget: Any = None) -> dict[str, Tensor]:
        """The first k members (``task`` and ``budget`` are accepted for the common interface and unused)."""
        _check_k(k, len(self.order))
        u = self.meta.u[self.order[:k]]
        return {n: v.double() for n, v in self.meta.space.from_unconstrained(u, round_ints=True,
                                                                            include_fixed=True).items()}


def load_portfolio(path: Any) -> Any:
    """A portfolio file of either kind (:class:`~metahp_fast.meta.conditioned.ConditionedPortfolio` or
    :class:`~metahp_fast.meta.nearest.NearestPortfolio`), read safely; what tuners take as ``init``."""
    from ..files import load_file
    from .conditioned import KIND as CONDITIONED, ConditionedPortfolio
    from .nearest import KIND as NEAREST, NearestPortfolio
    if not Path(path).is_file():
        raise FileNotFoundError(f"path: no portfolio file at {str(path)!r}")
    kind = load_file(path, (CONDITIONED, NEAREST))["kind"]
    return (NearestPortfolio if kind == NEAREST else ConditionedPortfolio).load(path)


#: The shipped portfolios by kind: their files inside the package, ``pretrained_<stem>_<optimizer>.pt``.
PRETRAINED = {"nearest": "nearest", "conditioned": "portfolio"}


def pretrained_portfolio(optimizer: str = "adamw", kind: str = "nearest") -> Any:
    """A portfolio shipped inside the package: ``nearest`` (the default of ``tune --portfolio`` and ``suggest
    --k``, measured the better zero-shot portfolio in benchmarks/results/meta_eval/) or ``conditioned``."""
    if kind not in PRETRAINED:
        raise ValueError(f"kind must be one of {sorted(PRETRAINED)}; got {kind!r}")
    return load_portfolio(shipped_file(PRETRAINED[kind], optimizer, f"{kind} portfolio"))


def _check_k(k: Any, available: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"k must be an int from 1 to {available} (the configurations available); got {k!r}")


__all__ = ["normalize", "greedy_portfolio", "constant_portfolio", "portfolio_score",
           "StaticPortfolio", "load_portfolio", "PRETRAINED", "pretrained_portfolio"]
