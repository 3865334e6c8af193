"""The ``torch`` backend: one step of K candidates in batched PyTorch ops, no Python loop over candidates.

The shared minibatch is broadcast against the stacked first-layer weights, so ``x @ W0`` with x (B, in) and
W0 (K, in, out) is one batched GEMM; the backward pass is written out by hand (it mirrors the Triton kernels
and avoids autograd's bookkeeping), and every function here is pure, so autograd can also differentiate an
unrolled sequence of steps with respect to the hyperparameters (exact hypergradients). The backend's own
in-place step writes every per-step tensor into a :class:`Workspace` kept with the population instead.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..optimizers import get_optimizer
from .base import ModelSpec, PopulationState


class Workspace:
    """Scratch tensors the in-place step reuses from one step to the next, one per name, kept with the
    population (``state.cache``). On CPU, allocating the step's multi-megabyte activations and gradients
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


def _scratch(ws: Optional[Workspace], name: str, shape: tuple[int, ...], like: Tensor) -> Optional[Tensor]:
    """``ws``'s buffer for ``name``, or None (a fresh, differentiable result) without a workspace."""
    return None if ws is None else ws(name, tuple(shape), like)


def activate(z: Tensor, activation: str, out: Optional[Tensor] = None) -> Tensor:
    """The hidden-layer nonlinearity; written into ``out`` if given (which may be ``z`` itself)."""
    if activation == "relu":
        return torch.relu(z) if out is None else torch.clamp_min(z, 0, out=out)
    if activation == "tanh":
        return torch.tanh(z, out=out)
    if activation == "sigmoid":
        return torch.sigmoid(z, out=out)
    return torch.nn.functional.gelu(z) if out is None else torch.ops.aten.gelu.out(z, out=out)


def activation_backward(g: Tensor, z: Tensor, a: Tensor, activation: str, in_place: bool = False) -> Tensor:
    """Gradient through the nonlinearity, from the pre-activation z and activation a (fused aten ops, which
    autograd can differentiate again); with ``in_place``, written over ``g``. Only gelu reads ``z``."""
    if activation == "relu":
        return (torch.ops.aten.threshold_backward.grad_input(g, a, 0, grad_input=g) if in_place
                else torch.ops.aten.threshold_backward(g, a, 0))
    op = {"tanh": torch.ops.aten.tanh_backward, "sigmoid": torch.ops.aten.sigmoid_backward,
          "gelu": torch.ops.aten.gelu_backward}[activation]
    other = z if activation == "gelu" else a
    return op.grad_input(g, other, grad_input=g) if in_place else op(g, other)


def bmm(a: Tensor, b: Tensor, bias: Optional[Tensor] = None, ws: Optional[Workspace] = None,
        name: str = "") -> Tensor:
    """Batched ``a @ b (+ bias)`` for a (K, M, I), b (K, I, N), bias (K, N); into ``ws``'s buffer ``name``
    when a workspace is given.

    A narrow output (N < 32 and N < M, e.g. the 10 logits of 128 rows) is computed as ``(b^T a^T)^T`` and
    returned as a transposed view: CPU BLAS runs that several times faster than the narrow product."""
    narrow = b.shape[-1] < min(32, a.shape[-2])
    if narrow:
        a, b = b.mT, a.mT
    out = _scratch(ws, name, (a.shape[0], a.shape[1], b.shape[2]), b)
    if bias is None:
        r = torch.bmm(a, b, out=out)
    else:
        r = torch.baddbmm(bias.unsqueeze(2 if narrow else 1), a, b, out=out)
    return r.mT if narrow else r


def forward(params: list[Tensor], x: Tensor, activation: str = "relu", keep: bool = False,
            ws: Optional[Workspace] = None):
    """Outputs (K, B, out) of every candidate on the shared input x (B, in); the shared x is broadcast
    (a stride-0 view), so the first layer is one batched GEMM.

    With ``keep``, also returns the list of (pre-activation, activation) pairs of the hidden layers that the
    backward pass needs. With a workspace ``ws``, every result lives in its buffers (and the activation
    overwrites the pre-activation, except for gelu, whose backward reads both)."""
    K = params[0].shape[0]
    h, saved = x.expand(K, *x.shape), []
    n = len(params) // 2
    for i in range(n):
        z = bmm(h, params[2 * i], params[2 * i + 1], ws, f"z{i}")
        if i == n - 1:
            return (z, saved) if keep else z
        out = None if ws is None else (z if activation != "gelu" else ws(f"a{i}", tuple(z.shape), z))
        h = activate(z, activation, out)
        if keep:
            saved.append((z, h))
    raise AssertionError("unreachable")


