"""The model every candidate of a population shares: its architecture (:class:`ModelSpec`), the batched maths
of K candidate MLPs at once (forward pass, activations and their derivatives, losses), and the conversions
between one candidate and a plain ``nn.Sequential``.

The batched functions are pure unless given a scratch allocator ``ws`` (the torch backend's workspace), so
autograd can differentiate them; every backend and :class:`~metahp_fast.population.Population` use these,
so a candidate means the same network everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
LOSSES = ("cross_entropy", "mse")
#: The ``nn.Module`` of each activation, for exporting candidates and reading modules back.
ACTIVATION_MODULES: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
                                                  "gelu": nn.GELU}

#: A scratch allocator ``ws(name, shape, like)``: an uninitialized tensor in ``like``'s dtype and device that
#: the caller may overwrite, the same one for the same name (the torch backend's ``Workspace``).
Scratch = Callable[[str, tuple[int, ...], Tensor], Tensor]


@dataclass(frozen=True)
class ModelSpec:
    """The architecture and training rule shared by every candidate of a population."""

    layers: tuple[int, ...]
    activation: str = "relu"
    loss: str = "cross_entropy"
    optimizer: str = "sgd"
    nesterov: bool = False

    def shapes(self) -> list[tuple[int, ...]]:
        """Per-candidate parameter shapes, in order W0, b0, W1, b1, ... with W of shape (in, out)."""
        out = []
        for i, o in zip(self.layers[:-1], self.layers[1:]):
            out += [(i, o), (o,)]
        return out


# ---------------------------------------------------------------- batched maths of K candidates
def _scratch(ws: Optional[Scratch], name: str, shape: tuple[int, ...], like: Tensor) -> Optional[Tensor]:
    """``ws``'s buffer for ``name``, or None (a fresh, differentiable result) without a workspace."""
    return None if ws is None else ws(name, tuple(shape), like)


def _scratch_as(ws: Optional[Scratch], name: str, like: Tensor) -> Optional[Tensor]:
    """``ws``'s buffer for ``name`` in ``like``'s layout (a transposed view where ``like`` is one, as :func:`bmm`'s
    narrow outputs are), so the products that read it run the same BLAS kernels, bit for bit; None without."""
    if ws is None:
        return None
    if like.is_contiguous() or not like.mT.is_contiguous():
        return ws(name, tuple(like.shape), like)
    return ws(name, tuple(like.mT.shape), like).mT


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


def bmm(a: Tensor, b: Tensor, bias: Optional[Tensor] = None, ws: Optional[Scratch] = None,
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
            ws: Optional[Scratch] = None, dropout: Optional[Sequence[Tensor]] = None):
    """Outputs (K, B, out) of every candidate on the shared input x (B, in); the shared x is broadcast
    (a stride-0 view), so the first layer is one batched GEMM.

    ``dropout`` (training only): per hidden layer, a (K, B, width) scale that multiplies its activation
    (:func:`dropout_scales`). With ``keep``, also returns the list of (pre-activation, activation, layer output)
    triples of the hidden layers that the backward pass needs (the output is the activation times its dropout
    scale, the activation itself without dropout). With a workspace ``ws``, every result lives in its buffers
    (and the activation overwrites the pre-activation, except for gelu, whose backward reads both)."""
    K = params[0].shape[0]
    h, saved = x.expand(K, *x.shape), []
    n = len(params) // 2
    for i in range(n):
        z = bmm(h, params[2 * i], params[2 * i + 1], ws, f"z{i}")
        if i == n - 1:
            return (z, saved) if keep else z
        out = None if ws is None else (z if activation != "gelu" else ws(f"a{i}", tuple(z.shape), z))
        a = activate(z, activation, out)
        h = a if dropout is None else torch.mul(a, dropout[i], out=_scratch_as(ws, f"d{i}", a))
        if keep:
            saved.append((z, a, h))
    raise AssertionError("unreachable")


