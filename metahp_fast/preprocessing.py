"""Feature scaling, fitted on a task's train split and applied unchanged to every later row (validation, test,
a saved model's new data): the one place that turns encoded features into a network's inputs.

``scaling`` is one of :data:`SCALINGS`:

- ``"standard"``: ``(x - mean) / std`` (a constant column's ``std`` is 1); no clipping. The default.
- ``"robust"``: ``(x - median) / s`` with ``s = IQR / 1.349`` (the standard deviation for normal data; the
  standard deviation where the IQR is 0, as in a mostly-zero one-hot column), then RealMLP's smooth clip
  ``z / sqrt(1 + (z / clip)^2)``: outliers stay ordered but end within ``(-clip, clip)``, so one extreme row can
  neither squash a column's bulk (as it does the mean and std) nor reach the network as a huge input.
- ``"quantile"``: each column through its training quantiles to a normal score, ``Phi^-1(F(x))`` with ``F`` the
  training rows' empirical CDF interpolated linearly (ties take the middle of their rank range, so a binary
  column becomes two values, not +-inf) and squeezed into ``[0.5/n, 1 - 0.5/n]`` (``n`` training rows: the
  midpoint ranks), so scores stay finite (within +-4.6 up to 10^5 rows) without a clip and distinct training
  values keep distinct scores, however rare at a column's end: any monotone tail becomes Gaussian. A value
  beyond the training range maps to ``Phi^-1`` of ``0.25/n`` or ``1 - 0.25/n``, half a rank past the end score
  of its side (the model cannot extrapolate along that column, but tells it from the training extremes).
  Scalers saved before this (no ``rows``) keep their mapping: ``F`` in ``[0, 1]``, clipped at ``+-clip`` (3),
  which merged the values rarer than about 1 in 740 at a column's ends (on 2 of the 29 KEEL tables).
  Far better than standard on all six heavy-tailed tables measured; opt-in (benchmarks/results/scaling.md).

A :class:`Scaler` is saved as plain tensors and numbers (:meth:`Scaler.to_dict`) in a best.pt, so files still
load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch import Tensor

#: The scalings :func:`fit_scaler` knows.
SCALINGS = ("standard", "robust", "quantile")
#: What ``load_task``, ``from_arrays``, the CLI and the estimators use unless told (chosen by measurement,
#: benchmarks/results/scaling.md: quantile wins on heavy tails; its clip at 3, since replaced by midpoint ranks,
#: merged rare extreme categories).
DEFAULT_SCALING = "standard"
#: Where ``robust`` clips its outputs (RealMLP's smooth clip uses 3), and a ``quantile`` scaler saved before
#: ``rows`` existed.
CLIP = 3.0
#: Most quantiles a ``quantile`` scaler keeps per column (as scikit-learn's QuantileTransformer).
MAX_QUANTILES = 1000
#: A normal-consistent IQR: the IQR of N(0, 1) is this, so ``IQR / NORMAL_IQR`` estimates a standard deviation.
NORMAL_IQR = 1.3489795003921634


def check_scaling(scaling: Any) -> str:
    """``scaling`` if it is one of :data:`SCALINGS` (None: :data:`DEFAULT_SCALING`), else a ValueError naming it."""
    if scaling is None:
        return DEFAULT_SCALING
    if not isinstance(scaling, str) or scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")
    return scaling


@dataclass(frozen=True)
class Scaler:
    """A fitted feature scaling: ``kind`` (one of :data:`SCALINGS`), per-column ``center`` and ``scale`` (float64,
    (features,): mean/std, median/IQR scale, or 0/1 for quantile), ``clip`` (None: no clipping) and, for
    ``quantile``, the training ``quantiles`` (float64, (levels, features), at ``linspace(0, 1, levels)``) and
    ``rows``, the training rows ``n`` whose midpoint ranks bound the scores (then ``clip`` is None). A quantile
    scaler without ``rows`` (saved before it existed) maps as it did: ranks in [0, 1], clipped at ``+-clip``."""

    kind: str
    center: Tensor
    scale: Tensor
    clip: Optional[float] = None
    quantiles: Optional[Tensor] = None
    rows: Optional[int] = None

    def __post_init__(self) -> None:
        check_scaling(self.kind)
        for name in ("center", "scale"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.dim() != 1 or not t.dtype.is_floating_point:
                raise ValueError(f"{name} must be a 1-D float tensor; got {type(t).__name__}"
                                 f"{tuple(t.shape) if isinstance(t, Tensor) else ''}")
        if self.center.shape != self.scale.shape:
            raise ValueError(f"center and scale must match; got {tuple(self.center.shape)} and "
                             f"{tuple(self.scale.shape)}")
        if not bool(torch.isfinite(self.center).all()) or not bool((self.scale > 0).all()):
            raise ValueError("center must be finite and scale positive")
        if self.clip is not None and (isinstance(self.clip, bool) or not isinstance(self.clip, (int, float))
                                      or not self.clip > 0 or not math.isfinite(self.clip)):
            raise ValueError(f"clip must be a positive number or None; got {self.clip!r}")
        q = self.quantiles
        if (self.kind == "quantile") != (q is not None):
            raise ValueError("quantiles must be given for kind='quantile' and only then")
        if q is not None and (not isinstance(q, Tensor) or q.dim() != 2 or q.shape[0] < 2
                              or q.shape[1] != self.center.numel() or not bool(torch.isfinite(q).all())
                              or not bool((q[1:] >= q[:-1]).all())):
            raise ValueError(f"quantiles must be a finite (levels >= 2, {self.center.numel()}) tensor, "
                             "non-decreasing down each column")
        if self.rows is not None:
            if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1:
                raise ValueError(f"rows must be a positive int or None; got {self.rows!r}")
            if self.kind != "quantile" or self.clip is not None:
                raise ValueError("rows is for a kind='quantile' scaler only, and one with rows is not clipped "
                                 f"(its scores end at the midpoint ranks); got kind={self.kind!r}, clip={self.clip!r}")

    @property
    def n_features(self) -> int:
        return self.center.numel()

    def transform(self, x: Tensor) -> Tensor:
        """``x`` (rows, features) scaled, float64."""
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (rows, {self.n_features}); got {tuple(x.shape)}")
        x = x.double()
        if self.kind == "quantile":
            return _normal_scores(x, self.quantiles.to(x.device), self.clip, self.rows)  # type: ignore[union-attr]
        z = (x - self.center.to(x.device)) / self.scale.to(x.device)
        if self.clip is not None:
            z = z / torch.sqrt(1.0 + (z / self.clip) ** 2)  # smooth clip: monotone, |z| < clip
        return z

    def inverse_transform(self, z: Tensor) -> Tensor:
        """Raw features (float64) that :meth:`transform` maps to ``z``: exact for standard, for robust up to
        rounding, for quantile within the training range (a tie comes back as its value; a score past the end
        scores, or one clipped at ``+-clip`` by an old scaler, as a value beyond the training range on its side);
        ``transform(inverse_transform(z))`` gives back every ``z`` that :meth:`transform` produced."""
        if z.dim() != 2 or z.shape[1] != self.n_features:
            raise ValueError(f"z must have shape (rows, {self.n_features}); got {tuple(z.shape)}")
        z = z.double()
        if self.kind == "quantile":
            q = self.quantiles.to(z.device)  # type: ignore[union-attr]
            if self.rows is None:  # saved before rows: ranks in [0, 1], clipped
                bound = CLIP if self.clip is None else self.clip
                u = torch.special.ndtr(z.clamp(-bound, bound))
                above, below = z >= bound, z <= -bound
            else:  # midpoint ranks; past halfway to the beyond-range score: beyond the training range
                n = self.rows
                p = torch.special.ndtr(z)
                u = (p * n - 0.5) / max(n - 1, 1)
                above, below = p > 1.0 - 0.375 / n, p < 0.375 / n
            pos = u.clamp(0.0, 1.0) * (q.shape[0] - 1)
            i = pos.floor().clamp(0, q.shape[0] - 2).long()
            lo, hi = q.gather(0, i), q.gather(0, i + 1)
            x = lo + (pos - i).clamp(0.0, 1.0) * (hi - lo)
            beyond = q[-1] - q[0] + 1.0  # any value past the training range transforms to the same score
            return torch.where(above, q[-1] + beyond, torch.where(below, q[0] - beyond, x))
        if self.clip is not None:
            y = z.clamp(-self.clip * (1 - 1e-12), self.clip * (1 - 1e-12))
            z = y / torch.sqrt(1.0 - (y / self.clip) ** 2)
        return z * self.scale.to(z.device) + self.center.to(z.device)

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers (a safe file holds them); :meth:`from_dict` reads them back."""
        return {"kind": self.kind, "center": self.center.detach().cpu().clone(),
                "scale": self.scale.detach().cpu().clone(), "clip": self.clip,
                "quantiles": None if self.quantiles is None else self.quantiles.detach().cpu().clone(),
                "rows": self.rows}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Scaler":
        """The scaler :meth:`to_dict` described (one saved before ``rows`` existed maps as it did then); a
        ValueError if the data does not describe one."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a scaler is a dict; got {type(d).__name__}")
        q = d.get("quantiles")
        return cls(d.get("kind"), _as_double(d.get("center")), _as_double(d.get("scale")),  # type: ignore[arg-type]
                   d.get("clip"), None if q is None else _as_double(q), d.get("rows"))

    @classmethod
    def standard(cls, mean: Tensor, std: Tensor) -> "Scaler":
        """``(x - mean) / std``, unclipped: a task's scaling before scalers existed."""
        return cls("standard", mean.detach().cpu().double(), std.detach().cpu().double())


