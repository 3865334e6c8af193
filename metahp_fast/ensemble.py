"""Ensembles from a population: the K models a tuner trained already exist, so the best few can be averaged.

:func:`greedy_selection` is Caruana et al.'s ensemble selection (2004): starting from the best single model,
add (with replacement) the member that most lowers the validation loss of the averaged prediction, and keep
the best prefix, so the ensemble is never worse on the validation split than the best single model.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


class Ensemble(nn.Module):
    """A weighted average of MLPs: for a classifier, of their class probabilities (``forward`` returns the
    log of the mixture, so ``softmax``/``argmax`` of it give the ensemble's probabilities and labels); for a
    regression, of their outputs."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float], classification: bool):
        super().__init__()
        w = torch.as_tensor(list(weights), dtype=torch.float64)
        if len(members) == 0 or w.shape != (len(members),) or not bool((w > 0).all()):
            raise ValueError(f"an ensemble needs members with one positive weight each; got {len(members)} members "
                             f"and weights {w.tolist()}")
        self.members = nn.ModuleList(members)
        dtype = next(self.members[0].parameters()).dtype
        self.register_buffer("weights", (w / w.sum()).to(dtype))
        self.classification = bool(classification)

    def forward(self, x: Tensor) -> Tensor:
        outs = torch.stack([m(x) for m in self.members])  # (m, B, C)
        w = self.weights.to(outs.dtype).view(-1, 1, 1)
        if self.classification:
            return torch.logsumexp(torch.log_softmax(outs, -1) + torch.log(w), 0)
        return (outs * w).sum(0)


def ensemble_loss(outputs: Tensor, weights: Tensor, y: Tensor, classification: bool) -> float:
    """Validation loss of the weighted average of ``outputs`` (N, B, C) with ``weights`` (N,) summing to 1:
    cross-entropy of the mixed probabilities, or the MSE of the mixed outputs (members of weight 0 left out)."""
    keep = weights > 0
    outputs, w = outputs[keep], weights[keep].to(outputs.dtype).view(-1, 1, 1)
    if classification:
        probs = (torch.softmax(outputs, -1) * w).sum(0)
        return float(-torch.log(probs.gather(1, y.view(-1, 1)).clamp_min(1e-300)).mean())
    return float(((outputs * w).sum(0) - y).pow(2).mean())


def greedy_selection(outputs: Tensor, y: Tensor, size: int, classification: bool) -> Tensor:
    """Weights (N,) of the ensemble chosen from N models' validation ``outputs`` (N, B, C): ``size`` greedy
    additions with replacement from the best single model, cut to the prefix with the lowest validation loss.
    Models whose outputs are not finite (diverged) are never chosen."""
    n = outputs.shape[0]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int; got {size!r}")
    usable = torch.isfinite(outputs.reshape(n, -1)).all(1).nonzero().flatten()
    if usable.numel() == 0:
        raise ValueError("no model has finite outputs on the validation rows")
    outs = outputs[usable]
    counts = torch.zeros(len(usable), dtype=torch.float64)
    best_counts, best_loss = counts, math.inf
    for _ in range(size):
        scores = torch.full((len(usable),), math.inf, dtype=torch.float64)
        for j in range(len(usable)):
            trial = counts.clone()
            trial[j] += 1
            scores[j] = ensemble_loss(outs, trial / trial.sum(), y, classification)
        j = int(torch.nan_to_num(scores, nan=math.inf).argmin())
        counts[j] += 1
        if float(scores[j]) < best_loss or best_loss == math.inf:
            best_loss, best_counts = float(scores[j]), counts.clone()
    weights = torch.zeros(n, dtype=torch.float64)
    weights[usable] = best_counts / best_counts.sum()
    return weights


__all__ = ["Ensemble", "ensemble_loss", "greedy_selection"]
