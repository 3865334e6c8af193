"""One whole training step of K one-hidden-layer MLPs (relu, softmax cross-entropy) in a single launch.

Per candidate k, one program does (``X`` is the minibatch shared by all candidates)::

    pass 1, over tiles of the D input features:   Z1 = X W1[k]                      (B, H), on chip
    A1 = relu(Z1 + b1);  Z2 = A1 W2[k] + b2;  loss = mean_b CE(Z2, y)
    G2 = (softmax(Z2) - onehot(y)) / B;  dW2 = A1^T G2;  db2 = sum_b G2
    dZ1 = (G2 W2[k]^T) * (A1 > 0);  db1 = sum_b dZ1          (with the old W2)
    update W2, b2, b1 and their optimizer state in place
    pass 2, over the same tiles:  dW1_tile = X_tile^T dZ1, update that W1 tile and its state in registers

so the hidden activations and every gradient stay on chip, and each candidate's W1 is read twice and written
once. A candidate that is dead (``alive[k] == 0``) only writes ``loss[k] = inf``; one whose loss is not finite
is also marked dead and left unchanged; the others update and increment ``step_count[k]``. X tiles are read
by all K programs and stay in L2. Latency: the small tensors (W2, b2, their state, labels, hyperparameters)
are loaded before pass 1; pass 2 loads the next W1 tile and its state one loop trip ahead (pointer loads) or
has STAGES2 tiles in flight through the tensor-memory accelerator (TMA: Hopper, rows 16-byte aligned).

Measured on an H200 (Triton 3.6, tf32, batch 128): 780 us per SGD step at digits 64-128-10, K = 4096, and
1130 us at MNIST 784-128-10, K = 1024 (48% of the memory roofline, 3.1x the torch backend). Nsight Compute:
255 registers per thread (the (B, H) arrays of the head), so one 8-warp program per SM and every load
latency of a candidate's step exposed (12.5% occupancy, 0.33 eligible warps per scheduler); pass 1 mostly
waits for its W1 tiles, pass 2 for the copy engine.

The whole batch's (B, H) activations live in registers, so the launcher accepts a shape only where
:func:`fused_fits` says so; the caller falls back to the per-layer path (:mod:`.layer_update`) otherwise.
"""
import functools
from typing import Optional

import torch
import triton
import triton.language as tl
from triton.runtime import _allocation

from .common import PRECISIONS, block, interpreting, mm, tuning_configs
from .optim import coefficients, load_state, optimizer_args, store_state, update, update_tile

#: Largest BLOCK_B * BLOCK_H (padded batch x hidden) one program holds: two (B, H) fp32 arrays of that size
#: (the activations and their gradient) are live at once, 64 KB each at 128 x 128, spread over 8 warps.
MAX_BATCH_HIDDEN = 128 * 128
#: Largest padded hidden width, and padded classes allowed with it: the W1 tiles (double-buffered), dZ1 and
#: W2 (in two layouts) share the H100's 227 KB of shared memory. Triton 3.6 needs up to 192 KB at
#: (B, H, C) = (128, 128, 64) and (64, 256, 16), 288 KB at (64, 256, 64); tests/test_triton_aot.py checks
#: the largest accepted shapes for every configuration.
MAX_HIDDEN = 256
MAX_CLASSES = {128: 64, 256: 16}

