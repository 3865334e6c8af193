"""Optimizers: which hyperparameters each one takes, their valid ranges, and the batched update maths.

The update rules reproduce torch.optim exactly (SGD: momentum with dampening 0, nesterov, coupled weight
decay; AdamW: bias correction, decoupled weight decay), with every hyperparameter a (K,) tensor so that each
candidate of a population has its own. Per-candidate scalar coefficients are computed in float64 (torch.optim
does that arithmetic in Python floats) and then cast to the parameters' dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class HParamSpec:
    """One hyperparameter: its default and the check its values must pass (message says the valid range)."""

    default: float
    valid: Callable[[Tensor], Tensor]
    rule: str


_NONNEG = HParamSpec(0.0, lambda t: t >= 0, ">= 0")
_UNIT = HParamSpec(0.0, lambda t: (t >= 0) & (t < 1), "in [0, 1)")

#: Hyperparameters each optimizer accepts. ``init_scale`` (multiplies the initial weights) is accepted by all.
OPTIMIZERS: dict[str, dict[str, HParamSpec]] = {
    "sgd": {
        "lr": HParamSpec(0.001, lambda t: t >= 0, ">= 0"),
        "momentum": _UNIT,
        "weight_decay": _NONNEG,
    },
    "adamw": {
        "lr": HParamSpec(0.001, lambda t: t >= 0, ">= 0"),
        "beta1": HParamSpec(0.9, _UNIT.valid, _UNIT.rule),
        "beta2": HParamSpec(0.999, _UNIT.valid, _UNIT.rule),
        "eps": HParamSpec(1e-8, lambda t: t > 0, "> 0"),
        "weight_decay": HParamSpec(0.01, lambda t: t >= 0, ">= 0"),
    },
}
INIT_SCALE = HParamSpec(1.0, lambda t: t > 0, "> 0")

#: Names of the optimizer-state tensors kept per parameter, in the layout of the parameter.
STATE_NAMES: dict[str, tuple[str, ...]] = {"sgd": ("momentum_buffer",), "adamw": ("exp_avg", "exp_avg_sq")}


def hparam_specs(optimizer: str) -> dict[str, HParamSpec]:
    """All hyperparameters ``optimizer`` accepts (its own plus ``init_scale``)."""
    return {**OPTIMIZERS[optimizer], "init_scale": INIT_SCALE}


def _col(t: Tensor, like: Tensor) -> Tensor:
    """(K,) coefficient -> shape broadcastable against a (K, ...) parameter."""
    return t.view((-1,) + (1,) * (like.dim() - 1))


def update_coefficients(optimizer: str, hp: dict[str, Tensor], step: Tensor, alive: Tensor) -> dict[str, Tensor]:
    """Per-candidate (K,) scalars of this step's update, in the hyperparameters' dtype.

    ``step`` is the 1-based number of the update being applied (AdamW's bias correction). Derived scalars are
    computed in float64 as torch.optim computes them in Python floats. Candidates not ``alive`` get
    coefficients that leave parameters and state unchanged given a zero gradient (lr 0, momentum 1, ...)."""
    dtype = hp["lr"].dtype
    lr, wd = hp["lr"].double(), hp["weight_decay"].double()
    dead = ~alive

    def out(t: Tensor, dead_value: float) -> Tensor:
        return t.to(dtype).masked_fill(dead, dead_value)
    if optimizer == "sgd":
        mom = hp["momentum"]
        return {"lr": out(lr, 0.0), "weight_decay": out(wd, 0.0), "momentum": out(mom, 1.0),
                "use_new_buffer": out((mom > 0).double(), 1.0)}
    b1, b2, t = hp["beta1"].double(), hp["beta2"].double(), step.clamp(min=1).double()
    return {
        "decay": out(1 - lr * wd, 1.0),
        "one_minus_beta1": out(1 - b1, 0.0),
        "beta2": out(b2, 1.0),
        "one_minus_beta2": out(1 - b2, 0.0),
        "step_size": out(lr / (1 - b1**t), 0.0),
        "bc2_sqrt": out(torch.sqrt(1 - b2**t), 1.0),
        "eps": hp["eps"],
    }


def sgd_update(p: Tensor, g: Tensor, buf: Tensor, c: dict[str, Tensor], nesterov: bool,
               in_place: bool = False) -> tuple[Tensor, Tensor]:
    """torch.optim.SGD on a (K, ...) parameter with coefficients from :func:`update_coefficients`: returns
    (new_p, new_buf); with ``in_place``, writes them into ``p`` and ``buf`` (and uses ``g`` as scratch), the
    same arithmetic with fewer passes over memory.

    ``buf`` starts at zero, so ``momentum*buf + g`` equals torch's first-step ``buf = g`` exactly. Like torch,
    a candidate with momentum 0 does plain SGD and leaves its buffer as it is (zero unless momentum was
    switched off mid-run); ``lerp`` with a 0/1 weight selects exactly, in one pass."""
    wd, mom, lr, use = (_col(c[k], p) for k in ("weight_decay", "momentum", "lr", "use_new_buffer"))
    g = g.addcmul_(p, wd) if in_place else torch.addcmul(g, p, wd)
    new_buf = g.addcmul_(buf, mom) if in_place and not nesterov else torch.addcmul(g, buf, mom)
    d = (g.addcmul_(new_buf, mom) if in_place else torch.addcmul(g, new_buf, mom)) if nesterov else new_buf
    if in_place:
        return p.addcmul_(d, lr, value=-1), buf.lerp_(new_buf, use)
    return torch.addcmul(p, d, lr, value=-1), torch.lerp(buf, new_buf, use)


def adamw_update(p: Tensor, g: Tensor, m: Tensor, v: Tensor, c: dict[str, Tensor],
                 in_place: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """torch.optim.AdamW on a (K, ...) parameter with coefficients from :func:`update_coefficients`: returns
    (new_p, new_exp_avg, new_exp_avg_sq); with ``in_place``, writes them into ``p``, ``m`` and ``v`` and uses
    ``g`` as the only scratch (no temporaries: the same arithmetic, the square's rounding order aside)."""
    decay, omb1, b2, omb2, bc2, eps, step = (_col(c[k], p) for k in (
        "decay", "one_minus_beta1", "beta2", "one_minus_beta2", "bc2_sqrt", "eps", "step_size"))
    if in_place:
        p.mul_(decay)
        m.lerp_(g, omb1)
        v.mul_(b2).add_(g.mul_(g).mul_(omb2))
        ratio = torch.div(m, torch.sqrt(v, out=g).div_(bc2).add_(eps), out=g)
        return p.addcmul_(ratio, step, value=-1), m, v
    p, m, v = p * decay, torch.lerp(m, g, omb1), torch.addcmul(v * b2, g * omb2, g)
    ratio = m / (torch.sqrt(v) / bc2 + eps)
    return torch.addcmul(p, ratio, step, value=-1), m, v


def torch_optimizer(optimizer: str, params, hp: dict[str, float], nesterov: bool) -> torch.optim.Optimizer:
    """The torch.optim optimizer that one candidate with scalar hyperparameters ``hp`` stands for."""
    if optimizer == "sgd":
        use_nesterov = nesterov and hp["momentum"] > 0  # nesterov with momentum 0 is plain SGD
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                               nesterov=use_nesterov, foreach=False)
    return torch.optim.AdamW(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                             weight_decay=hp["weight_decay"], foreach=False)


__all__ = ["OPTIMIZERS", "STATE_NAMES", "HParamSpec", "hparam_specs", "update_coefficients", "sgd_update",
           "adamw_update", "torch_optimizer"]
