"""Search spaces: named hyperparameter distributions, seeded sampling, and the map to an unconstrained vector.

Tuners and meta-learners work on ``u``, one real number per non-fixed hyperparameter (``log(x)`` for
:class:`LogUniform`, ``logit`` of the position in the range for :class:`Uniform` and :class:`IntUniform`).
:meth:`SearchSpace.from_unconstrained` is built from torch ops, so gradients flow from the natural values
back to ``u`` by autograd (the Jacobian of the map is handled there).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping, Optional

import torch
from torch import Tensor

from .optimizers import OPTIMIZERS, hparam_specs

#: Values at the ends of a Uniform range map to ``logit(EDGE)`` and ``logit(1 - EDGE)`` (about -+13.8),
#: slightly inside the range, so that ``u`` stays finite and its gradients do not vanish.
EDGE = 1e-6


def _number(name: str, value: Any) -> float:
    """``value`` as a finite float, or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) and not (
            isinstance(value, Tensor) and value.numel() == 1):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number; got {v!r}")
    return v


def _as_float_tensor(name: str, value: Any) -> Tensor:
    """``value`` as a scalar or (n,) floating tensor (float64 unless it already is a floating tensor)."""
    try:
        t = value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"values[{name!r}] must be a number or a (n,) tensor; got {value!r}") from e
    if not t.dtype.is_floating_point:
        t = t.to(torch.float64)
    if t.dim() > 1:
        raise ValueError(f"values[{name!r}] must be a scalar or a (n,) tensor; got shape {tuple(t.shape)}")
    return t


