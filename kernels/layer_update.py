"""Per-layer weight gradient fused with the optimizer update, for models the one-launch kernel does not take.

For one dense layer of K candidates with input activations ``Hin`` (B, IN) shared by all candidates (the first
layer) or (K, B, IN) per candidate, and the gradient ``G`` (K, B, OUT) of the loss with respect to its
outputs, program (k, i, o) computes the tile ``dW[k][i-tile, o-tile] = Hin[k]^T G[k]`` (a loop over the
batch) and ``db[k][o-tile] = sum_b G[k]`` and applies the optimizer to that tile of W, b and their state in
place. Weight gradients never reach device memory. Candidates with ``alive[k] == 0`` are skipped.

The caller does the forward pass, the loss and the backward pass through the activations, and it must
compute the gradient for the layer below from the old weights before launching this kernel on a layer.
The caller has also already set ``alive`` and incremented ``step_count`` for this step (this kernel reads
``step_count`` as the 1-based number of the update being applied).
"""
import torch
import triton
import triton.language as tl

from .common import PRECISIONS, block, mm, tuning_configs
from .optim import coefficients, optimizer_args, update_tile

#: Autotuning configurations (BLOCK_I: input rows of W per program; BLOCK_B: batch rows per loop trip).
#: BLOCK_O (output columns per program) is fixed by the layer's width (:func:`block_out`), so that one
#: program covers a narrow layer (10 logits) or a 128-wide one in one tile. 64-row tiles take Hopper's
#: wgmma (64 rows per warp group); with 8 warps a 64 x 128 fp32 tile is 32 registers per thread, so the
#: accumulator, the weights and two AdamW states fit without spills (checked by ptxas for sm_90); BLOCK_B 64
#: halves the loop trips for long batches; the 32-row tile (mma.sync) gives more programs for small K.
CONFIGS = [
    triton.Config({"BLOCK_I": 64, "BLOCK_B": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_I": 64, "BLOCK_B": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_I": 32, "BLOCK_B": 32}, num_warps=4, num_stages=3),
]
#: The interpreter cannot benchmark (no driver): it gets exactly one configuration.
INTERPRETER_CONFIG = triton.Config({"BLOCK_I": 16, "BLOCK_B": 16}, num_warps=4, num_stages=1)


def block_out(d_out: int) -> int:
    """Output columns per program: the layer's width rounded up to a power of two in [16, 128]."""
    return block(d_out, 16, 128)


@triton.jit
def layer_update_kernel(
    h_ptr, g_ptr,
    w_ptr, b_ptr, w_s1_ptr, b_s1_ptr, w_s2_ptr, b_s2_ptr,
    lr_ptr, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr,
    step_ptr, alive_ptr,
    B, IN, OUT,
    stride_hk, stride_hb, stride_hi,
    stride_gk, stride_gb, stride_go,
    BLOCK_I: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_B: tl.constexpr,
    ADAMW: tl.constexpr, NESTEROV: tl.constexpr, PRECISION: tl.constexpr,
):
    """Weight gradient and optimizer update of the (BLOCK_I, BLOCK_O) tile (program_id(1), program_id(2)) of
    candidate ``k = program_id(0)``'s layer; the bias slice too, by the programs with program_id(1) == 0.

    Args:
        h_ptr: Layer input, (K, B, IN) or shared (B, IN) fp32, strides (stride_hk, stride_hb, stride_hi);
            stride_hk is 0 for the shared minibatch.
        g_ptr: Gradient of the loss with respect to the layer output, (K, B, OUT) fp32, strides (stride_gk,
            stride_gb, stride_go); zero rows for dead candidates are allowed but not needed.
        w_ptr, b_ptr: The layer's weights (K, IN, OUT) and bias (K, OUT), contiguous fp32, updated in place.
        w_s1_ptr, b_s1_ptr: SGD momentum buffer or AdamW exp_avg, like w and b; updated in place.
        w_s2_ptr, b_s2_ptr: AdamW exp_avg_sq, like w and b (SGD: any pointer, never read).
        lr_ptr, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr: (K,) fp32 learning rate, weight decay,
            SGD's momentum and AdamW's betas and eps (:func:`.optim.optimizer_args`; those the optimizer does not
            take are never read).
        step_ptr: (K,) int64 1-based number of this update (already incremented by the caller).
        alive_ptr: (K,) uint8, 0 for candidates not to update.
        B, IN, OUT: Batch size and the layer's input and output widths.
        BLOCK_I: Rows of W per program (autotuned).
        BLOCK_O: Columns of W per program (power of two >= 16).
        BLOCK_B: Batch rows per loop trip (autotuned).
        ADAMW: AdamW if true, else SGD.
        NESTEROV: Nesterov momentum (SGD).
        PRECISION: Dot input precision, "ieee", "tf32" or "bf16".
    """
    k = tl.program_id(0).to(tl.int64)
    pid_i = tl.program_id(1)
    pid_o = tl.program_id(2)
    if tl.load(alive_ptr + k) != 0:
        offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
        offs_o = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
        offs_b = tl.arange(0, BLOCK_B)
        mask_i = offs_i < IN
        mask_o = offs_o < OUT
        h_base = h_ptr + k * stride_hk
        g_base = g_ptr + k * stride_gk
        dw = tl.zeros((BLOCK_I, BLOCK_O), dtype=tl.float32)
        db = tl.zeros((BLOCK_O,), dtype=tl.float32)
        for b0 in range(0, B, BLOCK_B):
            b = b0 + offs_b
            mask_b = b < B
            h = tl.load(h_base + b[:, None] * stride_hb + offs_i[None, :] * stride_hi,
                        mask=mask_b[:, None] & mask_i[None, :], other=0.0)
            g = tl.load(g_base + b[:, None] * stride_gb + offs_o[None, :] * stride_go,
                        mask=mask_b[:, None] & mask_o[None, :], other=0.0)
            dw = mm(tl.trans(h), g, dw, PRECISION)
            db += tl.sum(g, axis=0)

        t = tl.load(step_ptr + k).to(tl.float32)
        coef = coefficients(k, t, lr_ptr, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr, ADAMW)
        # candidate k's slices (64-bit scalar offsets), then 32-bit offsets inside them
        w_k = k * IN * OUT
        w_offs = offs_i[:, None] * OUT + offs_o[None, :]
        update_tile(w_ptr + w_k + w_offs, w_s1_ptr + w_k + w_offs, w_s2_ptr + w_k + w_offs, dw,
                    mask_i[:, None] & mask_o[None, :], coef, ADAMW, NESTEROV)
        if pid_i == 0:
            b_k = k * OUT
            update_tile(b_ptr + b_k + offs_o, b_s1_ptr + b_k + offs_o, b_s2_ptr + b_k + offs_o, db, mask_o,
                        coef, ADAMW, NESTEROV)