def loss_and_grad(out: Tensor, y: Tensor, loss: str, ws: Optional[Workspace] = None) -> tuple[Tensor, Tensor]:
    """Per-candidate mean loss (K,) and its gradient with respect to ``out`` (K, B, C), the gradient in
    ``ws``'s buffer when a workspace is given.

    Cross-entropy takes integer labels (B,); MSE takes targets (B, C) and averages over all B*C entries, as
    ``F.cross_entropy`` and ``F.mse_loss`` do."""
    B = out.shape[1]
    g = _scratch(ws, "dout", tuple(out.shape), out)
    if loss == "cross_entropy":
        lse = torch.logsumexp(out, -1, keepdim=True)
        idx = y.view(1, B, 1).expand(out.shape[0], B, 1)
        losses = (lse.squeeze(2) - out.gather(2, idx).squeeze(2)).mean(1)
        if g is None:
            g = torch.exp(out - lse)
            g = g.scatter_add(2, idx, torch.full_like(g[:, :, :1], -1.0))
            return losses, g / B
        torch.sub(out, lse, out=g).exp_()
        g.scatter_add_(2, idx, torch.full_like(lse, -1.0))
        return losses, g.div_(B)
    diff = torch.sub(out, y, out=g)
    losses = diff.pow(2).mean(dim=(1, 2))
    scale = 2.0 / diff[0].numel()
    return losses, (diff * scale if ws is None else diff.mul_(scale))


def loss_only(out: Tensor, y: Tensor, loss: str) -> Tensor:
    """Per-candidate mean loss (K,) without the gradient (evaluation)."""
    if loss == "cross_entropy":
        lse = torch.logsumexp(out, -1)
        return (lse - out.gather(2, y.view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(2)).mean(1)
    return (out - y).pow(2).mean(dim=(1, 2))


def gradients(params: list[Tensor], x: Tensor, y: Tensor, spec: ModelSpec,
              alive: Optional[Tensor] = None, ws: Optional[Workspace] = None) -> tuple[Tensor, list[Tensor]]:
    """Per-candidate losses (K,) and the gradients of every parameter, same layout as ``params`` (in ``ws``'s
    buffers when a workspace is given, valid until the next call with it).

    Candidates not in ``alive`` (K,) bool get exactly zero gradients (their output gradient is zeroed before
    the backward pass), so a diverged candidate puts no NaN into its own optimizer state."""
    out, saved = forward(params, x, spec.activation, keep=True, ws=ws)
    losses, g = loss_and_grad(out, y, spec.loss, ws)
    if alive is not None:
        dead = ~(alive & torch.isfinite(losses)).view(-1, 1, 1)
        g = g.masked_fill(dead, 0.0) if ws is None else g.masked_fill_(dead, 0.0)
    grads: list[Tensor] = [None] * len(params)  # type: ignore[list-item]
    n = len(params) // 2
    for i in range(n - 1, -1, -1):
        h = saved[i - 1][1] if i > 0 else x.expand(g.shape[0], *x.shape)
        w = bmm(h.mT, g, ws=ws, name=f"dw{i}")
        if not w.is_contiguous():  # the parameter's layout, so updates stay one pass
            w = w.contiguous() if ws is None else ws(f"dw{i}_", tuple(w.shape), w).copy_(w)
        grads[2 * i] = w
        grads[2 * i + 1] = torch.sum(g, 1, out=_scratch(ws, f"db{i}", (g.shape[0], g.shape[2]), g))
        if i > 0:
            z, a = saved[i - 1]
            g = activation_backward(bmm(g, params[2 * i].mT, ws=ws, name=f"dh{i}"), z, a, spec.activation,
                                    in_place=ws is not None)
    return losses, grads


def functional_step(params: list[Tensor], opt_state: dict[str, list[Tensor]], step_count: Tensor,
                    hparams: dict[str, Tensor], alive: Tensor, x: Tensor, y: Tensor, spec: ModelSpec,
                    lr: Optional[Tensor] = None, in_place: bool = False, ws: Optional[Workspace] = None):
    """One step as a pure function: returns (losses, params, opt_state, step_count, alive), all new tensors
    (differentiable, for exact hypergradients); with ``in_place``, parameters and optimizer state are updated
    in place instead (the backend's hot path: fewer passes over memory) and returned, and a workspace ``ws``
    holds every per-step tensor (in place only: autograd cannot follow results written into buffers).

    Candidates that are dead, or whose loss on this batch is not finite, get zero gradients and update
    coefficients that leave their parameters and state unchanged."""
    if ws is not None and not in_place:
        raise ValueError("functional_step: a workspace needs in_place=True")
    losses, grads = gradients(params, x, y, spec, alive, ws)
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


class TorchBackend:
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
            in_place=True, ws=ws)
        state.step_count.copy_(step_count)
        state.alive.copy_(alive)
        return losses
