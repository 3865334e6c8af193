"""Optimizer updates as Triton device functions, shared by every kernel that updates weights in place.

The maths is torch.optim's (``torch/optim/sgd.py`` and ``adamw.py``, single-tensor path) and mirrors
``metahp_fast/optimizers.py``: SGD with momentum (dampening 0), optional Nesterov and coupled weight decay;
AdamW with bias correction and decoupled weight decay. Each candidate's hyperparameters are scalars loaded
from (K,) device tensors, and AdamW's bias corrections are computed here from the candidate's step count, so
changing hyperparameters or stepping never recompiles a kernel and never needs the host.

A kernel picks the optimizer with its ``ADAMW`` constexpr (False: SGD), takes the pointers
:func:`optimizer_args` builds, gets candidate k's coefficients once with :func:`coefficients` (a
:data:`SGDCoefficients` or :data:`AdamWCoefficients` record, named fields) and applies them to tiles with
:func:`update` or :func:`update_tile`.
"""
from collections import namedtuple
from typing import Mapping

import torch
import triton
import triton.language as tl

#: One SGD step's scalars for one candidate (a namedtuple: Triton passes it between device functions).
SGDCoefficients = namedtuple("SGDCoefficients", ["lr", "weight_decay", "momentum"])
#: One AdamW step's scalars for one candidate: torch.optim's step size ``lr / (1 - beta1**t)``, decoupled
#: decay ``1 - lr * weight_decay``, the betas, eps and ``sqrt(1 - beta2**t)``.
AdamWCoefficients = namedtuple("AdamWCoefficients", ["step_size", "decay", "beta1", "beta2", "eps", "bc2_sqrt"])

#: The kernels' optimizer arguments, in order (:func:`optimizer_args`).
OPTIMIZER_ARGS = ("lr_ptr", "wd_ptr", "momentum_ptr", "beta1_ptr", "beta2_ptr", "eps_ptr")


def optimizer_args(hparams: Mapping[str, torch.Tensor], adamw: bool) -> tuple[torch.Tensor, ...]:
    """The (K,) fp32 tensors for a kernel's :data:`OPTIMIZER_ARGS`: learning rate, weight decay, SGD's momentum,
    AdamW's beta1, beta2 and eps. Those the optimizer does not read get the learning rate (any valid pointer)."""
    needed = ("lr", "weight_decay") + (("beta1", "beta2", "eps") if adamw else ("momentum",))
    missing = [n for n in needed if n not in hparams]
    if missing:
        raise ValueError(f"hparams is missing {missing} for {'AdamW' if adamw else 'SGD'}")
    lr = hparams["lr"]
    if adamw:
        return lr, hparams["weight_decay"], lr, hparams["beta1"], hparams["beta2"], hparams["eps"]
    return lr, hparams["weight_decay"], hparams["momentum"], lr, lr, lr


@triton.jit
def one_minus_pow(beta, t):
    """``1 - beta**t`` for 0 <= beta < 1 and t >= 1, accurate to float32 rounding even when beta is close to 1.

    With y = t*ln(beta), ``1 - exp(y)`` cancels badly for small |y| (beta2 = 0.999, t = 1 gives 1e-3 from a
    subtraction of two numbers near 1); there the Taylor series of ``-expm1(y)`` is used instead."""
    y = t * tl.log(beta)
    series = -y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0)))))
    return tl.where(y > -0.1, series, 1.0 - tl.exp(y))


@triton.jit
def sgd_coefficients(k, lr_ptr, wd_ptr, momentum_ptr):
    """Candidate k's :data:`SGDCoefficients`."""
    return SGDCoefficients(tl.load(lr_ptr + k), tl.load(wd_ptr + k), tl.load(momentum_ptr + k))


@triton.jit
def adamw_coefficients(k, t, lr_ptr, wd_ptr, beta1_ptr, beta2_ptr, eps_ptr):
    """Candidate k's :data:`AdamWCoefficients` for its update number ``t`` (1-based, float32)."""
    lr = tl.load(lr_ptr + k)
    wd = tl.load(wd_ptr + k)
    beta1 = tl.load(beta1_ptr + k)
    beta2 = tl.load(beta2_ptr + k)
    eps = tl.load(eps_ptr + k)
    return AdamWCoefficients(lr / one_minus_pow(beta1, t), 1.0 - lr * wd, beta1, beta2, eps,
                             tl.sqrt(one_minus_pow(beta2, t)))


