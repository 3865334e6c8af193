"""Shared benchmark setup: shapes, data, hyperparameters, one stepper per method, timing and tables.

A *stepper* trains K candidates one step on a shared minibatch when called as ``stepper(x, y)`` and gives
``params()`` in the population layout ``[W0 (K, in, out), b0 (K, out), ...]``, so that every method can be
checked against the reference."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from metahp_fast import Population
from metahp_fast.backends import triton_available
from metahp_fast.backends.torch_backend import functional_step

SHAPES = {"digits": (64, 128, 10), "mnist": (784, 128, 10)}
METHODS = ("reference", "torch.func", "torch", "torch.compile", "triton")
BACKEND_OF = {"reference": "reference", "torch": "torch", "triton": "triton"}
RESULTS: list[dict] = []  # rows for pivot_table, appended by the pytest suite and printed at its end


@dataclass(frozen=True)
class Case:
    """One benchmark configuration: model, population size and training rule."""

    shape: str
    K: int
    optimizer: str = "sgd"
    layers: tuple = ()
    batch: int = 128
    nesterov: bool = False
    loss: str = "cross_entropy"
    dead: bool = False  # candidate 1 gets lr=1e6 (its loss turns inf on the 5th step)

    def __post_init__(self):
        if not self.layers:
            object.__setattr__(self, "layers", SHAPES[self.shape])

    @property
    def name(self) -> str:
        extra = ("-nesterov" if self.nesterov else "") + ("-mse" if self.loss == "mse" else "") + \
            ("-dead" if self.dead else "")
        return f"{self.shape}-{'-'.join(map(str, self.layers))}-{self.optimizer}{extra}-K{self.K}"


def sync(device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def make_batches(case: Case, device, n: int = 8, seed: int = 0, dtype=torch.float32) -> list[tuple[Tensor, Tensor]]:
    """``n`` fixed minibatches (x, y) for ``case`` on ``device``, to rotate through while timing
    (``itertools.cycle`` them)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(case.batch, case.layers[0], generator=gen, dtype=dtype)
        if case.loss == "cross_entropy":
            y = torch.randint(0, case.layers[-1], (case.batch,), generator=gen)
        else:
            y = torch.randn(case.batch, case.layers[-1], generator=gen, dtype=dtype)
        out.append((x.to(device), y.to(device)))
    return out


def make_hparams(case: Case, dtype=torch.float64) -> dict[str, Tensor]:
    """Distinct per-candidate hyperparameters (learning rates log-spaced over the population)."""
    K = case.K
    if case.optimizer == "sgd":
        hp = {"lr": torch.logspace(-3, -1, K, dtype=dtype), "momentum": torch.linspace(0.5, 0.95, K, dtype=dtype),
              "weight_decay": torch.linspace(0, 1e-3, K, dtype=dtype)}
    else:
        hp = {"lr": torch.logspace(-4, -2, K, dtype=dtype), "beta1": torch.linspace(0.8, 0.95, K, dtype=dtype),
              "beta2": torch.linspace(0.99, 0.999, K, dtype=dtype),
              "weight_decay": torch.linspace(0, 0.05, K, dtype=dtype)}
    if case.dead and K > 1:
        hp["lr"][1] = 1e6
    return hp


def make_population(case: Case, backend: str, device, dtype=torch.float32, seed: int = 0,
                    precision: Optional[str] = None) -> Population:
    """The population for ``case`` on ``backend`` (the same initial weights on every backend for a seed);
    ``precision``: the triton kernels' dot precision (``Population(precision=...)``)."""
    return Population(list(case.layers), case.K, case.optimizer, make_hparams(case), nesterov=case.nesterov,
                      loss=case.loss, seed=seed, device=device, dtype=dtype, backend=backend, precision=precision)


class PopulationStepper:
    """``Population.step`` (the public API) on one backend, with ``check=False``: the benchmark's batches are
    valid by construction, the other methods check nothing either, and the value checks would add a host
    sync per step on a GPU (results committed before this change include them)."""

    def __init__(self, pop: Population):
        self.pop = pop

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self.pop.step(x, y, check=False)

    def params(self) -> list[Tensor]:
        return self.pop.params

    def alive(self) -> Optional[Tensor]:
        return self.pop.alive


class CompiledStepper:
    """The torch backend's pure ``functional_step`` under ``torch.compile``, its outputs carried to the next
    step (no copy back into a population)."""

    def __init__(self, pop: Population):
        s = pop._state
        self.spec, self.hparams = s.spec, dict(s.hparams)
        self.state = (s.params, s.opt_state, s.step_count, s.alive)
        self.fn = torch.compile(functional_step)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        p, o, c, a = self.state
        losses, p, o, c, a = self.fn(p, o, c, self.hparams, a, x, y, self.spec)
        self.state = (p, o, c, a)
        return losses

    def params(self) -> list[Tensor]:
        return self.state[0]

    def alive(self) -> Optional[Tensor]:
        return self.state[3]