class Distribution:
    """Base of the distributions: sampling, the map to/from ``u`` and (de)serialization."""

    kind: ClassVar[str]
    fixed: ClassVar[bool] = False

    def sample(self, n: int, gen: torch.Generator) -> Tensor:
        raise NotImplementedError

    def to_u(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def from_u(self, u: Tensor, round_ints: bool = False) -> Tensor:
        raise NotImplementedError

    def center_u(self) -> float:
        raise NotImplementedError

    def clip(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def contains(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def bounds(self) -> tuple[float, float]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class LogUniform(Distribution):
    """``log(x)`` uniform on ``[log(low), log(high)]``, ``0 < low < high``; ``u = log(x)``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        low, high = _number("low", self.low), _number("high", self.high)
        if low <= 0:
            raise ValueError(f"LogUniform needs low > 0 (log of a non-positive number); got low={low!r}")
        if low >= high:
            raise ValueError(f"LogUniform needs low < high; got low={low!r}, high={high!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def sample(self, n: int, gen: torch.Generator) -> Tensor:
        a, b = math.log(self.low), math.log(self.high)
        return torch.exp(a + (b - a) * torch.rand(n, generator=gen, dtype=torch.float64))

    def to_u(self, x: Tensor) -> Tensor:
        return torch.log(x)

    def from_u(self, u: Tensor, round_ints: bool = False) -> Tensor:
        return torch.exp(u)

    def center_u(self) -> float:
        return 0.5 * (math.log(self.low) + math.log(self.high))

    def clip(self, x: Tensor) -> Tensor:
        return x.clamp(self.low, self.high)

    def contains(self, x: Tensor) -> Tensor:
        return x > 0  # u = log(x) is defined for any positive value, inside the range or not

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class Uniform(Distribution):
    """Uniform on ``[low, high]``; ``u = logit((x - low) / (high - low))``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        low, high = _number("low", self.low), _number("high", self.high)
        if low >= high:
            raise ValueError(f"{type(self).__name__} needs low < high; got low={low!r}, high={high!r}")
        if not math.isfinite(high - low):
            raise ValueError(f"{type(self).__name__} needs a finite width high - low; got low={low!r}, high={high!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def _range(self) -> tuple[float, float]:
        """The continuous interval that ``u`` maps onto."""
        return self.low, self.high

    def sample(self, n: int, gen: torch.Generator) -> Tensor:
        return self.low + (self.high - self.low) * torch.rand(n, generator=gen, dtype=torch.float64)

    def to_u(self, x: Tensor) -> Tensor:
        a, b = self._range()
        return torch.logit((x - a) / (b - a), eps=EDGE)

    def from_u(self, u: Tensor, round_ints: bool = False) -> Tensor:
        a, b = self._range()
        return a + (b - a) * torch.sigmoid(u)

    def center_u(self) -> float:
        return 0.0

    def clip(self, x: Tensor) -> Tensor:
        return x.clamp(self.low, self.high)

    def contains(self, x: Tensor) -> Tensor:
        a, b = self._range()
        return (x >= a) & (x <= b)

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class IntUniform(Uniform):
    """Integers ``low..high`` (inclusive), equally likely; ``u`` is the logit of the position in the
    continuous relaxation ``[low - 0.5, high + 0.5]``, rounded back only when asked (``round_ints=True``)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) and not (
                    isinstance(v, float) and v.is_integer()):
                raise ValueError(f"IntUniform needs integer bounds; got {name}={v!r}")
            object.__setattr__(self, name, int(v))
            if abs(getattr(self, name)) > 2 ** 53:
                raise ValueError(f"IntUniform needs bounds within +-2**53 (exact as float64); got {name}={v!r}")
        if self.low >= self.high:
            raise ValueError(f"IntUniform needs low < high; got low={self.low!r}, high={self.high!r}")

    def _range(self) -> tuple[float, float]:
        return self.low - 0.5, self.high + 0.5

    def sample(self, n: int, gen: torch.Generator) -> Tensor:
        return torch.randint(self.low, self.high + 1, (n,), generator=gen).to(torch.float64)

    def to_u(self, x: Tensor) -> Tensor:
        a, b = self._range()  # the ends sit half a step inside the relaxation: keep them inside the logit's clamp
        return torch.logit((x - a) / (b - a), eps=min(EDGE, 0.25 / (b - a)))

    def from_u(self, u: Tensor, round_ints: bool = False) -> Tensor:
        x = super().from_u(u)
        return torch.round(x).clamp(self.low, self.high) if round_ints else x

    def clip(self, x: Tensor) -> Tensor:
        return torch.round(x).clamp(self.low, self.high)


@dataclass(frozen=True)
class Fixed(Distribution):
    """Always ``value``; takes no dimension of ``u``."""

    value: float
    fixed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _number("value", self.value))

    def sample(self, n: int, gen: torch.Generator) -> Tensor:
        return torch.full((n,), self.value, dtype=torch.float64)

    def clip(self, x: Tensor) -> Tensor:
        return torch.full_like(x, self.value)

    def bounds(self) -> tuple[float, float]:
        return self.value, self.value


_KINDS: dict[str, type[Distribution]] = {c.__name__: c for c in (LogUniform, Uniform, IntUniform, Fixed)}


#: Hyperparameters that are not the optimizer's but fixed per candidate when its population is built: ``width``,
#: every hidden layer's (``Population(widths=...)``), ``depth``, the number of hidden layers (candidates of different
#: depths train as a :class:`~metahp_fast.population_group.PopulationGroup`), and ``dropout``, the hidden units'
#: dropout probability (``Population(dropout=...)``). A space may tune them beside its optimizer's; PBT copies them
#: with the weights. Each maps to the kind of range it takes when :meth:`SearchSpace.with_ranges` adds it.
STRUCTURAL_KINDS: dict[str, type[Distribution]] = {"width": IntUniform, "depth": IntUniform, "dropout": Uniform}
STRUCTURAL = tuple(STRUCTURAL_KINDS)


def check_structural(name: str, dist: Distribution) -> None:
    """A ValueError naming ``name`` unless ``dropout`` stays within [0, 1) and ``width``/``depth`` is an IntUniform
    (or a Fixed whole number) of at least 1."""
    if name == "dropout":
        if not (dist.bounds()[0] >= 0 and dist.bounds()[1] < 1):
            raise ValueError(f"dropout={dist!r} must stay within [0, 1), e.g. Uniform(0.0, 0.5)")
        return
    if not (isinstance(dist, (IntUniform, Fixed)) and dist.bounds()[0] >= 1 and float(dist.bounds()[0]).is_integer()):
        what = "hidden layers" if name == "depth" else "units"
        raise ValueError(f"{name}={dist!r} must be an IntUniform (or Fixed whole number) of at least 1 ({what})")


class SearchSpace:
    """Named hyperparameter distributions, checked against ``optimizer``'s hyperparameters when given.

    >>> space = SearchSpace({"lr": LogUniform(1e-3, 1.0), "momentum": Uniform(0.0, 0.99)}, optimizer="sgd")
    >>> values = space.sample(8, seed=0)        # {"lr": (8,), "momentum": (8,)} float64
    >>> u = space.to_unconstrained(values)      # (8, 2); space.from_unconstrained(u) gives values back
    """

    def __init__(self, params: Mapping[str, Distribution], optimizer: Optional[str] = None):
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"params must be a non-empty dict of name -> distribution; got {params!r}")
        for name, dist in params.items():
            if not isinstance(name, str):
                raise ValueError(f"hyperparameter names must be strings; got {name!r}")
            if not isinstance(dist, Distribution):
                raise TypeError(f"params[{name!r}] must be one of {sorted(_KINDS)}; got {dist!r}")
        for name in STRUCTURAL:
            if name in params:
                check_structural(name, params[name])
        if optimizer is not None:
            if optimizer not in OPTIMIZERS:
                raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} or None; got {optimizer!r}")
            specs = hparam_specs(optimizer)
            unknown = sorted(set(params) - set(specs) - set(STRUCTURAL))
            if unknown:
                raise ValueError(f"unknown hyperparameters {unknown} for optimizer={optimizer!r}; "
                                 f"valid names are {sorted(specs) + list(STRUCTURAL)}")
            for name, dist in params.items():
                if name in STRUCTURAL:
                    continue
                lo, hi = dist.bounds()
                if not bool(specs[name].valid(torch.tensor([lo, hi], dtype=torch.float64)).all()):
                    raise ValueError(f"{name}={dist!r} reaches values outside the valid range of {name} "
                                     f"for {optimizer} ({specs[name].rule})")
        self.params: dict[str, Distribution] = dict(params)
        self.optimizer = optimizer

    @classmethod
    def default(cls, optimizer: str) -> "SearchSpace":
        """The default space for ``"sgd"`` or ``"adamw"``."""
        if optimizer == "sgd":
            return cls({"lr": LogUniform(1e-3, 1.0), "momentum": Uniform(0.0, 0.99),
                        "weight_decay": LogUniform(1e-6, 1e-2)}, optimizer="sgd")
        if optimizer == "adamw":
            return cls({"lr": LogUniform(1e-4, 3e-2), "beta1": Uniform(0.5, 0.99), "beta2": Uniform(0.9, 0.9999),
                        "eps": Fixed(1e-8), "weight_decay": LogUniform(1e-6, 1e-1)}, optimizer="adamw")
        raise ValueError(f"no default search space for optimizer {optimizer!r}; choose 'sgd' or 'adamw'")

    def with_ranges(self, ranges: Mapping[str, tuple[float, float]]) -> "SearchSpace":
        """A copy with new ``(low, high)`` ranges for the named hyperparameters, each keeping its kind (a
        log-uniform range stays log-uniform), and :data:`STRUCTURAL` ones added if absent (``width``/``depth`` as
        IntUniform, ``dropout`` as Uniform): ``SearchSpace.default("sgd").with_ranges({"lr": (1e-4, 3.0),
        "depth": (1, 3)})``."""
        unknown = sorted(set(ranges) - set(self.params) - set(STRUCTURAL))
        if unknown:
            raise ValueError(f"ranges: unknown hyperparameters {unknown}; valid names are "
                             f"{list(self.params) + [n for n in STRUCTURAL if n not in self.params]}")
        params = dict(self.params)
        for name, bounds in ranges.items():
            dist = params.get(name)
            if dist is not None and dist.fixed:
                raise ValueError(f"ranges: {name} is fixed at {dist.value:g} in this space; it has no range")
            try:
                low, high = bounds
            except (TypeError, ValueError):
                raise ValueError(f"ranges[{name!r}] must be a (low, high) pair; got {bounds!r}") from None
            try:
                params[name] = (STRUCTURAL_KINDS[name] if dist is None else type(dist))(low, high)
                if name in STRUCTURAL:
                    check_structural(name, params[name])
            except ValueError as e:
                raise ValueError(f"ranges: {name}: {e}") from None
        return SearchSpace(params, optimizer=self.optimizer)

    @property
    def names(self) -> tuple[str, ...]:
        """All hyperparameter names, in order."""
        return tuple(self.params)

    @property
    def dims(self) -> tuple[str, ...]:
        """The names of the non-fixed hyperparameters: the columns of ``u``, in order."""
        return tuple(n for n, d in self.params.items() if not d.fixed)

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, name: str) -> Distribution:
        return self.params[name]

    def __eq__(self, other: object) -> bool:
        """Equal distributions in the same order: the order fixes the columns of ``u``."""
        return isinstance(other, SearchSpace) and (list(self.params.items()), self.optimizer) == (
            list(other.params.items()), other.optimizer)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n!r}: {d!r}" for n, d in self.params.items())
        return f"SearchSpace({{{inner}}}, optimizer={self.optimizer!r})"

    def sample(self, n: int, seed: int = 0) -> dict[str, Tensor]:
        """``n`` independent draws: name -> (n,) float64 tensor, the same for the same seed."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int; got {n!r}")
        gen = torch.Generator().manual_seed(int(seed))
        return {name: dist.sample(n, gen) for name, dist in self.params.items()}

    def sample_u(self, n: int, seed: int = 0) -> Tensor:
        """``n`` independent draws (:meth:`sample`) as ``u`` (n, d): a random population's hyperparameters."""
        return self.to_unconstrained(self.sample(n, seed=seed))

    def to_unconstrained(self, values: Mapping[str, Any]) -> Tensor:
        """Natural values (name -> scalar or (n,)) of every non-fixed hyperparameter -> ``u`` (n, d);
        differentiable; Uniform values at the ends of their range map slightly inside (see ``EDGE``)."""
        missing = [n for n in self.dims if n not in values]
        unknown = sorted(set(values) - set(self.params))
        if missing or unknown:
            raise ValueError(f"values has names {sorted(values)}; to_unconstrained needs {list(self.dims)} "
                             f"(and fixed ones may be given)")
        cols = []
        for name in self.dims:
            dist, x = self.params[name], _as_float_tensor(name, values[name]).reshape(-1)
            bad = ~dist.contains(x.detach()) | ~torch.isfinite(x.detach())
            if bool(bad.any()):
                raise ValueError(f"values[{name!r}] holds {x[bad][0].item()!r}, outside {dist!r}; "
                                 f"use SearchSpace.clip first")
            cols.append(dist.to_u(x))
        if not cols:
            return torch.zeros(1, 0, dtype=torch.float64)
        try:
            return torch.stack(torch.broadcast_tensors(*cols), dim=1)
        except RuntimeError as e:
            raise ValueError(f"values must all have the same length n; got {[c.numel() for c in cols]}") from e

    def from_unconstrained(self, u: Tensor, round_ints: bool = False,
                           include_fixed: bool = True) -> dict[str, Tensor]:
        """``u`` (n, d) or (d,) -> natural values, name -> (n,) or scalar tensors, by torch ops so gradients
        flow back to ``u``. Fixed hyperparameters are included unless ``include_fixed=False``."""
        if not isinstance(u, Tensor):
            u = torch.as_tensor(u, dtype=torch.float64)
        d = len(self.dims)
        if u.dim() not in (1, 2) or u.shape[-1] != d:
            raise ValueError(f"u must have shape (n, {d}) or ({d},) for dims {list(self.dims)}; "
                             f"got {tuple(u.shape)}")
        out = {name: self.params[name].from_u(u[..., j], round_ints=round_ints)
               for j, name in enumerate(self.dims)}
        if include_fixed:
            dtype = u.dtype if u.dtype.is_floating_point else torch.float64
            for name, dist in self.params.items():
                if dist.fixed:
                    out[name] = torch.full(u.shape[:-1], dist.value, dtype=dtype, device=u.device)
            out = {name: out[name] for name in self.names if name in out}
        return out

    def center(self) -> Tensor:
        """``u`` (d,) at the middle of every range (geometric middle for LogUniform)."""
        return torch.tensor([self.params[n].center_u() for n in self.dims], dtype=torch.float64)

    def clip(self, values: Mapping[str, Any]) -> dict[str, Tensor]:
        """``values`` clamped into their ranges (IntUniform also rounded, Fixed set to its value)."""
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise ValueError(f"values has unknown names {unknown}; this space has {list(self.names)}")
        return {name: self.params[name].clip(_as_float_tensor(name, v)) for name, v in values.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description; :meth:`from_dict` rebuilds the space."""
        return {"optimizer": self.optimizer, "params": {n: d.to_dict() for n, d in self.params.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchSpace":
        """The inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not isinstance(data.get("params"), Mapping):
            raise ValueError("data must be a dict made by SearchSpace.to_dict()")
        params = {}
        for name, spec in data["params"].items():
            spec = dict(spec)
            kind = spec.pop("type", None)
            if kind not in _KINDS:
                raise ValueError(f"params[{name!r}] has unknown type {kind!r}; expected one of {sorted(_KINDS)}")
            params[name] = _KINDS[kind](**spec)
        return cls(params, optimizer=data.get("optimizer"))



def check_u(name: str, u: Any, space: SearchSpace) -> Tensor:
    """``u`` as a float64 (n, d) tensor of finite values for ``space``."""
    t = torch.as_tensor(u, dtype=torch.float64).detach()
    if t.dim() == 1:
        t = t.unsqueeze(0)
    d = len(space.dims)
    if t.dim() != 2 or t.shape[1] != d or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape ({d},) or (n, {d}) for dims {list(space.dims)}; "
                         f"got {tuple(torch.as_tensor(u).shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must hold finite values; got {t.tolist()}")
    return t



def hparams_from_u(space: SearchSpace, u: Tensor) -> dict[str, Tensor]:
    """Rows of ``u`` (n, d) -> natural hyperparameters name -> (n,) float64, fixed ones included, ints rounded."""
    return {k: v.detach().double() for k, v in space.from_unconstrained(u, round_ints=True).items()}



def u_bounds(space: SearchSpace) -> tuple[Tensor, Tensor]:
    """(low, high) of ``u`` (d,): the images of every range's ends."""
    ends = [space[n].to_u(torch.tensor(space[n].bounds(), dtype=torch.float64)) for n in space.dims]
    return torch.stack([e[0] for e in ends]), torch.stack([e[1] for e in ends])

__all__ = ["STRUCTURAL", "STRUCTURAL_KINDS", "check_structural", "check_u", "hparams_from_u", "u_bounds",
           "Distribution", "LogUniform", "Uniform",
           "IntUniform", "Fixed", "SearchSpace", "EDGE"]
