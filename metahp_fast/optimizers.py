"""Optimizers in the torch.optim style, batched over a population: each candidate has its own hyperparameters.

Each optimizer (:class:`SGD`, :class:`AdamW`; by name in :data:`OPTIMIZERS`) holds the hyperparameters it
takes with their valid ranges, the names of its per-parameter state, and its update rule in three forms:
:meth:`~Optimizer.coefficients` (this step's per-candidate scalars, a named record), a pure
:meth:`~Optimizer.update` (new tensors, differentiable) and an in-place :meth:`~Optimizer.update_` (the
backends' hot path), plus :meth:`~Optimizer.torch_optimizer`, the one mapping to the torch.optim optimizer a
candidate stands for. The rules reproduce torch.optim exactly (SGD: momentum with dampening 0, nesterov,
coupled weight decay; AdamW: bias correction, decoupled weight decay). Per-candidate scalar coefficients are
computed in float64 (torch.optim does that arithmetic in Python floats), then cast to the parameters' dtype.
The Triton kernels mirror this module in ``metahp_fast.kernels.optim``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, ClassVar, Iterable, Mapping, Union

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
#: Multiplies the initial weights; accepted with every optimizer (see :func:`hparam_specs`).
INIT_SCALE = HParamSpec(1.0, lambda t: t > 0, "> 0")


def _col(t: Tensor, like: Tensor) -> Tensor:
    """(K,) coefficient -> shape broadcastable against a (K, ...) parameter."""
    return t.view((-1,) + (1,) * (like.dim() - 1))


@dataclass(frozen=True)
class SGDCoefficients:
    """One SGD step's (K,) per-candidate scalars, in the parameters' dtype."""

    lr: Tensor
    weight_decay: Tensor
    momentum: Tensor
    #: 1 where the momentum buffer takes its new value, 0 where it is kept (momentum 0: plain SGD, as torch).
    use_new_buffer: Tensor


@dataclass(frozen=True)
class AdamWCoefficients:
    """One AdamW step's (K,) per-candidate scalars, in the parameters' dtype: torch.optim's step size
    ``lr / (1 - beta1**t)``, decoupled decay ``1 - lr * weight_decay`` and ``sqrt(1 - beta2**t)``."""

    step_size: Tensor
    decay: Tensor
    one_minus_beta1: Tensor
    beta2: Tensor
    one_minus_beta2: Tensor
    eps: Tensor
    bc2_sqrt: Tensor


Coefficients = Union[SGDCoefficients, AdamWCoefficients]


class Optimizer(ABC):
    """A torch.optim optimizer for K candidates at once: every hyperparameter is a (K,) tensor.

    ``state`` arguments are tuples of tensors in the order of :attr:`state_names`, each shaped like the
    (K, ...) parameter; they start at zero."""

    #: Name in :data:`OPTIMIZERS`.
    name: ClassVar[str]
    #: The hyperparameters it takes, with torch.optim's defaults and the valid ranges.
    hparams: ClassVar[Mapping[str, HParamSpec]]
    #: Names of the state tensors kept per parameter (torch.optim's state keys).
    state_names: ClassVar[tuple[str, ...]]
    #: The coefficient record :meth:`coefficients` returns and the updates take.
    coefficient_type: ClassVar[type]

    @abstractmethod
    def coefficients(self, hp: Mapping[str, Tensor], step: Tensor, alive: Tensor) -> Coefficients:
        """Per-candidate (K,) scalars of this step's update, in the hyperparameters' dtype.

        ``step`` is the 1-based number of the update being applied (AdamW's bias correction). Candidates not
        ``alive`` get coefficients that leave parameters and state unchanged given a zero gradient."""

    @abstractmethod
    def update(self, p: Tensor, g: Tensor, state: tuple[Tensor, ...],
               c: Coefficients) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The step on a (K, ...) parameter as new tensors (differentiable): returns (new_p, new_state)."""

    @abstractmethod
    def update_(self, p: Tensor, g: Tensor, state: tuple[Tensor, ...], c: Coefficients) -> None:
        """The step written into ``p`` and ``state``, with ``g`` as the only scratch (overwritten): the same
        arithmetic as :meth:`update` with fewer passes over memory."""

    @abstractmethod
    def torch_optimizer(self, params: Iterable, hp: Mapping[str, float]) -> torch.optim.Optimizer:
        """The torch.optim optimizer that one candidate with scalar hyperparameters ``hp`` stands for."""

    def _check_update(self, state: tuple[Tensor, ...], c: Coefficients) -> None:
        """The arguments of an update are this optimizer's (checked before any arithmetic)."""
        if not isinstance(c, self.coefficient_type):
            raise TypeError(f"c must be {self.coefficient_type.__name__} from {type(self).__name__}.coefficients; "
                            f"got {type(c).__name__}")
        if len(state) != len(self.state_names):
            raise ValueError(f"state must hold {self.state_names} for {self.name}; got {len(state)} tensors")

    def _check_hp(self, hp: Mapping[str, Tensor]) -> None:
        """``hp`` names every hyperparameter this optimizer takes."""
        missing = [n for n in self.hparams if n not in hp]
        if missing:
            raise ValueError(f"hp is missing {missing} for optimizer {self.name!r}")


def _masker(alive: Tensor, dtype: torch.dtype) -> Callable[[Tensor, float], Tensor]:
    """``out(t, v)``: ``t`` cast to ``dtype`` with dead candidates' entries set to ``v``."""
    dead = ~alive
    return lambda t, dead_value: t.to(dtype).masked_fill(dead, dead_value)


@dataclass(frozen=True)
class SGD(Optimizer):
    """torch.optim.SGD (dampening 0, coupled weight decay), with Nesterov momentum if ``nesterov``."""

    nesterov: bool = False

    name: ClassVar[str] = "sgd"
    hparams: ClassVar[Mapping[str, HParamSpec]] = MappingProxyType({
        "lr": HParamSpec(0.001, lambda t: t >= 0, ">= 0"),
        "momentum": _UNIT,
        "weight_decay": _NONNEG,
    })
    state_names: ClassVar[tuple[str, ...]] = ("momentum_buffer",)
    coefficient_type: ClassVar[type] = SGDCoefficients

    def coefficients(self, hp: Mapping[str, Tensor], step: Tensor, alive: Tensor) -> SGDCoefficients:
        """Dead candidates: lr 0, weight decay 0, momentum 1 (the buffer stays as it is)."""
        self._check_hp(hp)
        out = _masker(alive, hp["lr"].dtype)
        mom = hp["momentum"]
        return SGDCoefficients(lr=out(hp["lr"].double(), 0.0), weight_decay=out(hp["weight_decay"].double(), 0.0),
                               momentum=out(mom, 1.0), use_new_buffer=out((mom > 0).double(), 1.0))

    def update(self, p: Tensor, g: Tensor, state: tuple[Tensor, ...],
               c: SGDCoefficients) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``buf`` starts at zero, so ``momentum*buf + g`` equals torch's first-step ``buf = g`` exactly. Like
        torch, a candidate with momentum 0 does plain SGD and leaves its buffer as it is (zero unless momentum
        was switched off mid-run); ``lerp`` with a 0/1 weight selects exactly, in one pass."""
        self._check_update(state, c)
        (buf,) = state
        wd, mom, lr, use = (_col(t, p) for t in (c.weight_decay, c.momentum, c.lr, c.use_new_buffer))
        g = torch.addcmul(g, p, wd)
        new_buf = torch.addcmul(g, buf, mom)
        d = torch.addcmul(g, new_buf, mom) if self.nesterov else new_buf
        return torch.addcmul(p, d, lr, value=-1), (torch.lerp(buf, new_buf, use),)

    def update_(self, p: Tensor, g: Tensor, state: tuple[Tensor, ...], c: SGDCoefficients) -> None:
        self._check_update(state, c)
        (buf,) = state
        wd, mom, lr, use = (_col(t, p) for t in (c.weight_decay, c.momentum, c.lr, c.use_new_buffer))
        g = g.addcmul_(p, wd)
        if self.nesterov:  # g is still needed after the new buffer: the buffer gets its own tensor
            new_buf = torch.addcmul(g, buf, mom)
            d = g.addcmul_(new_buf, mom)
        else:
            new_buf = d = g.addcmul_(buf, mom)
        p.addcmul_(d, lr, value=-1)
        buf.lerp_(new_buf, use)

    def torch_optimizer(self, params: Iterable, hp: Mapping[str, float]) -> torch.optim.SGD:
        use_nesterov = self.nesterov and hp["momentum"] > 0  # nesterov with momentum 0 is plain SGD
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                               nesterov=use_nesterov, foreach=False)


@dataclass(frozen=True)
class AdamW(Optimizer):
    """torch.optim.AdamW (bias correction, decoupled weight decay, no amsgrad)."""

    name: ClassVar[str] = "adamw"
    hparams: ClassVar[Mapping[str, HParamSpec]] = MappingProxyType({
        "lr": HParamSpec(0.001, lambda t: t >= 0, ">= 0"),
        "beta1": HParamSpec(0.9, _UNIT.valid, _UNIT.rule),
        "beta2": HParamSpec(0.999, _UNIT.valid, _UNIT.rule),
        "eps": HParamSpec(1e-8, lambda t: t > 0, "> 0"),
        "weight_decay": HParamSpec(0.01, lambda t: t >= 0, ">= 0"),
    })
    state_names: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_avg_sq")
    coefficient_type: ClassVar[type] = AdamWCoefficients

    def coefficients(self, hp: Mapping[str, Tensor], step: Tensor, alive: Tensor) -> AdamWCoefficients:
        """Dead candidates: step size 0, decay 1, moving averages kept (1 - beta 0, beta2 1)."""
        self._check_hp(hp)
        out = _masker(alive, hp["lr"].dtype)
        lr, wd = hp["lr"].double(), hp["weight_decay"].double()
        b1, b2, t = hp["beta1"].double(), hp["beta2"].double(), step.clamp(min=1).double()
        return AdamWCoefficients(
            step_size=out(lr / (1 - b1**t), 0.0), decay=out(1 - lr * wd, 1.0), one_minus_beta1=out(1 - b1, 0.0),
            beta2=out(b2, 1.0), one_minus_beta2=out(1 - b2, 0.0), eps=hp["eps"],
            bc2_sqrt=out(torch.sqrt(1 - b2**t), 1.0))

    def update(self, p: Tensor, g: Tensor, state: tuple[Tensor, ...],
               c: AdamWCoefficients) -> tuple[Tensor, tuple[Tensor, ...]]:
        self._check_update(state, c)
        m, v = state
        decay, omb1, b2, omb2, bc2, eps, step = (_col(t, p) for t in (
            c.decay, c.one_minus_beta1, c.beta2, c.one_minus_beta2, c.bc2_sqrt, c.eps, c.step_size))
        p, m, v = p * decay, torch.lerp(m, g, omb1), torch.addcmul(v * b2, g * omb2, g)
        ratio = m / (torch.sqrt(v) / bc2 + eps)
        return torch.addcmul(p, ratio, step, value=-1), (m, v)

    def update_(self, p: Tensor, g: Tensor, state: tuple[Tensor, ...], c: AdamWCoefficients) -> None:
        """No temporaries: the same arithmetic as :meth:`update`, the square's rounding order aside."""
        self._check_update(state, c)
        m, v = state
        decay, omb1, b2, omb2, bc2, eps, step = (_col(t, p) for t in (
            c.decay, c.one_minus_beta1, c.beta2, c.one_minus_beta2, c.bc2_sqrt, c.eps, c.step_size))
        p.mul_(decay)
        m.lerp_(g, omb1)
        v.mul_(b2).add_(g.mul_(g).mul_(omb2))
        ratio = torch.div(m, torch.sqrt(v, out=g).div_(bc2).add_(eps), out=g)
        p.addcmul_(ratio, step, value=-1)

    def torch_optimizer(self, params: Iterable, hp: Mapping[str, float]) -> torch.optim.AdamW:
        return torch.optim.AdamW(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                                 weight_decay=hp["weight_decay"], foreach=False)


#: The optimizers by name.
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adamw": AdamW}


def get_optimizer(name: str, nesterov: bool = False) -> Optimizer:
    """The optimizer called ``name`` in :data:`OPTIMIZERS`; ``nesterov`` (SGD only) for Nesterov momentum."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}; got {name!r}")
    if nesterov:
        if OPTIMIZERS[name] is not SGD:
            raise ValueError(f"nesterov=True only applies to optimizer='sgd'; got optimizer={name!r}")
        return SGD(nesterov=True)
    return OPTIMIZERS[name]()


def hparam_specs(optimizer: str) -> dict[str, HParamSpec]:
    """All hyperparameters ``optimizer`` accepts (its own plus ``init_scale``)."""
    return {**OPTIMIZERS[optimizer].hparams, "init_scale": INIT_SCALE}


__all__ = ["OPTIMIZERS", "INIT_SCALE", "HParamSpec", "Optimizer", "SGD", "AdamW", "SGDCoefficients",
           "AdamWCoefficients", "Coefficients", "get_optimizer", "hparam_specs"]