def dropout_scales(p: Tensor, hidden: Sequence[int], batch: int, seed: int, gen: torch.Generator,
                   dtype: torch.dtype, out: Optional[list[Tensor]] = None) -> list[Tensor]:
    """Inverted-dropout scales for one training step: per hidden layer of size ``hidden[i]``, a (K, batch,
    hidden[i]) tensor in ``dtype`` on ``p``'s device, 0 (dropped) or ``1 / (1 - p_k)`` (kept), into ``out``'s
    tensors when given.

    Each unit draws a 16-bit uniform integer (random 64-bit words of ``gen``, a generator on ``p``'s device
    reseeded with ``seed``, read as four 16-bit quarters: 3-4x cheaper on a CPU than float draws) and is dropped
    when it falls below ``round(p_k * 2^16)``; p_k is used at that resolution (the scale too, so every unit's
    expectation is its activation exactly). A seed gives the same masks to every backend and dtype on one device;
    a candidate with p_k = 0 keeps every unit with scale exactly 1."""
    gen.manual_seed(int(seed))
    K = p.shape[0]
    levels = torch.round(p.double() * 65536)  # units dropped per 2^16 draws
    threshold = (levels - 32768).to(torch.int16).view(K, 1, 1)
    scale = (65536 / (65536 - levels)).to(dtype).view(K, 1, 1)
    result = []
    for i, width in enumerate(hidden):
        n = K * batch * width
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=p.device).random_(-2 ** 63, None, generator=gen)
        draws = words.view(torch.int16)[:n].view(K, batch, width)
        buf = out[i] if out is not None else torch.empty((K, batch, width), dtype=dtype, device=p.device)
        result.append(torch.ge(draws, threshold, out=buf).mul_(scale))
    return result


def loss_and_grad(out: Tensor, y: Tensor, loss: str, ws: Optional[Scratch] = None,
                  options: Optional[dict[str, Tensor]] = None) -> tuple[Tensor, Tensor]:
    """Per-candidate mean loss (K,) and its gradient with respect to ``out`` (K, B, C), the gradient in
    ``ws``'s buffer when a workspace is given.

    Cross-entropy takes integer labels (B,); MSE takes targets (B, C) and averages over all B*C entries, as
    ``F.cross_entropy`` and ``F.mse_loss`` do. ``options`` (see :data:`TRAIN_OPTIONS`) per candidate:
    ``label_smoothing`` (K,) as ``F.cross_entropy(label_smoothing=...)``; ``batch_size`` (K,) ints, candidate k's
    loss being the mean over the first ``batch_size[k]`` rows of the shared batch only."""
    if options and any(k in options for k in LOSS_OPTIONS):
        return _loss_and_grad_options(out, y, loss, options)
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


#: Per-candidate training options a population may carry (values (K,)), beside its hyperparameters: the
#: fused Triton kernels do not implement them, so populations with any take the per-layer path. ``dropout``:
#: each candidate's probability of zeroing a hidden unit in a training step (:func:`dropout_scales`).
TRAIN_OPTIONS = ("label_smoothing", "batch_size", "dropout")
#: The options that change the loss (:func:`loss_and_grad`); dropout changes the forward pass instead.
LOSS_OPTIONS = ("label_smoothing", "batch_size")


