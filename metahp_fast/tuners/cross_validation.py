"""Cross-validated scoring for the tuners (``folds=F``): every candidate is trained on F cuts of train+val and
scored by its mean validation objective over them, a steadier choice on small validation splits than one cut.

The first cut is the task's own (train, validation) split, so the model a tuner returns is the one trained on
the train split, as without folds. Each of the other ``F - 1`` cuts holds out a validation-sized,
class-stratified part of the train rows and trains on the rest plus the validation rows, so every cut trains
on as many rows as the task's own split. The parts are disjoint while ``(F - 1) * validation rows`` fits in the
train rows (with the default 60/20/20 split and F = 4 they cover the train split), else they overlap. Each
candidate costs F trainings.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence, Union

import torch
from torch import Tensor

from ..population import Population
from ..tasks import Task


def check_folds(folds: Any) -> int:
    """``folds`` as an int >= 1 (1: no cross-validation), else a ValueError naming it."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ValueError(f"folds must be an int >= 1 (1: score on the validation split alone); got {folds!r}")
    return folds


def fold_tasks(task: Task, folds: int, seed: int) -> list[Task]:
    """``folds`` tasks sharing ``task``'s test split: ``task`` itself, then ``folds - 1`` cuts, each with a
    validation-sized part of ``task``'s train rows (stratified by class, fixed by ``seed``) as its validation
    rows and the rest of the train and validation rows as its train rows. Features keep ``task``'s
    standardization."""
    n_train, n_val = len(task.y_train), len(task.y_val)
    if folds > 1 and n_train < 2:
        raise ValueError(f"folds={folds} needs at least 2 train rows; {task.name!r} has {n_train}: use folds=1")
    held_size = min(n_val, n_train - 1)
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n_train, generator=gen)
    if task.is_classification:  # interleave the classes: any run of consecutive rows has each class's share
        y = task.y_train.cpu()[order]
        rank = torch.zeros(n_train, dtype=torch.float64)
        counts = torch.bincount(y)
        for c in y.unique():
            at = (y == c).nonzero().squeeze(1)
            rank[at] = (torch.arange(len(at), dtype=torch.float64) + 0.5) / counts[c]
        order = order[torch.argsort(rank, stable=True)]
    x_all = torch.cat([task.x_train, task.x_val])
    y_all = torch.cat([task.y_train, task.y_val])
    out = [task]
    for f in range(folds - 1):
        held = torch.zeros(len(y_all), dtype=torch.bool)
        held[order[(f * held_size + torch.arange(held_size)) % n_train]] = True
        keep, held = (~held).nonzero().squeeze(1), held.nonzero().squeeze(1)
        out.append(dataclasses.replace(task, name=f"{task.name} (cut {f + 1})",
                                       x_train=x_all[keep.to(x_all.device)], y_train=y_all[keep.to(y_all.device)],
                                       x_val=x_all[held.to(x_all.device)], y_val=y_all[held.to(y_all.device)]))
    return out


class FoldedPopulation:
    """The same candidates (hyperparameters, initial weights) as one :class:`Population` per cut. Tuners use it
    like a population: ``size``, ``steps_done``, ``hparams``, ``select`` and ``state_dict`` act on all cuts;
    ``first`` is the population trained on the task's own split (the one a tuner's pick comes from)."""

    def __init__(self, pops: Sequence[Population]):
        if not pops or len({p.size for p in pops}) != 1:
            raise ValueError("pops must be one or more populations of the same size")
        self.pops = list(pops)

    @property
    def first(self) -> Population:
        return self.pops[0]

    @property
    def size(self) -> int:
        return self.first.size

    @property
    def steps_done(self) -> int:
        return self.first.steps_done

    @property
    def dtype(self) -> torch.dtype:
        return self.first.dtype

    @property
    def device(self) -> torch.device:
        return self.first.device

    @property
    def hparams(self) -> dict[str, Tensor]:
        return self.first.hparams

    @property
    def widths(self) -> Tensor:
        return self.first.widths

    @property
    def options(self) -> dict[str, Tensor]:
        return self.first.options

    @property
    def depths(self) -> Tensor:
        """(K,) hidden layers per candidate (cuts of a :class:`~metahp_fast.population_group.PopulationGroup`)."""
        return self.first.depths

    @hparams.setter
    def hparams(self, values: Mapping[str, Any]) -> None:
        for p in self.pops:
            p.hparams = values

    def select(self, indices: Union[Sequence[int], Tensor]) -> "FoldedPopulation":
        return FoldedPopulation([p.select(indices) for p in self.pops])

    def state_dict(self) -> dict[str, Any]:
        return {"folds": [p.state_dict() for p in self.pops]}

    def __repr__(self) -> str:
        return f"FoldedPopulation({len(self.pops)} cuts of {self.first!r})"


def mean_metrics(per_fold: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Each metric's mean over the cuts (a candidate that diverged on any cut reads non-finite)."""
    return {k: torch.stack([m[k].double() for m in per_fold]).mean(0) for k in per_fold[0]}


__all__ = ["FoldedPopulation", "check_folds", "fold_tasks", "mean_metrics"]