def _as_double(t: Any) -> Tensor:
    if not isinstance(t, Tensor):
        raise ValueError(f"expected a tensor; got {type(t).__name__}")
    return t.detach().cpu().double().clone(memory_format=torch.contiguous_format)


def fit_scaler(x_train: Any, scaling: str = DEFAULT_SCALING, clip: Optional[float] = CLIP) -> Scaler:
    """The ``scaling`` of the training rows ``x_train`` (rows >= 1, features; finite numbers: missing cells are
    filled before this). ``clip`` applies to ``robust`` only: ``standard`` is never clipped, and ``quantile``'s
    scores end at the midpoint ranks of the training rows instead (a clip would merge rare extreme values)."""
    scaling = check_scaling(scaling)
    x = torch.as_tensor(x_train).detach().cpu().double()
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"x_train must have shape (rows >= 1, features); got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x_train must be finite (fill or drop missing values first)")
    std = x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    if scaling == "standard":
        return Scaler("standard", x.mean(0), std)
    if scaling == "robust":
        q = torch.quantile(x, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=0)
        q = q.clone(memory_format=torch.contiguous_format)  # plain strides (a (3, 1) result can have (1, 3))
        iqr = (q[2] - q[0]) / NORMAL_IQR
        return Scaler("robust", q[1], torch.where(iqr > 0, iqr, std), clip)
    levels = min(max(x.shape[0], 2), MAX_QUANTILES)
    quantiles = torch.from_numpy(np.quantile(x.numpy(), np.linspace(0.0, 1.0, levels), axis=0))
    quantiles = torch.cummax(quantiles, 0).values  # interpolation rounding must not break monotonicity
    zeros = torch.zeros(x.shape[1], dtype=torch.float64)
    return Scaler("quantile", zeros, torch.ones_like(zeros), None, quantiles, rows=int(x.shape[0]))