def _loss_and_grad_options(out: Tensor, y: Tensor, loss: str, options: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """:func:`loss_and_grad` with per-candidate label smoothing and batch sizes (rows weighted 1/b_k, or 0)."""
    K, B, C = out.shape
    rows = options.get("batch_size")
    if rows is None:
        w = torch.full((K, B), 1.0 / B, dtype=out.dtype, device=out.device)
    else:
        b = rows.clamp(max=B).to(out.dtype)
        w = (torch.arange(B, device=out.device) < b[:, None]).to(out.dtype) / b[:, None]
    if loss == "cross_entropy":
        lse = torch.logsumexp(out, -1, keepdim=True)
        logp = out - lse
        eps = options.get("label_smoothing")
        target = torch.zeros_like(out).scatter_(2, y.view(1, B, 1).expand(K, B, 1), 1.0)
        if eps is not None:
            e = eps.to(out.dtype).view(K, 1, 1)
            target = target * (1 - e) + e / C
        row_loss = -(target * logp).sum(2)
        g = (logp.exp() - target) * w[:, :, None]
    else:
        diff = out - y
        row_loss = diff.pow(2).mean(2)
        g = diff * (2.0 / C) * w[:, :, None]
    return (row_loss * w).sum(1), g


def loss_only(out: Tensor, y: Tensor, loss: str) -> Tensor:
    """Per-candidate mean loss (K,) without the gradient (evaluation)."""
    if loss == "cross_entropy":
        lse = torch.logsumexp(out, -1)
        return (lse - out.gather(2, y.view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(2)).mean(1)
    return (out - y).pow(2).mean(dim=(1, 2))


# ---------------------------------------------------------------- per-candidate hidden widths
def check_widths(widths: Any, layers: Sequence[int], size: int, activation: str) -> Tensor:
    """Per-candidate hidden widths as a (K, hidden layers) int64 CPU tensor: ``None`` (every layer full), a
    (K,) sequence (one hidden layer, or the same width for every hidden layer) or a (K, hidden layers) one,
    each width from 1 to its layer's size in ``layers``."""
    hidden = list(layers[1:-1])
    if widths is None:
        return torch.tensor([hidden] * size, dtype=torch.int64).reshape(size, len(hidden))
    w = torch.as_tensor(np.asarray(widths) if not isinstance(widths, Tensor) else widths.cpu())
    if not hidden:  # a linear model: nothing to narrow
        if w.numel():
            raise ValueError("widths needs at least one hidden layer in layers")
        return torch.zeros((size, 0), dtype=torch.int64)
    if w.dtype.is_floating_point or w.dtype == torch.bool or w.dtype.is_complex:
        raise TypeError(f"widths must be whole numbers; got dtype {w.dtype}")
    w = w.long()
    if w.dim() == 1 and w.shape[0] == size:
        w = w.unsqueeze(1).expand(size, len(hidden))
    if w.shape != (size, len(hidden)):
        raise ValueError(f"widths must have shape ({size},) or ({size}, {len(hidden)}) (candidates, hidden "
                         f"layers); got {tuple(w.shape)}")
    cap = torch.tensor(hidden)
    if bool((w < 1).any()) or bool((w > cap).any()):
        raise ValueError(f"widths must lie between 1 and each hidden layer's size {hidden}; got {w.tolist()}")
    if activation == "sigmoid" and bool((w < cap).any()):
        raise ValueError("widths below a layer's size need an activation with f(0) = 0 (relu, tanh, gelu): "
                         "a masked sigmoid unit would output 0.5")
    return w.contiguous()


def apply_widths(params: list[Tensor], widths: Tensor, rescale: bool) -> None:
    """Zero, in place, every weight into and out of the hidden units beyond each candidate's width. For relu,
    tanh and gelu (f(0) = 0) such a unit outputs 0, gets zero gradients and stays exactly zero under SGD and
    AdamW, so the candidate trains exactly as a narrower model. With ``rescale``, the layer after a narrowed
    one is rescaled from a draw for its full fan-in to one for the candidate's (nn.Linear's 1/sqrt(fan_in))."""
    with torch.no_grad():
        for layer in range(widths.shape[1]):
            w_in, b_in, w_out, b_out = params[2 * layer:2 * layer + 4]
            full = w_in.shape[2]
            k = widths[:, layer].to(w_in.device)
            mask = (torch.arange(full, device=w_in.device) < k[:, None]).to(w_in.dtype)  # (K, h)
            w_in.mul_(mask[:, None, :])
            b_in.mul_(mask)
            w_out.mul_(mask[:, :, None])
            if rescale:
                factor = torch.sqrt(full / k.to(torch.float64)).to(w_in.dtype)
                w_out.mul_(factor[:, None, None])
                b_out.mul_(factor[:, None])


def candidate_params(params: list[Tensor], widths: Tensor, k: int) -> tuple[tuple[int, ...], list[Tensor]]:
    """Candidate k's hidden layer sizes and its parameters cut to its widths, each with a leading axis of 1."""
    w = [int(v) for v in widths[k]]
    out = []
    for i in range(len(params) // 2):
        rows = slice(None) if i == 0 else slice(0, w[i - 1])
        cols = slice(0, w[i]) if i < len(w) else slice(None)
        out += [params[2 * i][k:k + 1, rows, cols], params[2 * i + 1][k:k + 1, cols]]
    return tuple(w), out


# ---------------------------------------------------------------- one candidate as an nn.Sequential
def sequential(spec: ModelSpec, params: list[Tensor], k: int, copy: bool = True,
               dropout: float = 0.0) -> nn.Sequential:
    """Candidate k of the stacked ``params`` as an ``nn.Sequential`` of ``Linear`` layers and ``spec``'s
    activation (each followed by ``nn.Dropout(dropout)`` when ``dropout`` > 0, the identity in eval mode): with
    its own copy of the weights (``copy``, an export), or with parameters that are views of the stacked storage
    (the reference backend trains through them, updating the population in place)."""
    mods: list[nn.Module] = []
    n = len(params) // 2
    for i in range(n):
        w, b = params[2 * i][k].t(), params[2 * i + 1][k]
        if copy:  # contiguous_format: a (1, n) slice's transpose counts as contiguous, and would stay a view
            w = w.detach().clone(memory_format=torch.contiguous_format)
            b = b.detach().clone(memory_format=torch.contiguous_format)
        lin = nn.Linear(spec.layers[i], spec.layers[i + 1], device="meta")  # no initial draw to overwrite
        lin.weight, lin.bias = nn.Parameter(w), nn.Parameter(b)
        mods.append(lin)
        if i < n - 1:
            mods.append(ACTIVATION_MODULES[spec.activation]())
            if dropout > 0:
                mods.append(nn.Dropout(float(dropout)))
    return nn.Sequential(*mods)


def sequential_view(spec: ModelSpec, params: list[Tensor], k: int) -> nn.Sequential:
    """An ``nn.Sequential`` whose parameters are views of candidate k's slices of ``params``."""
    return sequential(spec, params, k, copy=False)


def parse_sequential(m: Any, k: int) -> tuple[tuple[int, ...], str, float]:
    """(layers, activation, dropout) of ``modules[k]``, an ``nn.Sequential`` of Linear layers with one activation
    kind between them, each activation optionally followed by one ``nn.Dropout`` of one probability (0.0 without);
    a TypeError/ValueError naming ``modules[k]`` for anything else."""
    if not isinstance(m, nn.Sequential):
        raise TypeError(f"modules[{k}] must be an nn.Sequential; got {type(m).__name__}")
    kinds = {cls: name for name, cls in ACTIVATION_MODULES.items()}
    everything = list(m)
    drops = [j for j, x in enumerate(everything) if isinstance(x, nn.Dropout)]
    if any(j == 0 or type(everything[j - 1]) not in kinds for j in drops) or \
            len({float(everything[j].p) for j in drops}) > 1:
        raise ValueError(f"modules[{k}] may have an nn.Dropout only right after an activation, one probability "
                         f"for all; got {[type(x).__name__ for x in everything]}")
    dropout = float(everything[drops[0]].p) if drops else 0.0
    mods = [x for x in everything if not isinstance(x, nn.Dropout)]
    linears, acts = mods[0::2], mods[1::2]
    ok = len(mods) % 2 == 1 and all(isinstance(l, nn.Linear) and l.bias is not None for l in linears) \
        and all(type(a) in kinds for a in acts) and len({type(a) for a in acts}) <= 1
    if not ok:
        raise ValueError(f"modules[{k}] must alternate nn.Linear (with bias) and one kind of activation "
                         f"({', '.join(c.__name__ for c in kinds)}); got {[type(x).__name__ for x in mods]}")
    approx = [a for a in acts if isinstance(a, nn.GELU) and a.approximate != "none"]
    if approx:  # the backends compute the exact GELU: a tanh-approximated one would silently change the model
        raise ValueError(f"modules[{k}] has {approx[0]!r}; the population computes the exact GELU, nn.GELU()")
    for a, b in zip(linears[:-1], linears[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"modules[{k}] has mismatched Linear sizes {a.out_features} -> {b.in_features}")
    layers = (linears[0].in_features,) + tuple(l.out_features for l in linears)
    return layers, kinds[type(acts[0])] if acts else "relu", dropout


def stack_sequentials(modules: Sequence[nn.Sequential]) -> tuple[tuple[int, ...], str, list[Tensor], Tensor,
                                                                   list[float]]:
    """``(layers, activation, params, widths, dropout)`` of a list of ``nn.Sequential`` MLPs of one depth,
    activation, dtype and device, their weights stacked in the population's layout [W0 (K, in, out), b0 (K, out),
    ...]: hidden layers of different widths are zero-padded to the widest (``widths`` (K, hidden layers) records
    each one's); ``dropout`` lists each module's ``nn.Dropout`` probability (0.0 without). The inverse of
    :func:`sequential`."""
    if isinstance(modules, nn.Module) or not isinstance(modules, Sequence) or len(modules) == 0:
        raise ValueError("modules must be a non-empty list of nn.Sequential MLPs")
    parsed = [parse_sequential(m, k) for k, m in enumerate(modules)]
    (first_layers, activation, _) = parsed[0]
    for k, (lay, act, _) in enumerate(parsed[1:], 1):
        if (len(lay), lay[0], lay[-1], act) != (len(first_layers), first_layers[0], first_layers[-1], activation):
            raise ValueError(f"modules[{k}] has a different architecture from modules[0] ({first_layers}, "
                             f"{activation}): only hidden widths may differ")
    widths = torch.tensor([list(lay[1:-1]) for lay, _, _ in parsed], dtype=torch.int64).reshape(len(modules), -1)
    layers = (first_layers[0], *[int(v) for v in widths.max(0).values], first_layers[-1]) if widths.numel() \
        else first_layers
    check_widths(widths, layers, len(modules), activation)
    first = next(modules[0].parameters())
    device, dtype = first.device, first.dtype
    if any(p.dtype != dtype or p.device != device for m in modules for p in m.parameters()):
        raise TypeError(f"all modules must share one dtype and device ({dtype} on {device})")
    linears = [[x for x in m if isinstance(x, nn.Linear)] for m in modules]
    params = []
    with torch.no_grad():
        for i in range(len(layers) - 1):
            w = torch.zeros((len(modules), layers[i], layers[i + 1]), dtype=dtype, device=device)
            b = torch.zeros((len(modules), layers[i + 1]), dtype=dtype, device=device)
            for k, lin in enumerate(linears):
                w[k, :lin[i].in_features, :lin[i].out_features] = lin[i].weight.t()
                b[k, :lin[i].out_features] = lin[i].bias
            params += [w, b]
    return layers, activation, params, widths, [p[2] for p in parsed]


def layer_sizes(model: nn.Module) -> Optional[list[int]]:
    """The layer sizes ``[d_in, h1, ..., n_out]`` of an MLP (its own widths and depth), None for an ensemble."""
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)] if isinstance(model, nn.Sequential) else []
    return [lin[0].in_features, *(m.out_features for m in lin)] if lin else None


__all__ = ["layer_sizes", "ACTIVATIONS", "LOSSES", "ACTIVATION_MODULES", "ModelSpec", "Scratch", "activate",
           "activation_backward", "bmm", "forward", "dropout_scales", "loss_and_grad", "loss_only", "TRAIN_OPTIONS",
           "LOSS_OPTIONS", "sequential",
           "sequential_view", "parse_sequential", "stack_sequentials", "check_widths", "apply_widths",
           "candidate_params"]
