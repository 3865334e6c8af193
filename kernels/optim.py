"""Optimizer updates as Triton device functions, shared by every kernel that updates weights in place.

The maths is torch.optim's (``torch/optim/sgd.py`` and ``adamw.py``, single-tensor path): SGD with momentum
(dampening 0), optional Nesterov and coupled weight decay; AdamW with bias correction and decoupled weight
decay. Each candidate's hyperparameters are scalars loaded from (K,) device tensors, and AdamW's bias
corrections are computed here from the candidate's step count, so changing hyperparameters or stepping never
recompiles a kernel and never needs the host.

The optimizer is picked by the ``OPTIMIZER`` constexpr: :data:`SGD` or :data:`ADAMW`.
"""
import triton
import triton.language as tl

SGD = 0
ADAMW = 1


@triton.jit
def one_minus_pow(beta, t):
    """``1 - beta**t`` for 0 <= beta < 1 and t >= 1, accurate to float32 rounding even when beta is close to 1.

    With y = t*ln(beta), ``1 - exp(y)`` cancels badly for small |y| (beta2 = 0.999, t = 1 gives 1e-3 from a
    subtraction of two numbers near 1); there the Taylor series of ``-expm1(y)`` is used instead."""
    y = t * tl.log(beta)
    series = -y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0)))))
    return tl.where(y > -0.1, series, 1.0 - tl.exp(y))


@triton.jit
def load_coefficients(k, t, lr_ptr, wd_ptr, beta1_ptr, beta2_ptr, eps_ptr, OPTIMIZER: tl.constexpr):
    """Candidate k's scalar update coefficients for its update number ``t`` (1-based, float32).

    Returns six scalars ``c0..c5``, handed unchanged to :func:`update` (or :func:`update_tile`).
    SGD: ``(lr, weight_decay, momentum, 0, 0, 1)``; ``beta1_ptr`` holds the momentum and ``beta2_ptr`` and
    ``eps_ptr`` are not read. AdamW: ``(lr / (1 - beta1**t), 1 - lr*weight_decay, beta1, beta2, eps,
    sqrt(1 - beta2**t))``, torch.optim's step size, decoupled decay and bias corrections."""
    lr = tl.load(lr_ptr + k)
    wd = tl.load(wd_ptr + k)
    b1 = tl.load(beta1_ptr + k)
    if OPTIMIZER == 1:
        b2 = tl.load(beta2_ptr + k)
        eps = tl.load(eps_ptr + k)
        return lr / one_minus_pow(b1, t), 1.0 - lr * wd, b1, b2, eps, tl.sqrt(one_minus_pow(b2, t))
    else:
        return lr, wd, b1, 0.0, 0.0, 1.0


@triton.jit
def sgd(p, g, buf, lr, wd, momentum, NESTEROV: tl.constexpr):
    """torch.optim.SGD on a tile: returns (new_p, new_buf).

    ``buf`` starts at zero, so ``momentum*buf + g`` is torch's first-step ``buf = g``. A candidate with
    momentum 0 does plain SGD and leaves its buffer as it is, as torch does: zero if it never had momentum
    (torch keeps none), the last buffer if its momentum was set to 0 during training."""
    g = g + wd * p
    new_buf = momentum * buf + g
    if NESTEROV:
        d = g + momentum * new_buf
    else:
        d = new_buf
    return p - lr * d, tl.where(momentum > 0, new_buf, buf)


@triton.jit
def adamw(p, g, m, v, step_size, decay, beta1, beta2, eps, bc2_sqrt):
    """torch.optim.AdamW on a tile: returns (new_p, new_exp_avg, new_exp_avg_sq)."""
    p = p * decay
    m = m + (1.0 - beta1) * (g - m)
    v = beta2 * v + (1.0 - beta2) * g * g
    denom = tl.sqrt(v) / bc2_sqrt + eps
    return p - step_size * (m / denom), m, v


@triton.jit
def update(p, g, s1, s2, c0, c1, c2, c3, c4, c5, OPTIMIZER: tl.constexpr, NESTEROV: tl.constexpr):
    """The optimizer step on loaded tiles: returns (new_p, new_s1, new_s2).

    ``s1``: momentum buffer (SGD) or exp_avg (AdamW); ``s2``: exp_avg_sq (AdamW; SGD returns it unchanged).
    ``c0..c5`` come from :func:`load_coefficients`."""
    if OPTIMIZER == 1:
        p, s1, s2 = adamw(p, g, s1, s2, c0, c1, c2, c3, c4, c5)
    else:
        p, s1 = sgd(p, g, s1, c0, c1, c2, NESTEROV)
    return p, s1, s2


@triton.jit
def store_state(p_ptrs, s1_ptrs, s2_ptrs, p, s1, s2, mask, OPTIMIZER: tl.constexpr):
    """Store a parameter tile and its optimizer state (``s2`` only for AdamW)."""
    tl.store(p_ptrs, p, mask=mask)
    tl.store(s1_ptrs, s1, mask=mask)
    if OPTIMIZER == 1:
        tl.store(s2_ptrs, s2, mask=mask)


@triton.jit
def load_state(p_ptrs, s1_ptrs, s2_ptrs, mask, OPTIMIZER: tl.constexpr):
    """Load a parameter tile and its optimizer state; for SGD the returned ``s2`` is ``s1`` (never used)."""
    p = tl.load(p_ptrs, mask=mask, other=0.0)
    s1 = tl.load(s1_ptrs, mask=mask, other=0.0)
    if OPTIMIZER == 1:
        s2 = tl.load(s2_ptrs, mask=mask, other=0.0)
    else:
        s2 = s1
    return p, s1, s2


@triton.jit
def update_tile(p_ptrs, s1_ptrs, s2_ptrs, g, mask, c0, c1, c2, c3, c4, c5,
                OPTIMIZER: tl.constexpr, NESTEROV: tl.constexpr):
    """Load a parameter tile and its optimizer state, apply the update with gradient tile ``g``, store back.

    ``s1_ptrs``: momentum buffer (SGD) or exp_avg (AdamW); ``s2_ptrs``: exp_avg_sq (AdamW only, unused for
    SGD). ``c0..c5`` come from :func:`load_coefficients`; masked-off elements are neither read nor written."""
    p, s1, s2 = load_state(p_ptrs, s1_ptrs, s2_ptrs, mask, OPTIMIZER)
    p, s1, s2 = update(p, g, s1, s2, c0, c1, c2, c3, c4, c5, OPTIMIZER, NESTEROV)
    store_state(p_ptrs, s1_ptrs, s2_ptrs, p, s1, s2, mask, OPTIMIZER)
