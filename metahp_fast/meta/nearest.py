"""A portfolio conditioned on the task's size and budget by its nearest meta-datasets: the greedy portfolio of a
meta-dataset whose rows (dataset, learning-curve point) are weighted by how close their (log train rows, log
steps) lie to the new task's. Its members are configurations the meta-dataset trained, so it never proposes an
untried extrapolation; its bandwidth is chosen by leaving each meta-training dataset out in turn, and an
infinite one is the static greedy portfolio."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from ..files import load_file, save_file
from ..search_space import SearchSpace, check_u
from ..tasks import Task
from .portfolio import _check_k

PathLike = Union[str, os.PathLike]

KIND = "nearest-portfolio"
#: Bandwidths tried (in standard deviations of the rows' features); inf gives every row the same weight.
BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0, math.inf)


def weighted_greedy(norm: Tensor, weights: Tensor, k: int) -> list[int]:
    """k column indices of ``norm`` (rows, M), each next one minimizing the weighted mean over rows of the
    portfolio's best normalized loss (ties to the lower index)."""
    w = weights / weights.sum()
    best = torch.full((norm.shape[0],), math.inf, dtype=norm.dtype)
    chosen: list[int] = []
    for _ in range(k):
        score = (w[:, None] * torch.minimum(best[:, None], norm)).sum(0)
        score[chosen] = math.inf
        j = int(score.argmin())
        chosen.append(j)
        best = torch.minimum(best, norm[:, j])
    return chosen