_tuned_kernel = triton.autotune(
    configs=tuning_configs(CONFIGS, INTERPRETER_CONFIG),
    key=["B", "IN", "OUT", "BLOCK_O", "ADAMW", "NESTEROV", "PRECISION"],
    restore_value=["w_ptr", "b_ptr", "w_s1_ptr", "b_s1_ptr", "w_s2_ptr", "b_s2_ptr"],
)(layer_update_kernel)


def update_layer(h: torch.Tensor, g: torch.Tensor, w: torch.Tensor, b: torch.Tensor, state1: list,
                 state2, hparams: dict, step_count: torch.Tensor, alive: torch.Tensor, *, adamw: bool,
                 nesterov: bool = False, precision: str = "tf32") -> None:
    """Update one dense layer of K candidates in place from its input and output gradient.

    Args:
        h: Layer input, (B, IN) shared by all candidates or (K, B, IN); any strides.
        g: Gradient of the loss with respect to the layer's output, (K, B, OUT); any strides.
        w, b: Weights (K, IN, OUT) and bias (K, OUT), contiguous fp32, updated in place.
        state1: [for w, for b]: SGD momentum buffers or AdamW exp_avg, updated in place.
        state2: [for w, for b]: AdamW exp_avg_sq; None for SGD.
        hparams: (K,) fp32 tensors ``lr``, ``weight_decay`` and ``momentum`` (SGD) or ``beta1``, ``beta2``,
            ``eps`` (AdamW).
        step_count: (K,) int64, the 1-based number of this update per candidate (already incremented).
        alive: (K,) bool, the candidates to update.
        adamw: AdamW if True, else SGD.
        nesterov: Nesterov momentum (SGD).
        precision: dot input precision, one of "ieee", "tf32", "bf16".
    """
    K, IN, OUT = w.shape
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    if h.dim() == 2:
        h = h.unsqueeze(0).expand(K, *h.shape)  # stride 0 over candidates: the shared minibatch
    B = h.shape[1]
    if h.shape != (K, B, IN) or g.shape != (K, B, OUT):
        raise ValueError(f"h must be (K, B, {IN}) or (B, {IN}) and g (K, B, {OUT}); got {tuple(h.shape)}, "
                         f"{tuple(g.shape)}")
    for t in [w, b, *state1, *(state2 or [])]:
        if t.dtype != torch.float32 or not t.is_contiguous():
            raise ValueError("weights, biases and optimizer state must be contiguous float32 tensors")
    if state2 is None:  # SGD: never read by the kernel
        state2 = [w.new_empty(1)] * 2
    BLOCK_O = block_out(OUT)

    def grid(meta):
        return (K, triton.cdiv(IN, meta["BLOCK_I"]), triton.cdiv(OUT, BLOCK_O))
    _tuned_kernel[grid](
        h, g, w, b, state1[0], state1[1], state2[0], state2[1],
        *optimizer_args(hparams, adamw),
        step_count, alive.view(torch.uint8),
        B, IN, OUT, *h.stride(), *g.stride(),
        BLOCK_O=BLOCK_O, ADAMW=adamw, NESTEROV=bool(nesterov), PRECISION=precision,
    )
