"""Many training steps of K small one-hidden-layer MLPs in one launch, weights and optimizer state on chip.

The single-step kernel (:mod:`.fused_mlp`) reads and writes every candidate's weights and optimizer state
once per step, so a step of a small model costs a round trip to device memory and a launch. Here one
program owns candidate ``k`` for a whole span of steps: it loads W1, b1, W2, b2 and their optimizer state
once, keeps them in registers, and per step gathers its minibatch rows (``X[idx[s]]``, shared by all
candidates and served from L2), runs forward, loss, backward and the optimizer update on chip, and writes
only the step's loss. The batch is processed ``CHUNK`` rows at a time, the gradients accumulated over the
chunks (cross-entropy's gradient is per row), so that the (B, H) activations never need to be live whole.

The maths is the single-step kernel's, step for step (torch.optim semantics, per-candidate hyperparameters
and alive mask from device tensors, a per-step learning-rate table for schedules): a span of S steps here
equals S calls of :func:`.fused_mlp.fused_mlp_step` on the same batches. A candidate dead at the start
only writes ``inf`` losses; one whose loss is not finite is marked dead, keeps its last weights and writes
``inf`` for the rest of the span.

Only small models take this path (:func:`steps_fit`): the weights, state and gradient accumulators of one
candidate must live in one program's registers.

Measured on an H100 (Triton 3.6, tf32, batch 128, ``benchmarks/results/h100/``): digits 64-128-10, K = 4096,
1000 SGD steps in 0.451 s (1000 launches of the single-step kernel: 0.687 s), AdamW in 0.562 s. Each program is a serial chain
of small products (CHUNK x 64 x 128 and the like) with shared-memory round trips between them, so the time
goes to latency; two programs per SM (4 warps each) hide part of it.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from .common import PRECISIONS, block, interpreting, mm
from .fused_mlp import check_layout, softmax_xent
from .optim import coefficients, load_state, optimizer_args, store_state, update

#: Largest padded D x H whose W1, its state and its gradient stay in registers (64 registers per thread for
#: each such array at 4 warps): digits 64-128-10 and anything smaller.
MAX_INPUT_HIDDEN = 64 * 128
#: Largest padded hidden width and class count.
MAX_HIDDEN = 128
MAX_CLASSES = 16

#: Configurations (rows of the batch per chunk, warps, pipeline stages of the chunk loop). No autotuning: a
#: launch runs a whole span of steps, so timing every configuration at the first call would cost several
#: spans. DEFAULT_CONFIG, the first, was the fastest on an H100 (Triton 3.6, digits 64-128-10, K=4096, 1000
#: steps in one launch, ``benchmarks/results/h100/kernel_configs.md``): 0.451 s SGD, 0.562 s AdamW. ptxas
#: gives it 255 registers per thread and 2 KB of spills, but 4 warps at 255 registers let two programs share
#: an SM, which hides the latency of one program's chain of small products behind the other's. Next: CHUNK 32
#: with 8 warps (one program per SM, 296 bytes of spills) 0.540 s, the same with the chunk loads pipelined
#: 0.619 s. Measured and dropped: CHUNK 16 (0.731 s), 16 warps (0.889 s), W1 and its state re-read from L2
#: at every step instead of kept in registers (0.698 s; 0.868 s with a 128-register cap for two programs per
#: SM); CHUNK 64 with 8 warps faulted (illegal address; not reproduced by the interpreter).
CONFIGS = [
    triton.Config({"CHUNK": 32}, num_warps=4, num_stages=1),
    triton.Config({"CHUNK": 32}, num_warps=8, num_stages=1),
    triton.Config({"CHUNK": 32}, num_warps=8, num_stages=3),
]
DEFAULT_CONFIG = CONFIGS[0]
#: Under the interpreter: small chunks, so that a test batch of a few dozen rows spans several chunks.
INTERPRETER_CONFIG = triton.Config({"CHUNK": 16}, num_warps=4, num_stages=1)


@triton.jit
def fused_mlp_steps_kernel(
    x_ptr, y_ptr, idx_ptr,
    w1_ptr, b1_ptr, w2_ptr, b2_ptr,
    w1_s1_ptr, b1_s1_ptr, w2_s1_ptr, b2_s1_ptr,
    w1_s2_ptr, b1_s2_ptr, w2_s2_ptr, b2_s2_ptr,
    lr_ptr, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr,
    step_ptr, alive_ptr, loss_ptr,
    S, K, B, D, H, C, stride_xn,
    BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_C: tl.constexpr, CHUNK: tl.constexpr,
    ADAMW: tl.constexpr, NESTEROV: tl.constexpr, PRECISION: tl.constexpr, LR_TABLE: tl.constexpr,
):
    """S training steps of candidate ``k = program_id(0)``, its weights and state held in registers.

    Args:
        x_ptr: The data X, (N, D) fp32, strides (stride_xn, 1); step s trains on rows ``idx[s, :]``.
        y_ptr: Labels, (N,) int64, each in [0, C).
        idx_ptr: (S, B) int32 row indices of the minibatches, shared by all candidates.
        w1_ptr ... b2_s2_ptr: Parameters and optimizer state as in :func:`.fused_mlp.fused_mlp_step_kernel`;
            read once, written once at the end.
        lr_ptr: (K,) fp32 learning rates, or with ``LR_TABLE`` an (S, K) table, one row per step.
        wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr: (K,) fp32 hyperparameters, as in the single-step
            kernel.
        step_ptr: (K,) int64 updates applied so far; advanced by the updates applied here.
        alive_ptr: (K,) uint8; cleared where a loss is not finite.
        loss_ptr: (S, K) fp32 output, each step's minibatch loss before its update (inf where not updated).
        S, K, B, D, H, C: Steps, candidates, batch size, input features, hidden units, classes.
        stride_xn: Row stride of X in elements.
        BLOCK_D, BLOCK_H, BLOCK_C: Powers of two >= 16 covering D, H, C (whole layers per program).
        CHUNK: Batch rows per forward/backward chunk (from the configuration, see :data:`CONFIGS`).
        ADAMW, NESTEROV, PRECISION: As in the single-step kernel.
        LR_TABLE: Whether ``lr_ptr`` is an (S, K) per-step table (a schedule).
    """
    k = tl.program_id(0).to(tl.int64)
    offs_r = tl.arange(0, CHUNK)
    offs_d = tl.arange(0, BLOCK_D)
    offs_h = tl.arange(0, BLOCK_H)
    offs_c = tl.arange(0, BLOCK_C)
    mask_d = offs_d < D
    mask_h = offs_h < H
    mask_c = offs_c < C
    alive = tl.load(alive_ptr + k) != 0
    if alive:
        # the candidate's whole model and optimizer state, loaded once; padding is zero and stays zero
        w1_offs = k * D * H + offs_d[:, None] * H + offs_h[None, :]
        mask_dh = mask_d[:, None] & mask_h[None, :]
        w1, w1_s1, w1_s2 = load_state(w1_ptr + w1_offs, w1_s1_ptr + w1_offs, w1_s2_ptr + w1_offs, mask_dh,
                                      ADAMW)
        b1_offs = k * H + offs_h
        b1, b1_s1, b1_s2 = load_state(b1_ptr + b1_offs, b1_s1_ptr + b1_offs, b1_s2_ptr + b1_offs, mask_h,
                                      ADAMW)
        w2_offs = k * H * C + offs_h[:, None] * C + offs_c[None, :]
        mask_hc = mask_h[:, None] & mask_c[None, :]
        w2, w2_s1, w2_s2 = load_state(w2_ptr + w2_offs, w2_s1_ptr + w2_offs, w2_s2_ptr + w2_offs, mask_hc,
                                      ADAMW)
        b2_offs = k * C + offs_c
        b2, b2_s1, b2_s2 = load_state(b2_ptr + b2_offs, b2_s1_ptr + b2_offs, b2_s2_ptr + b2_offs, mask_c,
                                      ADAMW)
        step = tl.load(step_ptr + k)
        for s in range(S):
            if alive:
                # forward and backward chunk by chunk, the gradients summed over the batch
                dw1 = tl.zeros((BLOCK_D, BLOCK_H), dtype=tl.float32)
                dw2t = tl.zeros((BLOCK_C, BLOCK_H), dtype=tl.float32)
                db1 = tl.zeros((BLOCK_H,), dtype=tl.float32)
                db2 = tl.zeros((BLOCK_C,), dtype=tl.float32)
                loss = tl.sum(tl.zeros((CHUNK,), dtype=tl.float32), axis=0)
                for r0 in range(0, B, CHUNK):
                    mask_r = r0 + offs_r < B
                    rows = tl.load(idx_ptr + s * B + r0 + offs_r, mask=mask_r, other=0).to(tl.int64)
                    x = tl.load(x_ptr + rows[:, None] * stride_xn + offs_d[None, :],
                                mask=mask_r[:, None] & mask_d[None, :], other=0.0)
                    labels = tl.load(y_ptr + rows, mask=mask_r, other=0)
                    z1 = mm(x, w1, tl.zeros((CHUNK, BLOCK_H), dtype=tl.float32), PRECISION)
                    a1 = tl.maximum(z1 + b1[None, :], 0.0, propagate_nan=tl.PropagateNan.ALL)
                    z2 = mm(a1, w2, tl.zeros((CHUNK, BLOCK_C), dtype=tl.float32), PRECISION) + b2[None, :]
                    chunk_loss, g2 = softmax_xent(z2, labels, offs_c, mask_r, mask_c, B)
                    loss += chunk_loss
                    dw2t = mm(tl.trans(g2), a1, dw2t, PRECISION)
                    db2 += tl.sum(g2, axis=0)
                    da1 = mm(g2, tl.trans(w2), tl.zeros((CHUNK, BLOCK_H), dtype=tl.float32), PRECISION)
                    dz1 = tl.where(a1 > 0.0, da1, 0.0)
                    db1 += tl.sum(dz1, axis=0)
                    dw1 = mm(tl.trans(x), dz1, dw1, PRECISION)
                loss = loss / B
                alive = tl.abs(loss) < float("inf")
                if alive:
                    step += 1
                    lr_row = lr_ptr + s * K if LR_TABLE else lr_ptr
                    coef = coefficients(k, step.to(tl.float32), lr_row, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr,
                                        eps_ptr, ADAMW)
                    w1, w1_s1, w1_s2 = update(w1, dw1, w1_s1, w1_s2, coef, ADAMW, NESTEROV)
                    b1, b1_s1, b1_s2 = update(b1, db1, b1_s1, b1_s2, coef, ADAMW, NESTEROV)
                    w2, w2_s1, w2_s2 = update(w2, tl.trans(dw2t), w2_s1, w2_s2, coef, ADAMW, NESTEROV)
                    b2, b2_s1, b2_s2 = update(b2, db2, b2_s1, b2_s2, coef, ADAMW, NESTEROV)
                    tl.store(loss_ptr + s * K + k, loss)
                else:
                    tl.store(loss_ptr + s * K + k, float("inf"))
            else:
                tl.store(loss_ptr + s * K + k, float("inf"))
        store_state(w1_ptr + w1_offs, w1_s1_ptr + w1_offs, w1_s2_ptr + w1_offs, w1, w1_s1, w1_s2, mask_dh,
                    ADAMW)
        store_state(b1_ptr + b1_offs, b1_s1_ptr + b1_offs, b1_s2_ptr + b1_offs, b1, b1_s1, b1_s2, mask_h,
                    ADAMW)
        store_state(w2_ptr + w2_offs, w2_s1_ptr + w2_offs, w2_s2_ptr + w2_offs, w2, w2_s1, w2_s2, mask_hc,
                    ADAMW)
        store_state(b2_ptr + b2_offs, b2_s1_ptr + b2_offs, b2_s2_ptr + b2_offs, b2, b2_s1, b2_s2, mask_c,
                    ADAMW)
        tl.store(step_ptr + k, step)
        tl.store(alive_ptr + k, alive.to(tl.uint8))
    else:
        for s in range(S):
            tl.store(loss_ptr + s * K + k, float("inf"))


def steps_fit(batch: int, d_in: int, hidden: int, classes: int) -> bool:
    """Whether :func:`fused_mlp_steps` takes this shape (one candidate's model must fit in registers)."""
    if min(batch, d_in, hidden, classes) < 1:
        return False
    return (block(d_in) * block(hidden) <= MAX_INPUT_HIDDEN and block(hidden) <= MAX_HIDDEN
            and block(classes) <= MAX_CLASSES)


def fused_mlp_steps(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, params: list, state1: list,
                    state2: Optional[list], hparams: dict, step_count: torch.Tensor, alive: torch.Tensor, *,
                    adamw: bool, nesterov: bool = False, precision: str = "tf32",
                    lr_table: Optional[torch.Tensor] = None, config: Optional[triton.Config] = None) -> torch.Tensor:
    """Train K one-hidden-layer relu MLPs ``S = idx.shape[0]`` steps, step s on rows ``idx[s]`` of (x, y), in
    one launch; returns the (S, K) losses. The same training as S calls of :func:`.fused_mlp.fused_mlp_step`.

    Args:
        x: (N, D) fp32 data (any row stride; features contiguous); y: (N,) int64 labels in [0, C).
        idx: (S, B) integer row indices, one minibatch per step, shared by all candidates.
        params, state1, state2, hparams, step_count, alive, adamw, nesterov, precision: as for
            :func:`.fused_mlp.fused_mlp_step`.
        config: a configuration (see :data:`CONFIGS`) to run instead of :data:`DEFAULT_CONFIG`.
        lr_table: (S, K) fp32 learning rates per step (a schedule); None: ``hparams["lr"]`` at every step.

    Returns:
        (S, K) fp32 losses before each update, inf where a candidate was not updated.
    """
    w1, b1, w2, b2 = params
    K, D, H = w1.shape
    C = w2.shape[2]
    if idx.dim() != 2 or idx.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"idx must be an (S, B) integer tensor; got {tuple(idx.shape)} {idx.dtype}")
    S, B = idx.shape
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    if not steps_fit(B, D, H, C):
        raise ValueError(f"fused_mlp_steps does not take input {D}, hidden {H}, classes {C}; see steps_fit")
    if lr_table is not None and (lr_table.shape != (S, K) or lr_table.dtype != torch.float32):
        raise ValueError(f"lr_table must be a ({S}, {K}) float32 tensor; got {tuple(lr_table.shape)}")
    check_layout(x, y, params, state1, state2, step_count, alive)
    idx = idx.to(torch.int32).contiguous()
    if state2 is None:  # SGD: never read
        state2 = [w1.new_empty(1)] * 4
    losses = torch.empty(S, K, dtype=torch.float32, device=w1.device)
    lr = hparams["lr"] if lr_table is None else lr_table.contiguous()
    args = (x, y, idx, w1, b1, w2, b2, *state1, *state2, *optimizer_args({**hparams, "lr": lr}, adamw),
            step_count, alive.view(torch.uint8), losses, S, K, B, D, H, C, x.stride(0))
    constexprs = dict(BLOCK_D=block(D), BLOCK_H=block(H), BLOCK_C=block(C), ADAMW=adamw,
                      NESTEROV=bool(nesterov), PRECISION=precision, LR_TABLE=lr_table is not None)
    if S == 0 or K == 0:
        return losses
    if config is None:
        config = INTERPRETER_CONFIG if interpreting() else DEFAULT_CONFIG
    options = {"maxnreg": config.maxnreg} if config.maxnreg else {}
    fused_mlp_steps_kernel[(K,)](*args, **constexprs, **config.kwargs, num_warps=config.num_warps,
                                 num_stages=config.num_stages, **options)
    return losses
