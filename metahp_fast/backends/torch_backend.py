"""The ``torch`` backend: one step of K candidates in batched PyTorch ops, no Python loop over candidates.

The shared minibatch is broadcast against the stacked first-layer weights, so ``x @ W0`` with x (B, in) and
W0 (K, in, out) is one batched GEMM; the backward pass is written out by hand (it mirrors the Triton kernels
and avoids autograd's bookkeeping), and every function here is pure, so autograd can also differentiate an
unrolled sequence of steps with respect to the hyperparameters (exact hypergradients).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..optimizers import adamw_update, sgd_update, update_coefficients
from .base import ModelSpec, PopulationState


def activate(z: Tensor, activation: str) -> Tensor:
    """The hidden-layer nonlinearity."""
    if activation == "relu":
        return torch.relu(z)
    if activation == "tanh":
        return torch.tanh(z)
    if activation == "sigmoid":
        return torch.sigmoid(z)
    return torch.nn.functional.gelu(z)


def activation_backward(g: Tensor, z: Tensor, a: Tensor, activation: str) -> Tensor:
    """Gradient through the nonlinearity, from the pre-activation z and activation a (fused aten ops, which
    autograd can differentiate again)."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward(g, a, 0)
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(g, a)
    if activation == "sigmoid":
        return torch.ops.aten.sigmoid_backward(g, a)
    return torch.ops.aten.gelu_backward(g, z)


