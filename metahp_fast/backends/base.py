"""The seam between the population and its backends: what a population holds, and what a backend does with it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

import torch
from torch import Tensor

ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
LOSSES = ("cross_entropy", "mse")


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
