"""The seam between the population and its backends: what a population holds, and what a backend does with it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

import torch
from torch import Tensor

ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
LOSSES = ("cross_entropy", "mse")
#: Dot precisions a population may ask for: exact fp32 products, tf32, or bf16 inputs with fp32 accumulation.
#: Only the triton backend's kernels act on it; the torch and reference backends compute in the population's
#: dtype with torch's own matmul settings. The same list as ``kernels.common.PRECISIONS``, repeated here because
#: importing the kernels needs triton (a test keeps the two equal).
PRECISIONS = ("ieee", "tf32", "bf16")


@dataclass(frozen=True)
class ModelSpec:
    """The architecture and training rule shared by every candidate of a population."""

    layers: tuple[int, ...]
    activation: str = "relu"
    loss: str = "cross_entropy"
    optimizer: str = "sgd"
    nesterov: bool = False

    def shapes(self) -> list[tuple[int, ...]]:
        """Per-candidate parameter shapes, in order W0, b0, W1, b1, ... with W of shape (in, out)."""
        out = []
        for i, o in zip(self.layers[:-1], self.layers[1:]):
            out += [(i, o), (o,)]
        return out


@dataclass
class PopulationState:
    """Everything one step reads and writes, stacked over K candidates on one device.

    ``params``: [W0 (K, in, out), b0 (K, out), W1, b1, ...]; ``opt_state``: per state name, one tensor shaped
    like each parameter; ``step_count``: (K,) int64, updates applied per candidate; ``hparams``: name -> (K,);
    ``alive``: (K,) bool. Backends update all of these in place, so references to them stay valid."""

    spec: ModelSpec
    params: list[Tensor]
    opt_state: dict[str, list[Tensor]]
    step_count: Tensor
    hparams: dict[str, Tensor]
    alive: Tensor
    cache: dict = field(default_factory=dict, repr=False)  # backends' private per-population objects

    @property
    def size(self) -> int:
        return self.alive.shape[0]


class Backend(Protocol):
    """One inner-loop step for a whole population."""

    name: str

    def check(self, spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> None:
        """Raise ValueError/TypeError if this backend cannot run ``spec`` on ``device`` in ``dtype``."""

    def step(self, state: PopulationState, x: Tensor, y: Tensor, lr: Optional[Tensor] = None) -> Tensor:
        """Train every live candidate one step on the shared minibatch (x, y), in place.

        ``lr`` (K,), if given, replaces ``state.hparams['lr']`` for this step (schedules). Returns the (K,)
        minibatch losses computed before the update, ``inf`` for candidates dead after this step. A candidate
        whose loss is not finite is marked dead and not updated."""


def steps_per_launch(backend: Backend, spec: ModelSpec, batch: int) -> int:
    """How many steps ``backend`` trains in one call of its optional ``steps`` method for ``spec`` at this
    batch size; 1 where it has none (then :func:`run_steps` goes step by step)."""
    fn = getattr(backend, "steps_per_launch", None)
    return fn(spec, batch) if fn is not None else 1


def run_steps(backend: Backend, state: PopulationState, x: Tensor, y: Tensor, idx: Tensor,
              lr_table: Optional[Tensor] = None) -> Tensor:
    """Train ``S = idx.shape[0]`` steps, step s on the rows ``idx[s]`` of (x, y) with learning rates
    ``lr_table[s]`` (an (S, K) table, or None for the population's own); returns the (S, K) losses.

    A backend may train a span of steps at once (the ``triton`` backend keeps small models on chip across
    steps) through an optional method ``steps(state, x, y, idx, lr_table)`` with exactly these semantics;
    otherwise this calls :meth:`Backend.step` once per row of ``idx``."""
    if idx.shape[0] > 1 and steps_per_launch(backend, state.spec, idx.shape[1]) > 1:
        return backend.steps(state, x, y, idx, lr_table)  # type: ignore[attr-defined]
    if idx.shape[0] == 1:  # the common case, without a stacking kernel
        return backend.step(state, x.index_select(0, idx[0]), y.index_select(0, idx[0]),
                            None if lr_table is None else lr_table[0]).unsqueeze(0)
    return torch.stack([backend.step(state, x.index_select(0, i), y.index_select(0, i),
                                     None if lr_table is None else lr_table[s]) for s, i in enumerate(idx)])