def bmm(a: Tensor, b: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """Batched ``a @ b (+ bias)`` for a (K, M, I), b (K, I, N), bias (K, N).

    A narrow output (N < 32 and N < M, e.g. the 10 logits of 128 rows) is computed as ``(b^T a^T)^T`` and
    returned as a transposed view: CPU BLAS runs that several times faster than the narrow product."""
    if b.shape[-1] < min(32, a.shape[-2]):
        if bias is None:
            return torch.bmm(b.mT, a.mT).mT
        return torch.baddbmm(bias.unsqueeze(2), b.mT, a.mT).mT
    if bias is None:
        return torch.bmm(a, b)
    return torch.baddbmm(bias.unsqueeze(1), a, b)


def forward(params: list[Tensor], x: Tensor, activation: str = "relu", keep: bool = False):
    """Outputs (K, B, out) of every candidate on the shared input x (B, in); the shared x is broadcast
    (a stride-0 view), so the first layer is one batched GEMM.

    With ``keep``, also returns the list of (pre-activation, activation) pairs of the hidden layers that the
    backward pass needs."""
    K = params[0].shape[0]
    h, saved = x.expand(K, *x.shape), []
    n = len(params) // 2
    for i in range(n):
        z = bmm(h, params[2 * i], params[2 * i + 1])
        if i == n - 1:
            return (z, saved) if keep else z
        h = activate(z, activation)
        if keep:
            saved.append((z, h))
    raise AssertionError("unreachable")


def loss_and_grad(out: Tensor, y: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """Per-candidate mean loss (K,) and its gradient with respect to ``out`` (K, B, C).

    Cross-entropy takes integer labels (B,); MSE takes targets (B, C) and averages over all B*C entries, as
    ``F.cross_entropy`` and ``F.mse_loss`` do."""
    B = out.shape[1]
    if loss == "cross_entropy":
        lse = torch.logsumexp(out, -1, keepdim=True)
        idx = y.view(1, B, 1).expand(out.shape[0], B, 1)
        losses = (lse.squeeze(2) - out.gather(2, idx).squeeze(2)).mean(1)
        g = torch.exp(out - lse)
        g = g.scatter_add(2, idx, torch.full_like(g[:, :, :1], -1.0))
        return losses, g / B
    diff = out - y
    return diff.pow(2).mean(dim=(1, 2)), diff * (2.0 / diff[0].numel())


def loss_only(out: Tensor, y: Tensor, loss: str) -> Tensor:
    """Per-candidate mean loss (K,) without the gradient (evaluation)."""
    if loss == "cross_entropy":
        lse = torch.logsumexp(out, -1)
        return (lse - out.gather(2, y.view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(2)).mean(1)
    return (out - y).pow(2).mean(dim=(1, 2))


def gradients(params: list[Tensor], x: Tensor, y: Tensor, spec: ModelSpec,
              alive: Optional[Tensor] = None) -> tuple[Tensor, list[Tensor]]:
    """Per-candidate losses (K,) and the gradients of every parameter, same layout as ``params``.

    Candidates not in ``alive`` (K,) bool get exactly zero gradients (their output gradient is zeroed before
    the backward pass), so a diverged candidate puts no NaN into its own optimizer state."""
    out, saved = forward(params, x, spec.activation, keep=True)
    losses, g = loss_and_grad(out, y, spec.loss)
    if alive is not None:
        g = g.masked_fill(~(alive & torch.isfinite(losses)).view(-1, 1, 1), 0.0)
    grads: list[Tensor] = [None] * len(params)  # type: ignore[list-item]
    n = len(params) // 2
    for i in range(n - 1, -1, -1):
        h = saved[i - 1][1] if i > 0 else x.expand(g.shape[0], *x.shape)
        grads[2 * i] = bmm(h.mT, g).contiguous()  # the parameter's layout, so updates stay one pass
        grads[2 * i + 1] = g.sum(1)
        if i > 0:
            z, a = saved[i - 1]
            g = activation_backward(bmm(g, params[2 * i].mT), z, a, spec.activation)
    return losses, grads


def functional_step(params: list[Tensor], opt_state: dict[str, list[Tensor]], step_count: Tensor,
                    hparams: dict[str, Tensor], alive: Tensor, x: Tensor, y: Tensor, spec: ModelSpec,
                    lr: Optional[Tensor] = None, in_place: bool = False):
    """One step as a pure function: returns (losses, params, opt_state, step_count, alive), all new tensors
    (differentiable, for exact hypergradients); with ``in_place``, parameters and optimizer state are updated
    in place instead (the backend's hot path: fewer passes over memory) and returned.

    Candidates that are dead, or whose loss on this batch is not finite, get zero gradients and update
    coefficients that leave their parameters and state unchanged."""
    losses, grads = gradients(params, x, y, spec, alive)
    alive = alive & torch.isfinite(losses)
    hp = {**hparams, "lr": hparams["lr"] if lr is None else lr}
    step_count = step_count + alive.to(step_count.dtype)
    coef = update_coefficients(spec.optimizer, hp, step_count, alive)
    new_p, new_s = [], {k: [] for k in opt_state}
    if spec.optimizer == "sgd":
        for p, g, buf in zip(params, grads, opt_state["momentum_buffer"]):
            p2, b2 = sgd_update(p, g, buf, coef, spec.nesterov, in_place)
            new_p.append(p2)
            new_s["momentum_buffer"].append(b2)
    else:
        for p, g, m, v in zip(params, grads, opt_state["exp_avg"], opt_state["exp_avg_sq"]):
            p2, m2, v2 = adamw_update(p, g, m, v, coef, in_place)
            new_p.append(p2)
            new_s["exp_avg"].append(m2)
            new_s["exp_avg_sq"].append(v2)
    losses = losses.masked_fill(~alive, math.inf)
    return losses, new_p, new_s, step_count, alive


class TorchBackend:
    """Batched PyTorch ops on any device and dtype."""

    name = "torch"

    def check(self, spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> None:
        pass

    def step(self, state: PopulationState, x: Tensor, y: Tensor, lr: Optional[Tensor] = None) -> Tensor:
        losses, _, _, step_count, alive = functional_step(
            state.params, state.opt_state, state.step_count, state.hparams, state.alive, x, y, state.spec, lr,
            in_place=True)
        state.step_count.copy_(step_count)
        state.alive.copy_(alive)
        return losses
