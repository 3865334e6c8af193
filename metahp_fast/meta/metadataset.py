"""The meta-dataset: M fixed configurations trained as one population on every (dataset, fold), their
validation and test loss/accuracy recorded at several points of training (learning curves). Built in parts
(one safe file per dataset and fold, so a build resumes and shards across processes), assembled into a
:class:`MetaDataset` that portfolios and meta-learners are built from."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from ..files import load_file, save_file
from ..search_space import SearchSpace, check_u, u_bounds
from ..seeds import derive_seed
from ..tasks import Task
from ..training import TrainConfig, make_population, prepare_task

PathLike = Union[str, os.PathLike]


@dataclass
class MetaDataset:
    """Losses of M configurations (rows of ``u`` in ``space``'s unconstrained coordinates) on D datasets.

    ``val`` and ``test``: (D, F, M) losses on each dataset's F folds (nan where a dataset has fewer folds; a
    diverged configuration reads inf). Portfolios are built on fold means, so small splits do not decide."""

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
            if t.dim() == 2:  # one fold
                t = t.unsqueeze(1)
            if t.dim() != 3 or t.shape[0] != d or t.shape[2] != m:
                raise ValueError(f"{name} must have shape (datasets, folds, configurations) = ({d}, F, {m}); "
                                 f"got {tuple(t.shape)}")
            setattr(self, name, t)
        if self.test is not None and self.test.shape != self.val.shape:
            raise ValueError(f"test must have val's shape {tuple(self.val.shape)}; got {tuple(self.test.shape)}")

    def fold_mean(self, which: str = "val") -> Tensor:
        """(D, M) mean over each dataset's folds (its nan folds left out; a diverged fold makes it inf)."""
        if which not in ("val", "test") or getattr(self, which) is None:
            raise ValueError(f"which must be 'val' or 'test' (one this meta-dataset holds); got {which!r}")
        t = getattr(self, which)
        present = ~torch.isnan(t)
        return torch.where(present, t, torch.zeros_like(t)).sum(1) / present.sum(1).clamp(min=1)

    def normalized(self, which: str = "val") -> Tensor:
        """(D, M) fold-mean losses mapped per dataset to (loss - best) / (median - best): 0 is the dataset's
        best configuration, 1 its median one; a diverged configuration counts as the dataset's worst."""
        return normalize(self.fold_mean(which))

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


def quasi_random_u(space: SearchSpace, m: int, seed: int = 0) -> Tensor:
    """M points of a scrambled Sobol sequence over ``space``'s u-box (ranges' ends included): configurations
    spread more evenly than independent draws."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive int; got {m!r}")
    low, high = u_bounds(space)
    s = torch.quasirandom.SobolEngine(len(space.dims), scramble=True, seed=int(seed)).draw(m, dtype=torch.float64)
    return low + (high - low) * s


def checkpoint_steps(steps: int, n_checkpoints: int) -> list[int]:
    """Evenly spaced steps at which a learning curve is recorded, the last one ``steps``."""
    if n_checkpoints < 1 or steps < n_checkpoints:
        raise ValueError(f"need 1 <= checkpoints <= steps; got {n_checkpoints} checkpoints of {steps} steps")
    return [steps * (i + 1) // n_checkpoints for i in range(n_checkpoints)]


def train_pool(task: Task, space: SearchSpace, u: Tensor, config: TrainConfig, seed: int,
               n_checkpoints: int = 4) -> dict:
    """Train every row of ``u`` as one population on ``task`` for ``config.steps`` steps and record validation
    and test loss/accuracy at :func:`checkpoint_steps`: (C, M) tensors, with the cost."""
    task = prepare_task(task, config)
    pop = make_population(task, space, check_u("u", u, space), config, seed)
    points, done, curves = checkpoint_steps(config.steps, n_checkpoints), 0, {}
    start = time.perf_counter()
    for c, s in enumerate(points):
        pop.fit(task.x_train, task.y_train, steps=s - done, batch_size=config.batch_size,
                seed=derive_seed(seed, c), progress=False)
        done = s
        for split in ("val", "test"):
            m = pop.evaluate(getattr(task, f"x_{split}"), getattr(task, f"y_{split}"))
            for name, v in m.items():
                curves.setdefault(f"{split}_{name}", []).append(v.double().cpu())
    return {"checkpoints": points, **{k: torch.stack(v) for k, v in curves.items()},
            "seconds": time.perf_counter() - start, "candidate_steps": int(u.shape[0]) * config.steps}


def part_name(dataset: str, fold: int) -> str:
    """The file of one (dataset, fold) part: names made safe for a file system."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in dataset) + f"__fold{fold}.pt"


