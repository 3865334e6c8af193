"""Learning-rate schedules whose shape is a per-candidate hyperparameter: linear warmup over a fraction of the
steps, then cosine decay to a floor (a fraction of the candidate's lr). For ``Population.fit(lr_schedule=...)``."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor


def _fractions(name: str, v: Any, size: int, high_open: bool) -> Tensor:
    t = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
    t = t.expand(size).clone() if t.numel() == 1 else t
    ok = (t >= 0) & ((t < 1) if high_open else (t <= 1))
    if t.shape != (size,) or not bool(ok.all()):
        raise ValueError(f"{name} must be a scalar or ({size},) values in [0, 1{')' if high_open else ']'}; "
                         f"got {t.tolist() if t.numel() <= 8 else tuple(t.shape)}")
    return t


def warmup_cosine(steps: int, warmup: Any = 0.0, floor: Any = 0.0, size: int = 1) -> Callable[[int, Tensor], Tensor]:
    """The schedule ``(t, base_lr) -> lr`` (K,) of ``steps`` steps: candidate k's lr rises linearly over its first
    ``warmup[k] * steps`` steps (step t at (t + 1) / warmup_steps of it), then follows a half cosine from its lr
    down to ``floor[k]`` times it at the last step. Scalars apply to every candidate; ``size`` is K."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    w = _fractions("warmup", warmup, size, high_open=True)
    f = _fractions("floor", floor, size, high_open=False)
    w_steps = torch.floor(w * steps)

    def schedule(t: int, base: Tensor) -> Tensor:
        tt = torch.full_like(w_steps, float(t))
        warm = (tt + 1) / w_steps.clamp(min=1)
        progress = ((tt - w_steps) / (steps - w_steps - 1).clamp(min=1)).clamp(0, 1)
        decay = f + (1 - f) * 0.5 * (1 + torch.cos(math.pi * progress))
        mult = torch.where(tt < w_steps, warm, decay)
        return base * mult.to(base.device, base.dtype)
    return schedule


__all__ = ["warmup_cosine"]
