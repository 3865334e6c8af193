"""The ``triton`` backend: one population step in fused Triton kernels (:mod:`metahp_fast.kernels`).

Two paths, chosen per step from the architecture and the batch size (no host sync either way), and for
``Population.fit`` a third:

- **fused**, for the seed model (one hidden layer, relu, softmax cross-entropy) when the whole batch's hidden
  activations fit on chip (``kernels.fused_fits``): one launch for the whole population does forward, loss,
  backward and optimizer update; weight gradients never reach device memory.
- **per layer**, for everything else (deeper models, other activations, MSE, large batches): the forward pass,
  the loss and the backward pass through the activations run as torch ops (the functions of
  :mod:`metahp_fast.model`), then one kernel per layer computes that layer's weight gradient tile by tile and
  applies the optimizer to it in place.
- **many steps at once** (:meth:`TritonBackend.steps`, which ``Population.fit`` calls with spans of
  :meth:`TritonBackend.steps_per_launch` steps), for small seed models (``kernels.steps_fit``, e.g. digits
  64-128-10): one launch trains a span of steps, each candidate's weights and optimizer state held on chip.

All read the per-candidate hyperparameters, the step counts and the alive mask from device tensors, so
changing hyperparameters never recompiles and nothing waits for the host. The semantics are those of
:class:`~metahp_fast.backends.base.Backend` and of the ``torch`` backend exactly.

Dot precision: ``"tf32"`` (default on GPU), ``"ieee"`` (exact fp32 products, for checks) or ``"bf16"``
(bf16 operands, fp32 accumulation; opt-in), from the constructor or ``$METAHP_TRITON_PRECISION``. Master
weights and optimizer state are always fp32. Under Triton's CPU interpreter (``TRITON_INTERPRET=1``) the
products are always exact fp32 (``"ieee"``): the interpreter ignores tf32 and gets bf16 wrong.
"""
from __future__ import annotations

import math
import os
from typing import Optional

import torch
from torch import Tensor

from ..kernels import PRECISIONS, fused_fits, fused_mlp_step, fused_mlp_steps, interpreting, steps_fit, update_layer
from ..model import ModelSpec, activation_backward, bmm, forward, loss_and_grad
from ..optimizers import OPTIMIZERS
from .base import Backend, PopulationState

PRECISION_ENV = "METAHP_TRITON_PRECISION"
#: Steps per launch of the multi-step kernel in ``Population.fit`` (fewer up to the next evaluation): long
#: enough that loading and storing the weights once per launch is negligible, short enough for a live
#: progress bar.
SPAN = 250


def _is_seed_model(spec: ModelSpec) -> bool:
    """The model both fused kernels are written for: one hidden layer, relu, softmax cross-entropy."""
    return len(spec.layers) == 3 and spec.activation == "relu" and spec.loss == "cross_entropy"