#: Autotuning configurations (BLOCK_D: input features per tile; TMA: pass 2 through tensor descriptors,
#: STAGES2 tiles deep; warps; pipeline stages of pass 1). 8 warps keep each of the (128, 128) fp32 arrays live
#: in the head at 64 registers per thread (4 warps spill kilobytes, 16 warps were slower). The pointer-load
#: pass 2 converts every W1 and state tile between the load layout and the accumulator layout through shared
#: memory (six conversions per tile in the TTGIR); the TMA pass 2 reads each tile once from shared memory
#: straight into the accumulator layout. Each configuration kept is the fastest somewhere, measured alone on
#: an H200 (Triton 3.6, ``benchmarks/results/h200/kernel_configs.md``): TMA with a 4-deep pass 1 at MNIST
#: SGD (1130 us at K=1024, 10% ahead of the next), TMA with a 2-deep pass 1 at digits SGD (780 us at K=4096),
#: pointer loads with BLOCK_D 16 for AdamW at both shapes, BLOCK_D 32/64 pointer loads at small K and where
#: descriptors are not allowed. Dropped after that measurement: BLOCK_D 16 TMA (6-deep pass 1), BLOCK_D 32
#: TMA 2-deep, BLOCK_D 64 TMA, 16 and 4 warps, a 5-deep pointer pass 1: never within 3% of the best.
#: On trial, not yet timed on a GPU: the three BACKWARD2 configurations (pass 2 walks W1 backwards, so its
#: re-read of W1 may come from L2); the autotuner picks them only where they are faster, and the next GPU
#: run of ``benchmarks/kernel_configs.py`` keeps or drops them.
CONFIGS = [
    triton.Config({"BLOCK_D": 32, "TMA": True, "STAGES2": 3}, num_warps=8, num_stages=4),
    triton.Config({"BLOCK_D": 32, "TMA": True, "STAGES2": 3}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_D": 32, "TMA": True, "STAGES2": 3, "BACKWARD2": True}, num_warps=8, num_stages=4),
    triton.Config({"BLOCK_D": 32, "TMA": True, "STAGES2": 3, "BACKWARD2": True}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_D": 16, "TMA": False, "STAGES2": 1}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_D": 16, "TMA": False, "STAGES2": 1, "BACKWARD2": True}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_D": 32, "TMA": False, "STAGES2": 1}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_D": 64, "TMA": False, "STAGES2": 1}, num_warps=8, num_stages=2),
]
#: The interpreter cannot benchmark (no driver): it gets exactly one configuration.
INTERPRETER_CONFIG = triton.Config({"BLOCK_D": 16, "TMA": False, "STAGES2": 1}, num_warps=4, num_stages=1)


#: Bytes of W1 and optimizer-state tiles a TMA pass 2 keeps in flight at most: with dZ1 (64 KB) and the
#: operand buffers this keeps every configuration within the H100's 227 KB at every shape fused_fits accepts.
#: The kernel pipelines STAGES2 tiles deep, fewer where they would exceed this; 1 means load, wait, use.
PIPE_BYTES = tl.constexpr(128 * 1024)
#: Deepest STAGES2 a configuration may ask for (the kernel's depth rule is written out up to it).
MAX_STAGES2 = tl.constexpr(4)


def configs_for(block_h: int, tma_ok: bool, configs: Optional[list] = None) -> list:
    """The configurations worth trying at hidden block ``block_h``: the TMA ones only where descriptors are
    allowed (else they compile to the pointer path again and are timed twice), and not with 64 x 256 tiles
    (their unpipelined AdamW buffers alone exceed the H100's shared memory)."""
    configs = CONFIGS if configs is None else configs
    kept = [c for c in configs if not c.kwargs["TMA"] or (tma_ok and c.kwargs["BLOCK_D"] * block_h <= 64 * 128)]
    return kept or configs


def _prune(configs, named_args, **kwargs):
    """The autotuner's pruning hook: :func:`configs_for` at this launch."""
    return configs_for(kwargs["BLOCK_H"], kwargs["TMA_OK"], configs)


@triton.jit
def softmax_xent(z2, labels, offs_c, mask_rows, mask_c, B):
    """Softmax cross-entropy of a block of logits ``z2`` (rows, BLOCK_C) against ``labels``: returns the sum of
    the rows' losses and its gradient with respect to ``z2`` divided by ``B`` (the batch mean's gradient).
    Padded classes (``mask_c`` false) count as -inf logits, padded rows (``mask_rows`` false) for nothing.
    Shared by the single-step and the multi-step kernel."""
    z2 = tl.where(mask_c[None, :], z2, float("-inf"))
    row_max = tl.max(z2, axis=1)
    e = tl.exp(z2 - row_max[:, None])
    sum_e = tl.sum(e, axis=1)
    onehot = offs_c[None, :] == labels[:, None]
    z_label = tl.sum(tl.where(onehot, z2, 0.0), axis=1)
    loss = tl.sum(tl.where(mask_rows, row_max + tl.log(sum_e) - z_label, 0.0), axis=0)
    g2 = (e / sum_e[:, None] - onehot.to(tl.float32)) / B
    return loss, tl.where(mask_rows[:, None] & mask_c[None, :], g2, 0.0)