class FuncStepper:
    """The PyTorch way to train an ensemble: ``stack_module_state`` + ``vmap(grad_and_value(loss of
    functional_call))`` over the candidate axis with the shared minibatch, then an in-place SGD-momentum
    (or AdamW) update of the stacked tensors with per-candidate hyperparameters; no Python loop over
    candidates and no dead-candidate handling. Starts from the population's shared initial weights."""

    def __init__(self, pop: Population):
        loss, self.optimizer, self.nesterov = pop.spec.loss, pop.spec.optimizer, pop.spec.nesterov
        base = pop.to_module(0)  # init="shared": every candidate starts from candidate 0's weights
        stacked, _ = torch.func.stack_module_state([base] * pop.size)
        self.stacked = {name: p.detach() for name, p in stacked.items()}
        base = base.to("meta")

        def loss_fn(params, x, y):
            out = torch.func.functional_call(base, params, (x,))
            return F.cross_entropy(out, y) if loss == "cross_entropy" else F.mse_loss(out, y)
        self.grad_fn = torch.func.vmap(torch.func.grad_and_value(loss_fn), in_dims=(0, None, None))
        self.coef = {name: {h: v.view((-1,) + (1,) * (p.dim() - 1)) for h, v in pop.hparams.items()}
                     for name, p in self.stacked.items()}
        n_state = 1 if self.optimizer == "sgd" else 2
        self.opt_state = {name: [torch.zeros_like(p) for _ in range(n_state)] for name, p in self.stacked.items()}
        self.t = 0

    @torch.no_grad()
    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        grads, losses = self.grad_fn(self.stacked, x, y)
        self.t += 1
        for name, p in self.stacked.items():
            g, c = grads[name], self.coef[name]
            if self.optimizer == "sgd":
                (buf,) = self.opt_state[name]
                g.addcmul_(p, c["weight_decay"])
                buf.mul_(c["momentum"]).add_(g)
                p.addcmul_(g.addcmul_(buf, c["momentum"]) if self.nesterov else buf, c["lr"], value=-1)
            else:
                m, v = self.opt_state[name]
                b1, b2 = c["beta1"], c["beta2"]
                p.mul_(1 - c["lr"] * c["weight_decay"])
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g * (1 - b2))
                denom = (v.sqrt() / torch.sqrt(1 - b2 ** self.t)).add_(c["eps"])
                p.addcdiv_(m * (c["lr"] / (1 - b1 ** self.t)), denom, value=-1)
        return losses

    def params(self) -> list[Tensor]:
        return [p.mT if name.endswith("weight") else p for name, p in self.stacked.items()]

    def alive(self) -> Optional[Tensor]:
        return None  # not tracked: a diverged candidate just holds NaN


def make_stepper(method: str, case: Case, device, dtype=torch.float32, precision: Optional[str] = None):
    """A freshly initialized stepper for ``method`` (one of :data:`METHODS`) on ``case``; ``precision``
    as in :func:`make_population` (triton only)."""
    if method in BACKEND_OF:
        return PopulationStepper(make_population(case, BACKEND_OF[method], device, dtype, precision=precision))
    pop = make_population(case, "torch", device, dtype)
    if method == "torch.func":
        return FuncStepper(pop)
    if method == "torch.compile":
        return CompiledStepper(pop)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def skip_reason(method: str, device) -> Optional[str]:
    """Why ``method`` cannot be timed on ``device`` here, or None."""
    if method == "triton":
        if torch.device(device).type != "cuda":
            return "triton backend is timed on CUDA only (on CPU it runs in Triton's slow interpreter)"
        if not triton_available():
            return "triton is not installed"
    return None


def time_steps(stepper: Callable, batches: Iterator, device, steps: int) -> float:
    """Seconds for ``steps`` steps taking minibatches from the endless iterator ``batches``, with the device
    synchronized before and after."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        stepper(*next(batches))
    sync(device)
    return time.perf_counter() - t0


def fmt_rate(v: Optional[float]) -> str:
    """Candidate-steps/s to three significant figures, or a dash."""
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


RATIOS = (("torch", "reference"), ("torch", "torch.func"), ("triton", "torch"), ("triton", "torch.func"))


def pivot_table(rows: list[dict], value: str = "cand_steps_per_s", methods=METHODS, ratios=RATIOS) -> str:
    """A markdown table of candidate-steps/s: a line per (shape, optimizer, K), a column per method, then the
    ratios between methods. Each row of ``rows`` holds ``case`` (a :class:`Case`), ``method`` and the rate
    under the key ``value``."""
    cells: dict[tuple, dict[str, float]] = {}
    for r in rows:
        c = r["case"]
        key = (c.shape, "-".join(map(str, c.layers)), c.optimizer, c.K)
        cells.setdefault(key, {})[r["method"]] = r[value]
    used = [m for m in methods if any(m in v for v in cells.values())]
    rat = [(a, b) for a, b in ratios if any(a in v and b in v for v in cells.values())]
    head = ["shape", "layers", "optimizer", "K"] + used + [f"{a}/{b}" for a, b in rat]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = list(SHAPES)
    for key in sorted(cells, key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k[2], k[3], k[1])):
        v = cells[key]
        row = [key[0], key[1], key[2], str(key[3])] + [fmt_rate(v.get(m)) for m in used]
        row += [f"{v[a] / v[b]:.2f}x" if a in v and b in v else "-" for a, b in rat]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