class NearestPortfolio:
    """``propose(task, k, budget)`` -> k of the meta-dataset's configurations for ``task``: the greedy portfolio
    of the meta-training rows weighted by a Gaussian kernel on (log train rows, log steps).

    Built by :meth:`fit` from a meta-dataset's learning-curve points (``norm``: normalized validation loss per
    row), or loaded with :meth:`load`."""

    def __init__(self, space: SearchSpace, u: Tensor, norm: Tensor, features: Tensor, datasets: Sequence[str],
                 epochs: float, max_steps: int, batch_size: int, bandwidths: Optional[dict[int, float]] = None):
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace; got {type(space).__name__}")
        self.space, self.u = space, check_u("u", u, space)
        self.norm = torch.as_tensor(norm, dtype=torch.float64)
        self.features = torch.as_tensor(features, dtype=torch.float64)
        self.datasets = list(datasets)
        r, m = self.norm.shape if self.norm.dim() == 2 else (-1, -1)
        if m != self.u.shape[0] or self.features.shape != (r, 2) or len(self.datasets) != r:
            raise ValueError(f"norm must be (rows, {self.u.shape[0]}), features (rows, 2) and datasets one name "
                             f"per row; got {tuple(self.norm.shape)}, {tuple(self.features.shape)}, "
                             f"{len(self.datasets)}")
        if not torch.isfinite(self.norm).all() or not torch.isfinite(self.features).all():
            raise ValueError("norm and features must be finite (normalize() maps diverged runs to the worst)")
        self.epochs, self.max_steps, self.batch_size = float(epochs), int(max_steps), int(batch_size)
        self.mean, self.std = self.features.mean(0), self.features.std(0).clamp(min=1e-6)
        self.bandwidths = dict(bandwidths) if bandwidths is not None else self.choose_bandwidths()

    def __repr__(self) -> str:
        return (f"NearestPortfolio({self.space.optimizer}: {self.u.shape[0]} configurations, "
                f"{len(set(self.datasets))} meta-training datasets, bandwidths {self.bandwidths})")

    @property
    def max_k(self) -> int:
        return int(self.u.shape[0])

    # ---------------------------------------------------------------- conditioning
    def steps_for(self, task: Task, budget: Optional[int]) -> int:
        """``budget`` (steps of one full training) as given, or the meta-dataset's rule for ``task``."""
        if budget is None:
            n = len(task.y_train)
            return max(1, min(self.max_steps, math.ceil(self.epochs * n / min(self.batch_size, n))))
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be a positive int (steps of one full training) or None; got {budget!r}")
        return budget

    def _weights(self, query: Tensor, rows: Tensor, bandwidth: float) -> Tensor:
        if math.isinf(bandwidth):
            return torch.ones(int(rows.numel()), dtype=torch.float64)
        z = (self.features[rows] - query) / self.std
        return torch.exp(-0.5 * (z * z).sum(1) / bandwidth ** 2) + 1e-300

    def _bandwidth(self, k: int) -> float:
        ks = sorted(self.bandwidths)
        return self.bandwidths[max([j for j in ks if j <= k], default=ks[0])]

    def members(self, rows: int, steps: int, k: int) -> list[int]:
        """Indices of the k configurations for a task of ``rows`` training rows trained ``steps`` steps."""
        _check_k(k, self.max_k)
        query = torch.tensor([math.log(max(rows, 1)), math.log(max(steps, 1))], dtype=torch.float64)
        everyone = torch.arange(len(self.datasets))
        return weighted_greedy(self.norm, self._weights(query, everyone, self._bandwidth(k)), k)

    def choose_bandwidths(self, ks: Sequence[int] = (1, 2, 4, 8, 16, 32)) -> dict[int, float]:
        """Per k, the bandwidth whose portfolios do best on meta-training datasets left out one at a time (the
        mean over their rows of the best member's normalized validation loss; ties to the wider one)."""
        names = sorted(set(self.datasets))
        out: dict[int, float] = {}
        for k in (k for k in ks if k <= self.max_k):
            scores = {}
            for h in BANDWIDTHS:
                total = 0.0
                for name in names:
                    held = torch.tensor([d == name for d in self.datasets])
                    rest = torch.nonzero(~held).flatten()
                    for r in torch.nonzero(held).flatten().tolist():
                        mem = weighted_greedy(self.norm[rest], self._weights(self.features[r], rest, h), k)
                        total += float(self.norm[r, mem].min())
                scores[h] = total
            best = min(scores.values())
            out[k] = max(h for h, s in scores.items() if s <= best + 1e-12)
        return out

    def propose_u(self, task: Task, k: int = 8, budget: Optional[int] = None,
                  batch_size: Optional[int] = None) -> Tensor:
        """The k members (k, d) float64 in ``u`` for ``task`` trained ``budget`` steps (``batch_size`` is
        accepted for the common portfolio interface; the steps carry the budget)."""
        if not isinstance(task, Task):
            raise TypeError(f"task must be a Task; got {type(task).__name__}")
        return self.u[self.members(len(task.y_train), self.steps_for(task, budget), k)].clone()

    def propose(self, task: Task, k: int = 8, budget: Optional[int] = None,
                batch_size: Optional[int] = None) -> dict[str, Tensor]:
        """The k members as natural values (name -> (k,) float64, fixed ones included, integers rounded)."""
        u = self.propose_u(task, k, budget, batch_size)
        return {n: v.double() for n, v in self.space.from_unconstrained(u, round_ints=True,
                                                                       include_fixed=True).items()}

    # ---------------------------------------------------------------- building and files
    @classmethod
    def fit(cls, curves: Sequence[Any], steps: Sequence[Tensor], rows: dict[str, int], epochs: float,
            max_steps: int, batch_size: int) -> "NearestPortfolio":
        """From a meta-dataset's learning-curve points (``curves[c]`` a MetaDataset, ``steps[c]`` (D, F) the steps
        trained by then): one row per (dataset, point) with its fold-mean normalized validation loss, and
        features (log train rows, log mean steps over the dataset's folds)."""
        if not curves or len(curves) != len(steps):
            raise ValueError("curves and steps must be non-empty lists of the same length")
        norm, feats, names = [], [], []
        for meta, st in zip(curves, steps):
            norm.append(meta.normalized("val"))
            for d, name in enumerate(meta.datasets):
                taken = st[d][st[d] > 0].double()
                feats.append([math.log(rows[name]), float(taken.log().mean())])
                names.append(name)
        return cls(curves[0].space, curves[0].u, torch.cat(norm), torch.tensor(feats, dtype=torch.float64), names,
                   epochs, max_steps, batch_size)

    def save(self, path: PathLike) -> None:
        """Write the portfolio atomically as a file that loads with ``torch.load(weights_only=True)``."""
        save_file(path, KIND, {"space": self.space.to_dict(), "u": self.u.clone(), "norm": self.norm.clone(),
                               "features": self.features.clone(), "datasets": list(self.datasets),
                               "epochs": self.epochs, "max_steps": self.max_steps, "batch_size": self.batch_size,
                               "bandwidths": {str(k): h for k, h in self.bandwidths.items()}})

    @classmethod
    def load(cls, path: PathLike) -> "NearestPortfolio":
        """A portfolio written by :meth:`save` (read with ``weights_only=True``: nothing in the file can run)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"path: no portfolio file at {str(path)!r}")
        data = load_file(path, KIND)
        try:
            return cls(SearchSpace.from_dict(data["space"]), data["u"], data["norm"], data["features"],
                       data["datasets"], data["epochs"], data["max_steps"], data["batch_size"],
                       {int(k): float(h) for k, h in data["bandwidths"].items()})
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"path: {str(path)!r} is a damaged or edited portfolio file ({type(e).__name__}: "
                             f"{e})") from None


__all__ = ["KIND", "BANDWIDTHS", "NearestPortfolio", "weighted_greedy"]
