"""Portfolios: k configurations proposed at once for a new dataset, the population's first round.

A meta-dataset records the validation (and test) loss that M fixed configurations reach on many datasets.
From it, ``constant`` takes the configurations best on average, and ``greedy`` builds the portfolio the way
auto-sklearn 2.0 and TabRepo do: each next member is the one that most lowers the mean over datasets of the
portfolio's best normalized validation loss. Both are static: they ignore the task and the budget they are
given, which a conditioned portfolio (a meta-learner g(task, budget, k)) uses."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from ..files import load_file, save_file
from ..search_space import SearchSpace, check_u

PathLike = Union[str, os.PathLike]


@dataclass
class MetaDataset:
    """Losses of M configurations (rows of ``u`` in ``space``'s unconstrained coordinates) on D datasets.

    ``val`` and ``test``: (D, M) losses, each a mean over the dataset's folds (so small test splits do not
    decide); a diverged configuration reads inf or nan."""

    space: SearchSpace
    u: Tensor
    datasets: list[str]
    val: Tensor
    test: Optional[Tensor] = None

    def __post_init__(self) -> None:
        self.u = check_u("u", self.u, self.space)
        m, d = self.u.shape[0], len(self.datasets)
        if d == 0 or len(set(self.datasets)) != d:
            raise ValueError(f"datasets must be non-empty distinct names; got {self.datasets!r}")
        for name in ("val", "test"):
            t = getattr(self, name)
            if t is None:
                continue
            t = torch.as_tensor(t, dtype=torch.float64)
            if t.shape != (d, m):
                raise ValueError(f"{name} must have shape (datasets, configurations) = ({d}, {m}); "
                                 f"got {tuple(t.shape)}")
            setattr(self, name, t)

    def normalized(self, which: str = "val") -> Tensor:
        """(D, M) losses mapped per dataset to (loss - best) / (median - best): 0 is the dataset's best
        configuration, 1 its median one; a diverged configuration counts as the dataset's worst."""
        if which not in ("val", "test") or getattr(self, which) is None:
            raise ValueError(f"which must be 'val' or 'test' (one this meta-dataset holds); got {which!r}")
        return normalize(getattr(self, which))

    def subset(self, datasets: Sequence[str]) -> "MetaDataset":
        """The same configurations on some of the datasets (e.g. the meta-training groups)."""
        missing = [n for n in datasets if n not in self.datasets]
        if missing:
            raise ValueError(f"datasets not in this meta-dataset: {missing}")
        rows = [self.datasets.index(n) for n in datasets]
        return MetaDataset(self.space, self.u, list(datasets), self.val[rows],
                           None if self.test is None else self.test[rows])

    def save(self, path: PathLike) -> None:
        """A safe tensor file (loads with ``torch.load(weights_only=True)``)."""
        save_file(path, "meta-dataset", {"space": self.space.to_dict(), "u": self.u, "datasets": self.datasets,
                                         "val": self.val, "test": self.test})

    @classmethod
    def load(cls, path: PathLike) -> "MetaDataset":
        f = load_file(path, "meta-dataset")
        return cls(SearchSpace.from_dict(f["space"]), f["u"], list(f["datasets"]), f["val"], f["test"])


def normalize(losses: Tensor) -> Tensor:
    """(D, M) -> per row (loss - min) / (median - min), non-finite entries first set to the row's worst finite
    loss; a row whose median equals its best divides by 1 instead."""
    x = torch.as_tensor(losses, dtype=torch.float64).clone()
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"losses must have shape (datasets, configurations); got {tuple(x.shape)}")
    finite = torch.isfinite(x)
    if not finite.any(1).all():
        raise ValueError("every dataset needs at least one configuration with a finite loss")
    worst = torch.where(finite, x, torch.full_like(x, -math.inf)).amax(1, keepdim=True)
    x = torch.where(finite, x, worst)
    best, median = x.amin(1, keepdim=True), x.median(1, keepdim=True).values
    scale = torch.where(median > best, median - best, torch.ones_like(best))
    return (x - best) / scale


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


def _check_k(k: Any, available: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"k must be an int from 1 to {available} (the configurations available); got {k!r}")


__all__ = ["MetaDataset", "normalize", "greedy_portfolio", "constant_portfolio", "portfolio_score",
           "StaticPortfolio"]
