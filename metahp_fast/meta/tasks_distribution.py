"""The meta-training task distribution: synthetic families and variants of digits and MNIST-1D (class and feature
subsets, row subsamples, label noise), each with a training budget, all drawn from a seed.

Whole datasets are held out for evaluation (:data:`HELD_OUT`): they can never enter meta-training.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..tasks import FAMILIES, Task, from_arrays, load_task
from ..seeds import derive_seed

#: Datasets kept out of meta-training, for the held-out evaluation.
HELD_OUT = ("wine", "breast_cancer", "iris")
#: Real datasets whose variants meta-training may use.
REAL_SOURCES = ("digits", "mnist1d")
SOURCES = REAL_SOURCES + tuple(FAMILIES)


@dataclass(frozen=True)
class MetaTask:
    """A meta-training task and the budget its candidates train with."""

    task: Task
    steps: int
    batch_size: int


def check_not_held_out(name: str) -> str:
    """``name`` unless it is (or derives from) a held-out dataset: then a ValueError."""
    base = str(name).split(":")[0].split("[")[0]
    if base in HELD_OUT:
        raise ValueError(f"{name!r} is held out for evaluation ({', '.join(HELD_OUT)}) and never used in "
                         f"meta-training")
    return name


@functools.lru_cache(maxsize=None)
def _real_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All rows of a real dataset (x, y) as numpy arrays."""
    t = load_task(check_not_held_out(name), seed=0)
    x = torch.cat([t.x_train, t.x_val, t.x_test]).numpy()
    y = torch.cat([t.y_train, t.y_val, t.y_test]).numpy()
    return x, y


def _real_variant(name: str, rng: np.random.Generator, seed: int) -> Task:
    """A random class subset, feature subset, row subsample and label noise of a real dataset."""
    x, y = _real_arrays(name)
    classes = np.unique(y)
    keep_c = np.sort(rng.choice(classes, size=int(rng.integers(2, len(classes) + 1)), replace=False))
    rows = np.flatnonzero(np.isin(y, keep_c))
    rows = rng.choice(rows, size=int(min(len(rows), rng.integers(150, 2500))), replace=False)
    feats = np.sort(rng.choice(x.shape[1], size=max(2, int(x.shape[1] * rng.uniform(0.25, 1.0))), replace=False))
    xv, yv = x[np.ix_(rows, feats)], y[rows].copy()
    noise = float(rng.choice([0.0, 0.0, rng.uniform(0.0, 0.3)]))
    flip = rng.random(len(yv)) < noise
    yv[flip] = rng.choice(keep_c, size=int(flip.sum()))
    label = f"{name}[c={len(keep_c)},d={len(feats)},n={len(rows)},noise={noise:.2f}]"
    return from_arrays(xv, yv, name=label, seed=seed, source=f"variant of {name}")


def _synthetic(name: str, rng: np.random.Generator, seed: int) -> Task:
    """A synthetic family member with random sizes and noise."""
    n = int(rng.integers(200, 3000))
    d = int(rng.integers(2, 80))
    c = int(rng.integers(2, 11))
    if name == "teacher":
        params = dict(n_samples=n, n_features=d, n_classes=c, hidden=int(rng.integers(4, 64)),
                      noise=float(rng.uniform(0, 0.3)))
    else:
        params = dict(n_samples=n, n_features=d, n_classes=c, clusters_per_class=int(rng.integers(1, 4)),
                      separation=float(rng.uniform(0.5, 3.0)), noise=float(rng.uniform(0.5, 2.0)))
    x, y = FAMILIES[name](seed=seed, **params)
    label = f"{name}:" + ",".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return from_arrays(x, y, name=label, seed=seed, source=label)


class TaskDistribution:
    """Seedable distribution of meta-training tasks over ``sources`` (default :data:`SOURCES`), with budgets drawn
    from ``steps`` and ``batch_sizes``; ``sample(i)`` is the same task for the same seed and index."""

    def __init__(self, seed: int = 0, sources: Sequence[str] = SOURCES, steps: Sequence[int] = (100, 200, 300),
                 batch_sizes: Sequence[int] = (32, 64, 128)):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        sources = tuple(sources)
        if not sources:
            raise ValueError("sources must name at least one dataset or family")
        for s in sources:
            check_not_held_out(s)
            if s not in SOURCES:
                raise ValueError(f"sources: unknown {s!r}; choose from {list(SOURCES)}")
        for name, vals in (("steps", steps), ("batch_sizes", batch_sizes)):
            if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
                raise ValueError(f"{name} must be a non-empty list of positive ints; got {vals!r}")
        self.seed, self.sources, self.steps, self.batch_sizes = seed, sources, tuple(steps), tuple(batch_sizes)

    def sample(self, index: int) -> MetaTask:
        """Task number ``index`` of this distribution."""
        s = derive_seed(self.seed, index)
        rng = np.random.default_rng(s)
        src = self.sources[int(rng.integers(len(self.sources)))]
        task = _real_variant(src, rng, s) if src in REAL_SOURCES else _synthetic(src, rng, s)
        return MetaTask(task, int(rng.choice(self.steps)), int(rng.choice(self.batch_sizes)))

    def tasks(self, n: int, start: int = 0) -> list[MetaTask]:
        """Tasks ``start .. start + n - 1``."""
        return [self.sample(i) for i in range(start, start + n)]


__all__ = ["HELD_OUT", "SOURCES", "MetaTask", "TaskDistribution", "check_not_held_out"]
