"""The ``torch`` backend: one step of K candidates in batched PyTorch ops, no Python loop over candidates.

The forward pass and the losses are :mod:`metahp_fast.model`'s (the shared minibatch is broadcast against the
stacked first-layer weights, so ``x @ W0`` is one batched GEMM); the backward pass is written out here by hand
(it mirrors the Triton kernels and avoids autograd's bookkeeping), and every function here is pure, so autograd
can also differentiate an unrolled sequence of steps with respect to the hyperparameters (exact
hypergradients). The backend's own in-place step writes every per-step tensor into a :class:`Workspace` kept
with the population instead.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..model import ModelSpec, activation_backward, bmm, forward, loss_and_grad
from ..optimizers import get_optimizer
from .base import Backend, PopulationState


class Workspace:
    """Scratch tensors the in-place step reuses from one step to the next, one per name, kept with the
    population (``state.cache``); the scratch allocator (:data:`metahp_fast.model.Scratch`) that the model's
    functions write into. On CPU, allocating the step's multi-megabyte activations and gradients
    afresh every step costs page faults: reusing them made the digits step 1.3-1.7x faster at K=64-256
    (``benchmarks/workspace_speed.py``). A buffer is reallocated when its shape, dtype or device changes."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def __call__(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """An uninitialized (shape) tensor in ``like``'s dtype and device, the same one on every call."""
        t = self._buffers.get(name)
        if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
            t = self._buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return t


def gradients(params: list[Tensor], x: Tensor, y: Tensor, spec: ModelSpec,
              alive: Optional[Tensor] = None, ws: Optional[Workspace] = None,
              options: Optional[dict[str, Tensor]] = None,
              dropout: Optional[list[Tensor]] = None) -> tuple[Tensor, list[Tensor]]:
    """Per-candidate losses (K,) and the gradients of every parameter, same layout as ``params`` (in ``ws``'s
    buffers when a workspace is given, valid until the next call with it); ``dropout``: this step's scales per
    hidden layer (:func:`~metahp_fast.model.dropout_scales`), applied to the activations and their gradients.

    Candidates not in ``alive`` (K,) bool get exactly zero gradients (their output gradient is zeroed before
    the backward pass), so a diverged candidate puts no NaN into its own optimizer state."""
    out, saved = forward(params, x, spec.activation, keep=True, ws=ws, dropout=dropout)
    losses, g = loss_and_grad(out, y, spec.loss, ws, options)
    if alive is not None:
        dead = ~(alive & torch.isfinite(losses)).view(-1, 1, 1)
        g = g.masked_fill(dead, 0.0) if ws is None else g.masked_fill_(dead, 0.0)
    grads: list[Tensor] = [None] * len(params)  # type: ignore[list-item]
    n = len(params) // 2
    for i in range(n - 1, -1, -1):
        h = saved[i - 1][2] if i > 0 else x.expand(g.shape[0], *x.shape)
        w = bmm(h.mT, g, ws=ws, name=f"dw{i}")
        if not w.is_contiguous():  # the parameter's layout, so updates stay one pass
            w = w.contiguous() if ws is None else ws(f"dw{i}_", tuple(w.shape), w).copy_(w)
        grads[2 * i] = w
        grads[2 * i + 1] = torch.sum(g, 1, out=None if ws is None else ws(f"db{i}", (g.shape[0], g.shape[2]), g))
        if i > 0:
            z, a, _ = saved[i - 1]
            dh = bmm(g, params[2 * i].mT, ws=ws, name=f"dh{i}")
            if dropout is not None:
                dh = dh * dropout[i - 1] if ws is None else dh.mul_(dropout[i - 1])
            g = activation_backward(dh, z, a, spec.activation, in_place=ws is not None)
    return losses, grads


def functional_step(params: list[Tensor], opt_state: dict[str, list[Tensor]], step_count: Tensor,
                    hparams: dict[str, Tensor], alive: Tensor, x: Tensor, y: Tensor, spec: ModelSpec,
                    lr: Optional[Tensor] = None, in_place: bool = False, ws: Optional[Workspace] = None,
                    options: Optional[dict[str, Tensor]] = None, dropout: Optional[list[Tensor]] = None):
    """One step as a pure function: returns (losses, params, opt_state, step_count, alive), all new tensors
    (differentiable, for exact hypergradients); with ``in_place``, parameters and optimizer state are updated
    in place instead (the backend's hot path: fewer passes over memory) and returned, and a workspace ``ws``
    holds every per-step tensor (in place only: autograd cannot follow results written into buffers).
    ``options``: the loss's per-candidate options; ``dropout``: this step's dropout scales (see :func:`gradients`).

    Candidates that are dead, or whose loss on this batch is not finite, get zero gradients and update
    coefficients that leave their parameters and state unchanged."""
    if ws is not None and not in_place:
        raise ValueError("functional_step: a workspace needs in_place=True")
    losses, grads = gradients(params, x, y, spec, alive, ws, options, dropout)
    alive = alive & torch.isfinite(losses)
    hp = {**hparams, "lr": hparams["lr"] if lr is None else lr}
    step_count = step_count + alive.to(step_count.dtype)
    opt = get_optimizer(spec.optimizer, spec.nesterov)
    coef = opt.coefficients(hp, step_count, alive)
    new_p, new_s = [], {name: [] for name in opt.state_names}
    for i, (p, g) in enumerate(zip(params, grads)):
        state = tuple(opt_state[name][i] for name in opt.state_names)
        if in_place:
            opt.update_(p, g, state, coef)
        else:
            p, state = opt.update(p, g, state, coef)
        new_p.append(p)
        for name, s in zip(opt.state_names, state):
            new_s[name].append(s)
    losses = losses.masked_fill(~alive, math.inf)
    return losses, new_p, new_s, step_count, alive


class TorchBackend(Backend):
    """Batched PyTorch ops on any device and dtype."""

    name = "torch"

    def check(self, spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> None:
        pass

    def step(self, state: PopulationState, x: Tensor, y: Tensor, lr: Optional[Tensor] = None) -> Tensor:
        ws = state.cache.get("torch_workspace")
        if ws is None:
            ws = state.cache["torch_workspace"] = Workspace()
        losses, _, _, step_count, alive = functional_step(
            state.params, state.opt_state, state.step_count, state.hparams, state.alive, x, y, state.spec, lr,
            in_place=True, ws=ws, options=state.options, dropout=state.dropout(x.shape[0]))
        state.step_count.copy_(step_count)
        state.alive.copy_(alive)
        state.steps_done += 1
        return losses