@triton.jit
def w1_tile_gradient(x_rows, d, mask_b, D, dz1, PRECISION: tl.constexpr):
    """dW1 for the input features ``d`` (a tile of BLOCK_D indices): ``X[:, d]^T dZ1``, (BLOCK_D, BLOCK_H);
    ``x_rows`` points at the rows of X, features past D read as zero. Shared by both pass-2 paths."""
    x = tl.load(x_rows + d[None, :], mask=mask_b[:, None] & (d < D)[None, :], other=0.0)
    return mm(tl.trans(x), dz1, tl.zeros((d.shape[0], dz1.shape[1]), dtype=tl.float32), PRECISION)


@triton.jit
def fused_mlp_step_kernel(
    x_ptr, y_ptr,
    w1_ptr, b1_ptr, w2_ptr, b2_ptr,
    w1_s1_ptr, b1_s1_ptr, w2_s1_ptr, b2_s1_ptr,
    w1_s2_ptr, b1_s2_ptr, w2_s2_ptr, b2_s2_ptr,
    lr_ptr, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr,
    step_ptr, alive_ptr, loss_ptr,
    B, D, H, C, stride_xb,
    BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_C: tl.constexpr,
    ADAMW: tl.constexpr, NESTEROV: tl.constexpr, PRECISION: tl.constexpr,
    TMA: tl.constexpr, STAGES2: tl.constexpr, TMA_OK: tl.constexpr, BACKWARD2: tl.constexpr = False,
):
    """One training step of candidate ``k = program_id(0)``: forward, loss, backward, optimizer update.

    Args:
        x_ptr: Shared minibatch X, (B, D) fp32, strides (stride_xb, 1).
        y_ptr: Labels, (B,) int64, each in [0, C).
        w1_ptr, b1_ptr, w2_ptr, b2_ptr: Parameters, contiguous (K, D, H), (K, H), (K, H, C), (K, C) fp32;
            updated in place.
        w1_s1_ptr, b1_s1_ptr, w2_s1_ptr, b2_s1_ptr: First optimizer state (SGD momentum buffer or AdamW
            exp_avg), laid out like the parameters; updated in place.
        w1_s2_ptr, b1_s2_ptr, w2_s2_ptr, b2_s2_ptr: AdamW's exp_avg_sq, like the parameters (SGD: any
            pointer, never read).
        lr_ptr, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr: (K,) fp32 learning rate, weight decay,
            SGD's momentum and AdamW's betas and eps (:func:`.optim.optimizer_args`; those the optimizer does not
            take are never read).
        step_ptr: (K,) int64 updates applied so far; incremented for candidates updated.
        alive_ptr: (K,) uint8, 1 for live candidates; set to 0 where the loss is not finite.
        loss_ptr: (K,) fp32 output, the minibatch loss before the update (inf where not updated).
        B, D, H, C: Batch size, input features, hidden units, classes.
        stride_xb: Row stride of X in elements.
        BLOCK_B, BLOCK_H, BLOCK_C: Powers of two >= 16 covering B, H, C (whole batch and layer per program).
        BLOCK_D: Input features per tile of the two passes over W1 (autotuned).
        ADAMW: AdamW if true, else SGD.
        NESTEROV: Nesterov momentum (SGD).
        PRECISION: Dot input precision, "ieee", "tf32" or "bf16".
        TMA: Pass 2 moves W1 and its state with tensor descriptors (TMA on Hopper), STAGES2 tiles in flight;
            else with pointer loads, one tile prefetched in registers (autotuned).
        TMA_OK: Whether the launcher allows descriptors here (Hopper or the interpreter, H % 4 == 0).
        BACKWARD2: Pass 2 walks W1's tiles backwards, those pass 1 read last first: they are the likeliest
            to be still in L2 (at MNIST's shape the live W1 slices of one program per SM exceed the H100's
            50 MB of L2, so in forward order pass 2 re-reads W1 mostly from DRAM). On trial in
            :data:`CONFIGS` until measured on a GPU.
    """
    k = tl.program_id(0).to(tl.int64)
    if tl.load(alive_ptr + k) == 0:
        tl.store(loss_ptr + k, float("inf"))
    else:
        offs_b = tl.arange(0, BLOCK_B)
        offs_d = tl.arange(0, BLOCK_D)
        offs_h = tl.arange(0, BLOCK_H)
        offs_c = tl.arange(0, BLOCK_C)
        mask_b = offs_b < B
        mask_h = offs_h < H
        mask_c = offs_c < C
        x_rows = x_ptr + offs_b[:, None] * stride_xb
        w1_k = k * D * H  # candidate k's slices start here (64-bit); offsets inside them are 32-bit
        w2_k = k * H * C

        # everything small is loaded up front, so that its latency hides behind pass 1
        step = tl.load(step_ptr + k) + 1
        coef = coefficients(k, step.to(tl.float32), lr_ptr, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr,
                            ADAMW)
        labels = tl.load(y_ptr + offs_b, mask=mask_b, other=0)
        w2_offs = offs_h[:, None] * C + offs_c[None, :]
        mask_hc = mask_h[:, None] & mask_c[None, :]
        w2, w2_s1, w2_s2 = load_state(w2_ptr + w2_k + w2_offs, w2_s1_ptr + w2_k + w2_offs,
                                      w2_s2_ptr + w2_k + w2_offs, mask_hc, ADAMW)
        b2, b2_s1, b2_s2 = load_state(b2_ptr + k * C + offs_c, b2_s1_ptr + k * C + offs_c,
                                      b2_s2_ptr + k * C + offs_c, mask_c, ADAMW)
        b1 = tl.load(b1_ptr + k * H + offs_h, mask=mask_h, other=0.0)

        # pass 1: Z1 = X W1[k], tile by tile over the input features
        w1_tile = offs_d[:, None] * H + offs_h[None, :]
        z1 = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            d = d0 + offs_d
            mask_d = d < D
            x = tl.load(x_rows + d[None, :], mask=mask_b[:, None] & mask_d[None, :], other=0.0)
            w1 = tl.load(w1_ptr + w1_k + d0 * H + w1_tile, mask=mask_d[:, None] & mask_h[None, :], other=0.0)
            z1 = mm(x, w1, z1, PRECISION)
        a1 = tl.maximum(z1 + b1[None, :], 0.0, propagate_nan=tl.PropagateNan.ALL)

        # logits, softmax cross-entropy and its gradient
        z2 = mm(a1, w2, tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32), PRECISION) + b2[None, :]
        loss, g2 = softmax_xent(z2, labels, offs_c, mask_b, mask_c, B)
        loss = loss / B

        if tl.abs(loss) < float("inf"):
            # backward through the head with the old W2; dW2 is formed as (G2^T A1)^T so that the large
            # A1 is never transposed in registers
            dw2 = tl.trans(mm(tl.trans(g2), a1, tl.zeros((BLOCK_C, BLOCK_H), dtype=tl.float32), PRECISION))
            da1 = mm(g2, tl.trans(w2), tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32), PRECISION)
            dz1 = tl.where(a1 > 0.0, da1, 0.0)
            w2, w2_s1, w2_s2 = update(w2, dw2, w2_s1, w2_s2, coef, ADAMW, NESTEROV)
            store_state(w2_ptr + w2_k + w2_offs, w2_s1_ptr + w2_k + w2_offs, w2_s2_ptr + w2_k + w2_offs,
                        w2, w2_s1, w2_s2, mask_hc, ADAMW)
            b2, b2_s1, b2_s2 = update(b2, tl.sum(g2, axis=0), b2_s1, b2_s2, coef, ADAMW, NESTEROV)
            store_state(b2_ptr + k * C + offs_c, b2_s1_ptr + k * C + offs_c, b2_s2_ptr + k * C + offs_c,
                        b2, b2_s1, b2_s2, mask_c, ADAMW)
            update_tile(b1_ptr + k * H + offs_h, b1_s1_ptr + k * H + offs_h, b1_s2_ptr + k * H + offs_h,
                        tl.sum(dz1, axis=0), mask_h, coef, ADAMW, NESTEROV)

            last = ((D - 1) // BLOCK_D) * BLOCK_D  # the first feature of the last W1 tile
            if TMA and TMA_OK:
                # pass 2 through the tensor-memory accelerator: each W1/state tile arrives in shared memory,
                # is read once straight into the layout of the dW1 accumulator, updated in registers and
                # leaves through shared memory again; the loop is software-pipelined STAGES2 tiles deep.
                # Rows past D are zero on load and dropped on store by the copy engine itself.
                dp = tl.make_tensor_descriptor(w1_ptr + w1_k, [D, H], [H, 1], [BLOCK_D, BLOCK_H])
                ds1 = tl.make_tensor_descriptor(w1_s1_ptr + w1_k, [D, H], [H, 1], [BLOCK_D, BLOCK_H])
                ds2 = tl.make_tensor_descriptor(w1_s2_ptr + w1_k, [D, H], [H, 1], [BLOCK_D, BLOCK_H])
                # min(STAGES2, PIPE_BYTES // stage) written out for STAGES2 <= MAX_STAGES2, in constexpr
                # arithmetic that every supported Triton folds at compile time
                tl.static_assert(STAGES2 <= MAX_STAGES2, "STAGES2 must be at most MAX_STAGES2")
                STAGE: tl.constexpr = (3 if ADAMW else 2) * BLOCK_D * BLOCK_H * 4
                DEPTH: tl.constexpr = (STAGES2 if STAGES2 * STAGE <= PIPE_BYTES else
                                       3 if 3 * STAGE <= PIPE_BYTES else 2 if 2 * STAGE <= PIPE_BYTES else 1)
                for t in tl.range(0, D, BLOCK_D, num_stages=DEPTH):
                    if BACKWARD2:  # from the last tile down
                        d0 = last - t
                    else:
                        d0 = t
                    p = dp.load([d0, 0])
                    s1 = ds1.load([d0, 0])
                    s2 = ds2.load([d0, 0]) if ADAMW else s1
                    dw1 = w1_tile_gradient(x_rows, d0 + offs_d, mask_b, D, dz1, PRECISION)
                    p, s1, s2 = update(p, dw1, s1, s2, coef, ADAMW, NESTEROV)
                    dp.store([d0, 0], p)
                    ds1.store([d0, 0], s1)
                    if ADAMW:
                        ds2.store([d0, 0], s2)
            else:
                # pass 2: dW1 tile = X_tile^T dZ1, used at once to update that W1 tile; never stored. The next
                # tile of W1 and its state is loaded one trip ahead, so its latency hides behind this trip's work.
                # (with BACKWARD2 the tiles go backwards, d0 = last, last - BLOCK_D, ..., 0, and the prefetch after
                # the final trip falls below feature 0, so it is masked out)
                step_d = -BLOCK_D if BACKWARD2 else BLOCK_D
                d0 = last if BACKWARD2 else 0
                mask_t = ((d0 + offs_d)[:, None] < D) & mask_h[None, :]
                p_next, s1_next, s2_next = load_state(w1_ptr + w1_k + d0 * H + w1_tile,
                                                      w1_s1_ptr + w1_k + d0 * H + w1_tile,
                                                      w1_s2_ptr + w1_k + d0 * H + w1_tile, mask_t, ADAMW)
                for _ in range(0, D, BLOCK_D):
                    p, s1, s2 = p_next, s1_next, s2_next
                    mask_p = mask_t
                    nxt = (d0 + step_d) * H + w1_tile
                    d_next = d0 + step_d + offs_d
                    mask_t = (d_next[:, None] < D) & mask_h[None, :]
                    if BACKWARD2:
                        mask_t = mask_t & (d_next[:, None] >= 0)
                    p_next, s1_next, s2_next = load_state(w1_ptr + w1_k + nxt, w1_s1_ptr + w1_k + nxt,
                                                          w1_s2_ptr + w1_k + nxt, mask_t, ADAMW)
                    dw1 = w1_tile_gradient(x_rows, d0 + offs_d, mask_b, D, dz1, PRECISION)
                    p, s1, s2 = update(p, dw1, s1, s2, coef, ADAMW, NESTEROV)
                    cur = d0 * H + w1_tile
                    store_state(w1_ptr + w1_k + cur, w1_s1_ptr + w1_k + cur, w1_s2_ptr + w1_k + cur, p, s1, s2,
                                mask_p, ADAMW)
                    d0 += step_d
            tl.store(step_ptr + k, step)
            tl.store(loss_ptr + k, loss)
        else:
            tl.store(alive_ptr + k, 0)
            tl.store(loss_ptr + k, float("inf"))


#: Arguments the kernel updates in place: autotuning must restore them after each trial run.
_IN_PLACE = ["w1_ptr", "b1_ptr", "w2_ptr", "b2_ptr", "w1_s1_ptr", "b1_s1_ptr", "w2_s1_ptr", "b2_s1_ptr",
             "w1_s2_ptr", "b1_s2_ptr", "w2_s2_ptr", "b2_s2_ptr", "step_ptr", "alive_ptr"]

_tuned_kernel = triton.autotune(
    configs=tuning_configs(CONFIGS, INTERPRETER_CONFIG),
    key=["D", "H", "C", "BLOCK_B", "ADAMW", "NESTEROV", "PRECISION", "TMA_OK"],
    restore_value=_IN_PLACE,
    prune_configs_by={"early_config_prune": _prune},
)(fused_mlp_step_kernel)


def tma_allowed(x: torch.Tensor, hidden: int, w1_tensors: tuple = ()) -> bool:
    """Whether pass 2 may use tensor descriptors: W1 and its state tensors (``w1_tensors``) start on 16-byte
    boundaries and so do their rows (H % 4 == 0), Triton has device-side descriptors (3.4 and later), on a
    Hopper or newer GPU (TMA), or in the interpreter (which emulates descriptors, so CI tests that path too)."""
    if hidden % 4 or any(t.data_ptr() % 16 for t in w1_tensors) or not hasattr(tl, "make_tensor_descriptor"):
        return False
    if x.is_cuda:
        return _is_hopper_or_newer(x.device.index if x.device.index is not None else torch.cuda.current_device())
    return interpreting()


@functools.lru_cache(maxsize=None)
def _is_hopper_or_newer(device_index: int) -> bool:
    """Whether CUDA device ``device_index`` has compute capability 9.0 or more (TMA); asked once per device."""
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def _ensure_allocator() -> None:
    """Descriptors made inside a kernel need a little global scratch memory per program: give Triton a torch
    allocator for it, unless the user has set one."""
    current = _allocation._allocator  # up to Triton 3.4 the allocator itself, later a wrapper with .get()
    current = current.get() if hasattr(current, "get") else current
    if isinstance(current, _allocation.NullAllocator):
        triton.set_allocator(lambda size, alignment, stream: torch.empty(size, dtype=torch.int8, device="cuda"))


def fused_fits(batch: int, d_in: int, hidden: int, classes: int) -> bool:
    """Whether :func:`fused_mlp_step` takes this shape (the batch's activations must fit on chip)."""
    if min(batch, d_in, hidden, classes) < 1 or block(hidden) > MAX_HIDDEN:
        return False
    return (block(batch) * block(hidden) <= MAX_BATCH_HIDDEN
            and block(classes) <= MAX_CLASSES[max(128, block(hidden))])


def fused_mlp_step(x: torch.Tensor, y: torch.Tensor, params: list, state1: list, state2: Optional[list],
                   hparams: dict, step_count: torch.Tensor, alive: torch.Tensor, *, adamw: bool,
                   nesterov: bool = False, precision: str = "tf32",
                   config: Optional[triton.Config] = None) -> torch.Tensor:
    """Train K one-hidden-layer relu MLPs one step on (x, y) with one launch; returns the (K,) losses.

    Args:
        x: (B, D) fp32 minibatch shared by all candidates (any row stride; features contiguous).
        y: (B,) int64 labels in [0, C).
        params: [W1 (K, D, H), b1 (K, H), W2 (K, H, C), b2 (K, C)], contiguous fp32, updated in place.
        state1: momentum buffers (SGD) or exp_avg (AdamW), shaped like ``params``, updated in place.
        state2: exp_avg_sq (AdamW), shaped like ``params``; None for SGD.
        hparams: (K,) fp32 tensors: ``lr``, ``weight_decay`` and ``momentum`` (SGD) or ``beta1``, ``beta2``,
            ``eps`` (AdamW).
        step_count: (K,) int64, incremented for candidates updated.
        alive: (K,) bool, cleared for candidates whose loss is not finite.
        adamw: AdamW if True, else SGD.
        nesterov: Nesterov momentum (SGD).
        precision: dot input precision, one of "ieee", "tf32", "bf16".
        config: run this configuration instead of autotuning (tests, measurements of one configuration).

    Returns:
        (K,) fp32 losses before the update, inf for candidates dead after this step.
    """
    w1, b1, w2, b2 = params
    K, D, H = w1.shape
    C, B = w2.shape[2], x.shape[0]
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    if not fused_fits(B, D, H, C):
        raise ValueError(f"fused_mlp_step does not take batch {B}, hidden {H}, classes {C}; see fused_fits")
    check_layout(x, y, params, state1, state2, step_count, alive)
    if state2 is None:  # SGD: the kernel never reads these, so any valid pointer will do
        state2 = [w1.new_empty(1)] * 4
    losses = torch.empty(K, dtype=torch.float32, device=w1.device)
    tma_ok = tma_allowed(x, H, (w1, state1[0]) + ((state2[0],) if adamw else ()))
    if tma_ok and x.is_cuda:
        _ensure_allocator()
    args = (x, y, w1, b1, w2, b2, *state1, *state2, *optimizer_args(hparams, adamw), step_count,
            alive.view(torch.uint8), losses, B, D, H, C, x.stride(0))
    constexprs = dict(BLOCK_B=block(B), BLOCK_H=block(H), BLOCK_C=block(C), ADAMW=adamw,
                      NESTEROV=bool(nesterov), PRECISION=precision, TMA_OK=tma_ok)
    if config is None:
        _tuned_kernel[(K,)](*args, **constexprs)
    else:
        options = {"maxnreg": config.maxnreg} if config.maxnreg else {}
        fused_mlp_step_kernel[(K,)](*args, **constexprs, **config.kwargs, num_warps=config.num_warps,
                                    num_stages=config.num_stages, **options)
    return losses


def check_layout(x, y, params, state1, state2, step_count, alive) -> None:
    """The kernels' assumptions about dtypes and layouts (both fused kernels), checked on the host (no device sync)."""
    if x.dtype != torch.float32 or x.stride(1) != 1:
        raise ValueError("x must be float32 with contiguous features")
    if y.dtype != torch.int64 or y.dim() != 1:
        raise ValueError("y must be a (B,) int64 tensor of labels")
    for t in list(params) + list(state1) + list(state2 or []):
        if t.dtype != torch.float32 or not t.is_contiguous():
            raise ValueError("parameters and optimizer state must be contiguous float32 tensors")
    if step_count.dtype != torch.int64 or alive.dtype != torch.bool:
        raise ValueError("step_count must be int64 and alive bool")