@triton.jit
def coefficients(k, t, lr_ptr, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr, ADAMW: tl.constexpr):
    """Candidate k's coefficients for its update number ``t`` (1-based, float32), from the pointers of
    :func:`optimizer_args`: :func:`adamw_coefficients` if ``ADAMW``, else :func:`sgd_coefficients`."""
    if ADAMW:
        return adamw_coefficients(k, t, lr_ptr, wd_ptr, beta1_ptr, beta2_ptr, eps_ptr)
    else:
        return sgd_coefficients(k, lr_ptr, wd_ptr, momentum_ptr)


@triton.jit
def sgd_update(p, g, buf, c, NESTEROV: tl.constexpr):
    """torch.optim.SGD on a tile with :data:`SGDCoefficients` ``c``: returns (new_p, new_buf).

    ``buf`` starts at zero, so ``momentum*buf + g`` is torch's first-step ``buf = g``. A candidate with
    momentum 0 does plain SGD and leaves its buffer as it is, as torch does: zero if it never had momentum
    (torch keeps none), the last buffer if its momentum was set to 0 during training."""
    g = g + c.weight_decay * p
    new_buf = c.momentum * buf + g
    if NESTEROV:
        d = g + c.momentum * new_buf
    else:
        d = new_buf
    return p - c.lr * d, tl.where(c.momentum > 0, new_buf, buf)


@triton.jit
def adamw_update(p, g, m, v, c):
    """torch.optim.AdamW on a tile with :data:`AdamWCoefficients` ``c``: returns (new_p, new_exp_avg,
    new_exp_avg_sq)."""
    p = p * c.decay
    m = m + (1.0 - c.beta1) * (g - m)
    v = c.beta2 * v + (1.0 - c.beta2) * g * g
    denom = tl.sqrt(v) / c.bc2_sqrt + c.eps
    return p - c.step_size * (m / denom), m, v


@triton.jit
def update(p, g, s1, s2, c, ADAMW: tl.constexpr, NESTEROV: tl.constexpr):
    """The optimizer step on loaded tiles with coefficients ``c`` from :func:`coefficients`: returns
    (new_p, new_s1, new_s2). ``s1``: momentum buffer (SGD) or exp_avg (AdamW); ``s2``: exp_avg_sq (AdamW;
    SGD returns it unchanged)."""
    if ADAMW:
        p, s1, s2 = adamw_update(p, g, s1, s2, c)
    else:
        p, s1 = sgd_update(p, g, s1, c, NESTEROV)
    return p, s1, s2


@triton.jit
def store_state(p_ptrs, s1_ptrs, s2_ptrs, p, s1, s2, mask, ADAMW: tl.constexpr):
    """Store a parameter tile and its optimizer state (``s2`` only for AdamW)."""
    tl.store(p_ptrs, p, mask=mask)
    tl.store(s1_ptrs, s1, mask=mask)
    if ADAMW:
        tl.store(s2_ptrs, s2, mask=mask)


@triton.jit
def load_state(p_ptrs, s1_ptrs, s2_ptrs, mask, ADAMW: tl.constexpr):
    """Load a parameter tile and its optimizer state; for SGD the returned ``s2`` is ``s1`` (never used)."""
    p = tl.load(p_ptrs, mask=mask, other=0.0)
    s1 = tl.load(s1_ptrs, mask=mask, other=0.0)
    if ADAMW:
        s2 = tl.load(s2_ptrs, mask=mask, other=0.0)
    else:
        s2 = s1
    return p, s1, s2


@triton.jit
def update_tile(p_ptrs, s1_ptrs, s2_ptrs, g, mask, c, ADAMW: tl.constexpr, NESTEROV: tl.constexpr):
    """Load a parameter tile and its optimizer state, apply the update with gradient tile ``g`` and
    coefficients ``c`` (:func:`coefficients`), store back.

    ``s1_ptrs``: momentum buffer (SGD) or exp_avg (AdamW); ``s2_ptrs``: exp_avg_sq (AdamW only, unused for
    SGD). Masked-off elements are neither read nor written."""
    p, s1, s2 = load_state(p_ptrs, s1_ptrs, s2_ptrs, mask, ADAMW)
    p, s1, s2 = update(p, g, s1, s2, c, ADAMW, NESTEROV)
    store_state(p_ptrs, s1_ptrs, s2_ptrs, p, s1, s2, mask, ADAMW)