class TritonBackend(Backend):
    """Fused Triton kernels on CUDA float32 tensors (or CPU tensors under ``TRITON_INTERPRET=1``).

    Args:
        precision: dot input precision, ``"tf32"``, ``"ieee"`` or ``"bf16"``; default ``$METAHP_TRITON_PRECISION``
            or ``"tf32"``. Always ``"ieee"`` under the interpreter.
    """

    name = "triton"

    def __init__(self, precision: Optional[str] = None):
        self.precision = precision or os.environ.get(PRECISION_ENV, "").strip() or "tf32"

    @property
    def precision(self) -> str:
        """The dot precision the kernels run with (``"ieee"`` under the interpreter); settable."""
        return "ieee" if interpreting() else self.requested_precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"precision (or ${PRECISION_ENV}) must be one of {PRECISIONS}; got {value!r}")
        self.requested_precision = value

    def check(self, spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> None:
        if dtype != torch.float32:
            raise TypeError(f"backend 'triton' runs float32 only; got dtype {dtype}: use dtype=torch.float32 "
                            "or backend='torch'")
        if device.type != "cuda" and not interpreting():
            raise ValueError(f"backend 'triton' needs a CUDA device; got {device}. Use backend='torch' there, or "
                             "set TRITON_INTERPRET=1 (before triton is imported) to run the kernels on the CPU")

    def uses_fused_kernel(self, spec: ModelSpec, batch: int) -> bool:
        """Whether a step of ``spec`` on a batch of ``batch`` rows runs as the single fused launch."""
        return _is_seed_model(spec) and fused_fits(batch, *spec.layers)

    def uses_multistep_kernel(self, spec: ModelSpec, batch: int) -> bool:
        """Whether :meth:`steps` trains ``spec`` at this batch size with the multi-step kernel, the model
        and its optimizer state kept on chip across steps (small seed models)."""
        return _is_seed_model(spec) and steps_fit(batch, *spec.layers)

    def steps_per_launch(self, spec: ModelSpec, batch: int) -> int:
        """Steps :meth:`steps` is worth calling with (1: no multi-step path for this model, go step by step)."""
        return SPAN if self.uses_multistep_kernel(spec, batch) else 1

    def steps(self, state: PopulationState, x: Tensor, y: Tensor, idx: Tensor,
              lr_table: Optional[Tensor] = None) -> Tensor:
        """``idx.shape[0]`` steps (see :meth:`Backend.steps`): in one launch of the multi-step kernel where
        :meth:`uses_multistep_kernel` and there is more than one step, else one :meth:`step` at a time."""
        spec = state.spec
        if idx.shape[0] == 1 or state.options or not self.uses_multistep_kernel(spec, idx.shape[1]):
            return super().steps(state, x, y, idx, lr_table)
        adamw = spec.optimizer == "adamw"
        hp = _kernel_hparams(state, None)
        lr_table = None if lr_table is None else lr_table.to(torch.float32).contiguous()
        x = x if x.stride(1) == 1 else x.contiguous()  # rows may be strided: no copy of the whole dataset
        losses = fused_mlp_steps(x, y.contiguous(), idx, state.params,
                                 state.opt_state[OPTIMIZERS[spec.optimizer].state_names[0]],
                                 state.opt_state["exp_avg_sq"] if adamw else None, hp, state.step_count,
                                 state.alive, adamw=adamw, nesterov=spec.nesterov, precision=self.precision,
                                 lr_table=lr_table)
        state.steps_done += idx.shape[0]
        return losses

    def step(self, state: PopulationState, x: Tensor, y: Tensor, lr: Optional[Tensor] = None) -> Tensor:
        spec = state.spec
        hp = _kernel_hparams(state, lr)
        x = x.contiguous()
        y = y.contiguous()
        adamw = spec.optimizer == "adamw"
        state1 = state.opt_state[OPTIMIZERS[spec.optimizer].state_names[0]]
        state2 = state.opt_state["exp_avg_sq"] if adamw else None
        if not state.options and self.uses_fused_kernel(spec, x.shape[0]):
            losses = fused_mlp_step(x, y, state.params, state1, state2, hp, state.step_count, state.alive,
                                    adamw=adamw, nesterov=spec.nesterov, precision=self.precision)
        else:
            losses = self._layerwise_step(state, x, y, hp, state1, state2)
        state.steps_done += 1
        return losses

    def _layerwise_step(self, state: PopulationState, x: Tensor, y: Tensor, hp: dict[str, Tensor],
                        state1: list[Tensor], state2: Optional[list[Tensor]]) -> Tensor:
        """Forward, loss and activation gradients in torch ops; per layer, the fused weight-gradient and
        update kernel, launched after the gradient for the layer below is taken from the old weights; dropout (an
        option) scales the hidden activations and their gradients in the torch ops."""
        spec, params = state.spec, state.params
        dropout = state.dropout(x.shape[0])
        out, saved = forward(params, x, spec.activation, keep=True, dropout=dropout)
        losses, g = loss_and_grad(out, y, spec.loss, options=state.options)
        alive = state.alive & torch.isfinite(losses)
        state.alive.copy_(alive)
        state.step_count.add_(alive.to(state.step_count.dtype))
        g = g.masked_fill(~alive.view(-1, 1, 1), 0.0)
        n = len(params) // 2
        for i in range(n - 1, -1, -1):
            h = saved[i - 1][2] if i > 0 else x
            g_below = None
            if i > 0:
                z, a, _ = saved[i - 1]
                dh = bmm(g, params[2 * i].mT)
                g_below = activation_backward(dh if dropout is None else dh * dropout[i - 1], z, a, spec.activation)
            update_layer(h, g, params[2 * i], params[2 * i + 1], state1[2 * i:2 * i + 2],
                         None if state2 is None else state2[2 * i:2 * i + 2], hp, state.step_count, state.alive,
                         adamw=spec.optimizer == "adamw", nesterov=spec.nesterov, precision=self.precision)
            g = g_below
        return losses.masked_fill(~alive, math.inf)


def _kernel_hparams(state: PopulationState, lr: Optional[Tensor]) -> dict[str, Tensor]:
    """The (K,) hyperparameter tensors the kernels read: contiguous float32, ``lr`` replaced by the override."""
    hp = dict(state.hparams)
    if lr is not None:
        hp["lr"] = lr
    return {k: v.to(torch.float32).contiguous() for k, v in hp.items()}


__all__ = ["TritonBackend", "PRECISION_ENV"]