def assemble(parts: Sequence[PathLike], space: SearchSpace, u: Tensor, checkpoint: int = -1) -> MetaDataset:
    """A :class:`MetaDataset` from part files (each ``{dataset, fold, val_loss, test_loss, ...}``), the losses
    at one checkpoint index (default the end of training); folds a dataset lacks read nan."""
    rows: dict[str, dict[int, tuple[Tensor, Tensor]]] = {}
    for path in parts:
        f = load_file(path, "meta-dataset-part")
        if f["u"].shape != u.shape or not torch.equal(f["u"], u.to(f["u"].dtype)):
            raise ValueError(f"{path} was built with other configurations than the manifest's")
        rows.setdefault(f["dataset"], {})[int(f["fold"])] = (f["val_loss"][checkpoint], f["test_loss"][checkpoint])
    if not rows:
        raise ValueError("no parts to assemble")
    names = sorted(rows)
    n_folds = 1 + max(fold for r in rows.values() for fold in r)
    val = torch.full((len(names), n_folds, u.shape[0]), float("nan"), dtype=torch.float64)
    test = val.clone()
    for i, name in enumerate(names):
        for fold, (v, t) in rows[name].items():
            val[i, fold], test[i, fold] = v, t
    return MetaDataset(space, u, names, val, test)


#: The file kind of every part's learning curves in one file (committed beside a build's manifest; parts are not).
CURVES_KIND = "meta-dataset-curves"
_CURVES = ("val_loss", "val_accuracy", "test_loss", "test_accuracy")


def pack_curves(parts: Sequence[dict]) -> dict[str, Any]:
    """Every part record's curves stacked in float32, one (parts, checkpoints, M) tensor per measure: the
    compact form of a build (about 1 MB for 87 parts x 256 configurations) that :func:`unpack_curves` reverses."""
    if not parts:
        raise ValueError("parts must hold at least one part record")
    keys = ("dataset", "fold", "checkpoints", "steps", "rows", "seconds")
    return {**{k + ("s" if k in ("dataset", "fold") else ""): [p[k] for p in parts] for k in keys},
            **{m: torch.stack([p[m].float() for p in parts]) for m in _CURVES}}


def unpack_curves(curves: dict[str, Any], u: Tensor) -> list[dict]:
    """The part records of a :func:`pack_curves` file (losses back in float64; ``u`` is the manifest's)."""
    u = torch.as_tensor(u, dtype=torch.float64)
    if curves["val_loss"].shape[-1] != u.shape[0]:
        raise ValueError(f"the curves hold {curves['val_loss'].shape[-1]} configurations; u has {u.shape[0]}")
    return [{"dataset": d, "fold": int(f), "u": u, "checkpoints": list(c), "steps": int(st), "rows": int(r),
             "seconds": float(sec), "candidate_steps": int(u.shape[0]) * int(st),
             **{m: curves[m][i].double() for m in _CURVES}}
            for i, (d, f, c, st, r, sec) in enumerate(zip(curves["datasets"], curves["folds"], curves["checkpoints"],
                                                          curves["steps"], curves["rows"], curves["seconds"]))]


__all__ = ["MetaDataset", "normalize", "quasi_random_u", "checkpoint_steps", "train_pool", "part_name", "assemble",
           "CURVES_KIND", "pack_curves", "unpack_curves"]