#: Cells per block of columns that :func:`_normal_scores` maps at once (its temporaries: a few times this many
#: float64s, not a few copies of a 10^5 x 10^3 table).
BLOCK = 1 << 21


def _normal_scores(x: Tensor, quantiles: Tensor, clip: Optional[float], rows: Optional[int] = None) -> Tensor:
    """``Phi^-1(F(x))`` per column, ``F`` interpolating ``quantiles`` (levels 0..1 evenly spaced): the mean of
    the interpolations that resolve ties downwards and upwards, so tied training values get their middle rank.
    With ``rows`` (``n``), ``F`` goes to ``(0.5 + F (n - 1)) / n`` in ``[0.5/n, 1 - 0.5/n]`` (midpoint ranks,
    no clip) and a value beyond the training range to ``0.25/n`` or ``1 - 0.25/n``; without (a scaler saved
    before rows), ``F`` stays in ``[0, 1]`` and the scores are clipped at ``+-clip``."""
    step = max(1, BLOCK // max(1, x.shape[0]))
    out = torch.empty_like(x)
    for j in range(0, x.shape[1], step):
        out[:, j:j + step] = _normal_scores_block(x[:, j:j + step], quantiles[:, j:j + step], clip, rows)
    return out


def _normal_scores_block(x: Tensor, quantiles: Tensor, clip: Optional[float], rows: Optional[int]) -> Tensor:
    levels = quantiles.shape[0]
    q = quantiles.T.contiguous()  # (features, levels)
    xt = x.T.contiguous()  # (features, rows)
    lv = torch.linspace(0.0, 1.0, levels, dtype=torch.float64, device=x.device)

    def interp(right: bool) -> Tensor:
        # i: first quantile above x (right) or at least x (left); inside, q[i-1] < q[i] strictly
        i = torch.searchsorted(q, xt, right=right)
        j = i.clamp(1, levels - 1)
        lo, hi = q.gather(1, j - 1), q.gather(1, j)
        frac = ((xt - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))).clamp(0.0, 1.0)
        u = lv[j - 1] + frac * (lv[j] - lv[j - 1])
        return torch.where(i == 0, 0.0, torch.where(i == levels, 1.0, u))

    u = 0.5 * (interp(False) + interp(True))
    if rows is None:  # a scaler saved before rows: as it mapped then
        bound = CLIP if clip is None else clip
        z = torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12)).clamp(-bound, bound)
        return z.T.contiguous()
    n = float(rows)
    u = (0.5 + u * (n - 1.0)) / n  # midpoint ranks: 0.5/n .. 1 - 0.5/n, never 0 or 1
    u = torch.where(xt > q[:, -1:], 1.0 - 0.25 / n, torch.where(xt < q[:, :1], 0.25 / n, u))
    return torch.special.ndtri(u).T.contiguous()


__all__ = ["CLIP", "DEFAULT_SCALING", "SCALINGS", "Scaler", "check_scaling", "fit_scaler"]
