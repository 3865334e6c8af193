"""The seam between the population and its backends: what a population holds (:class:`PopulationState`), and
what a backend must do with it (:class:`Backend`). Population calls only what :class:`Backend` declares."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from ..model import ModelSpec, dropout_scales
from ..seeds import derive_seed
from ..validation import check_choice

#: Dot precisions a population may ask for: exact fp32 products, tf32, or bf16 inputs with fp32 accumulation.
#: Only the triton backend's kernels act on it; the torch and reference backends compute in the population's
#: dtype with torch's own matmul settings. The same list as ``kernels.common.PRECISIONS``, repeated here because
#: importing the kernels needs triton (a test keeps the two equal).
PRECISIONS = ("ieee", "tf32", "bf16")


@dataclass
class PopulationState:
    """Everything one step reads and writes, stacked over K candidates on one device.

    ``params``: [W0 (K, in, out), b0 (K, out), W1, b1, ...]; ``opt_state``: per state name, one tensor shaped
    like each parameter; ``step_count``: (K,) int64, updates applied per candidate; ``hparams``: name -> (K,);
    ``alive``: (K,) bool; ``steps_done``: steps the population has taken (every :meth:`Backend.step` adds one),
    which with ``seed`` keys each step's dropout draw (:meth:`dropout`). Backends update all of these in place,
    so references to them stay valid."""

    spec: ModelSpec
    params: list[Tensor]
    opt_state: dict[str, list[Tensor]]
    step_count: Tensor
    hparams: dict[str, Tensor]
    alive: Tensor
    options: dict = field(default_factory=dict)  # per-candidate training options (model.TRAIN_OPTIONS), name -> (K,)
    seed: int = 0
    steps_done: int = 0
    cache: dict = field(default_factory=dict, repr=False)  # backends' private per-population objects

    @property
    def size(self) -> int:
        return self.alive.shape[0]

    def dropout(self, batch: int) -> Optional[list[Tensor]]:
        """This step's dropout scales, one (K, batch, width) tensor per hidden layer (``keep / (1 - p_k)``, see
        :func:`~metahp_fast.model.dropout_scales`; buffers reused by the next call), or None without the
        ``dropout`` option. Every backend draws them here, so all of them train with the same masks."""
        p = self.options.get("dropout")
        if p is None:
            return None
        gen = self.cache.get("dropout_generator")
        if gen is None:
            gen = self.cache["dropout_generator"] = torch.Generator(device=p.device)
        dtype, hidden = self.params[0].dtype, self.spec.layers[1:-1]
        shapes = [(self.size, batch, w) for w in hidden]
        out = self.cache.get("dropout_scales")  # reused step to step: fresh multi-megabyte tensors cost page faults
        if out is None or [t.shape for t in out] != shapes or out[0].dtype != dtype:
            out = self.cache["dropout_scales"] = [torch.empty(s, dtype=dtype, device=p.device) for s in shapes]
        return dropout_scales(p, hidden, batch, derive_seed(self.seed, self.steps_done), gen, dtype, out)


class Backend(ABC):
    """Trains a whole population in place: :meth:`check` and :meth:`step` are a backend's own; :meth:`steps`,
    :meth:`steps_per_launch` and :attr:`precision` have defaults for backends without a multi-step path or a
    choice of dot precision."""

    #: The name ``Population(backend=...)`` selects this backend by.
    name: str

    @property
    def precision(self) -> str:
        """The dot precision the backend computes with. By default ``"ieee"``: setting one of
        :data:`PRECISIONS` is accepted and ignored (the torch and reference backends compute in the
        population's dtype with torch's own matmul settings, so code written for a GPU runs on a CPU)."""
        return "ieee"

    @precision.setter
    def precision(self, value: str) -> None:
        check_choice("precision", value, PRECISIONS)

    @abstractmethod
    def check(self, spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> None:
        """Raise ValueError/TypeError if this backend cannot run ``spec`` on ``device`` in ``dtype``."""

    @abstractmethod
    def step(self, state: PopulationState, x: Tensor, y: Tensor, lr: Optional[Tensor] = None) -> Tensor:
        """Train every live candidate one step on the shared minibatch (x, y), in place, and count it in
        ``state.steps_done`` (after drawing its dropout scales, :meth:`PopulationState.dropout`, if any).

        ``lr`` (K,), if given, replaces ``state.hparams['lr']`` for this step (schedules). Returns the (K,)
        minibatch losses computed before the update, ``inf`` for candidates dead after this step. A candidate
        whose loss is not finite is marked dead and not updated."""

    def steps_per_launch(self, spec: ModelSpec, batch: int) -> int:
        """How many steps one call of :meth:`steps` is worth making for ``spec`` at this batch size; 1 (the
        default) where the backend has no multi-step path and :meth:`steps` goes step by step."""
        return 1

    def steps(self, state: PopulationState, x: Tensor, y: Tensor, idx: Tensor,
              lr_table: Optional[Tensor] = None) -> Tensor:
        """Train ``S = idx.shape[0]`` steps, step s on the rows ``idx[s]`` of (x, y) with learning rates
        ``lr_table[s]`` (an (S, K) table, or None for the population's own); returns the (S, K) losses.

        The default calls :meth:`step` once per row of ``idx``; a backend may train a span at once (the
        triton backend keeps small models on chip across steps), with exactly these semantics."""
        if idx.shape[0] == 1:  # the common case, without a stacking kernel
            return self.step(state, x.index_select(0, idx[0]), y.index_select(0, idx[0]),
                             None if lr_table is None else lr_table[0]).unsqueeze(0)
        return torch.stack([self.step(state, x.index_select(0, i), y.index_select(0, i),
                                      None if lr_table is None else lr_table[s]) for s, i in enumerate(idx)])

