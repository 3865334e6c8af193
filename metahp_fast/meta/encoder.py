"""Task encoder: dimension-agnostic meta-features and cheap landmarkers of a task, plus its training budget.

Every feature is computed in torch on the task's device from the train split (a row-order invariant
pseudo-random subsample of at most ``max_rows`` rows for the costly ones), so a 1e5 x 1e3 task encodes in
well under a second and any number of rows, features and classes gives the same vector length.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..optimizers import OPTIMIZERS
from ..tasks import Task

#: The names of the encoding's entries, in order.
FEATURES = (
    "log_rows", "log_features", "log_classes", "is_classification", "class_entropy", "min_class_ratio",
    "mean_abs_skew", "mean_log_kurtosis", "mean_abs_corr", "pca_top1", "pca_eff_rank", "pca_k90",
    "centroid_acc", "probe_acc", "probe_loss", "chance_acc",
    "log_steps", "log_batch_size", "log_epochs",
) + tuple(f"opt_{o}" for o in sorted(OPTIMIZERS))
#: Rows used by the moments, the spectrum and the landmarkers.
MAX_ROWS = 512
#: Features used by the correlation summary.
MAX_CORR_FEATURES = 64
PROBE_STEPS = 30


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int; got {v!r}")
    return v


def _row_keys(x: Tensor, y: Tensor) -> Tensor:
    """A pseudo-random key in [0, 1) per row that depends only on the row's values (not its position)."""
    gen = torch.Generator().manual_seed(12345)
    r = torch.randn(x.shape[1], generator=gen, dtype=torch.float64).to(x.device, x.dtype)
    proj = (x @ r).double() + 0.618 * y.double().reshape(len(y), -1).sum(1)
    return torch.frac(torch.sin(proj * 12.9898 + 78.233).abs() * 43758.5453)


def _landmarkers(x: Tensor, y: Tensor, n_classes: int) -> tuple[float, float, float]:
    """(nearest-centroid accuracy, linear-probe accuracy, linear-probe loss / log C) on an even/odd split."""
    xa, ya, xb, yb = x[0::2], y[0::2], x[1::2], y[1::2]
    onehot = torch.nn.functional.one_hot(ya, n_classes).to(x.dtype)
    counts = onehot.sum(0)
    cent = (onehot.T @ xa) / counts.clamp_min(1).unsqueeze(1)
    d2 = torch.cdist(xb, cent).masked_fill((counts == 0).unsqueeze(0), math.inf)
    centroid = float((d2.argmin(1) == yb).to(x.dtype).mean())
    w = torch.zeros(x.shape[1], n_classes, dtype=x.dtype, device=x.device)
    b = torch.zeros(n_classes, dtype=x.dtype, device=x.device)
    lr = 1.0
    for _ in range(PROBE_STEPS):  # full-batch gradient descent on softmax regression
        g = (torch.softmax(xa @ w + b, 1) - onehot) / len(xa)
        w -= lr * (xa.T @ g)
        b -= lr * g.sum(0)
    logits = xb @ w + b
    probe_acc = float((logits.argmax(1) == yb).to(x.dtype).mean())
    probe_loss = float(torch.nn.functional.cross_entropy(logits, yb)) / math.log(n_classes)
    return centroid, probe_acc, probe_loss


def _regression_landmarkers(x: Tensor, y: Tensor) -> tuple[float, float, float]:
    """(0, ridge R^2 clipped to [0, 1], 1 - that R^2) on an even/odd split: the regression analogues."""
    xa, ya, xb, yb = x[0::2], y[0::2].reshape(len(x[0::2]), -1), x[1::2], y[1::2].reshape(len(x[1::2]), -1)
    a = xa.T @ xa + 1e-2 * len(xa) * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(a, xa.T @ (ya - ya.mean(0)))
    res = ((xb @ w + ya.mean(0) - yb) ** 2).mean()
    r2 = float((1 - res / yb.var(0, unbiased=False).mean().clamp_min(1e-12)).clamp(0, 1))
    return 0.0, r2, 1 - r2


def encode(task: Task, steps: int, batch_size: int, optimizer: str = "sgd", max_rows: int = MAX_ROWS) -> Tensor:
    """The encoding (len(FEATURES),) float32 of ``task`` (its train split) trained ``steps`` steps of
    ``batch_size`` rows with ``optimizer``; on the task's device."""
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task; got {type(task).__name__}")
    steps, batch_size = _positive_int("steps", steps), _positive_int("batch_size", batch_size)
    max_rows = _positive_int("max_rows", max_rows)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}; got {optimizer!r}")
    x, y = task.x_train, task.y_train
    n, d = x.shape
    dev = x.device
    order = torch.argsort(_row_keys(x, y), stable=True)[:max_rows]
    xs = x[order].double()
    xs = (xs - xs.mean(0)) / xs.std(0, unbiased=False).clamp_min(1e-6)
    ys = y[order]
    m = len(xs)
    if task.is_classification:
        c = task.n_classes
        p = torch.bincount(y, minlength=c).double() / n
        nz = p[p > 0]
        entropy = float(-(nz * nz.log()).sum()) / math.log(c)
        min_ratio = float(p.min() * c)
        centroid, probe_acc, probe_loss = _landmarkers(xs, ys, c)
        chance = float(p.max())
    else:
        c, entropy, min_ratio, chance = 0, 0.0, 0.0, 0.0
        centroid, probe_acc, probe_loss = _regression_landmarkers(xs, ys.double())
    skew = float((xs ** 3).mean(0).abs().mean())
    kurt = float(torch.log1p((xs ** 4).mean(0)).mean())
    cols = xs[:, :MAX_CORR_FEATURES]
    corr = (cols.T @ cols) / m
    k = cols.shape[1]
    mean_abs_corr = float((corr.abs().sum() - corr.diagonal().abs().sum()) / max(1, k * (k - 1)))
    small = xs @ xs.T if d > m else xs.T @ xs
    ev = torch.linalg.eigvalsh(small / m).clamp_min(0).flip(0)
    frac = ev / ev.sum().clamp_min(1e-12)
    nzf = frac[frac > 0]
    eff_rank = math.exp(float(-(nzf * nzf.log()).sum())) / min(m, d)
    k90 = int((frac.cumsum(0) < 0.9).sum()) + 1
    values = [math.log(n), math.log(d), math.log(c) if c else 0.0, float(task.is_classification), entropy, min_ratio,
              skew, kurt, mean_abs_corr, float(frac[0]), eff_rank, k90 / min(m, d),
              centroid, probe_acc, probe_loss, chance,
              math.log(steps), math.log(batch_size), math.log(steps * min(batch_size, n) / n)]
    values += [float(optimizer == o) for o in sorted(OPTIMIZERS)]
    return torch.tensor(values, dtype=torch.float32, device=dev)


__all__ = ["FEATURES", "MAX_ROWS", "encode"]
