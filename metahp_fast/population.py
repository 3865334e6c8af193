"""The population: K candidate MLPs of one architecture, each with its own hyperparameters, trained together.

All candidates see the same minibatch each step (common random numbers); their stacked weights, optimizer
state and hyperparameters live in one :class:`PopulationState` that a backend updates in place.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .backends import get_backend, resolve_name
from .backends.base import PRECISIONS, ModelSpec, PopulationState, run_steps, steps_per_launch
from .backends.reference_backend import _ACT
from .backends.torch_backend import forward, loss_only
from .optimizers import OPTIMIZERS, hparam_specs
from .validation import (as_tensor, check_batch, check_choice, check_device, check_hparam, check_hparams, check_size,
                         check_spec)

LrSchedule = Union[Callable[[int, Tensor], Union[Tensor, float]], Tensor]
STATE_DICT_VERSION = 1


class HParams(dict):
    """The population's hyperparameters: name -> (K,) tensor. Assigning a key validates the value and writes
    it into the existing tensor, so backends see it at the next step without recompiling or syncing."""

    def __init__(self, values: dict[str, Tensor], optimizer: str):
        super().__init__(values)
        self._specs = hparam_specs(optimizer)

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in self._specs:
            raise ValueError(f"unknown hyperparameter {name!r}; this population takes {sorted(self._specs)}")
        cur = self[name]
        super().__getitem__(name).copy_(check_hparam(name, value, self._specs[name], cur.shape[0], cur.device,
                                                     cur.dtype))

    def update(self, other: Mapping[str, Any] = (), **kw) -> None:  # type: ignore[override]
        items = {**dict(other), **kw}
        for name, value in items.items():  # validate all before writing any
            if name not in self._specs:
                raise ValueError(f"unknown hyperparameter {name!r}; this population takes {sorted(self._specs)}")
            cur = self[name]
            check_hparam(name, value, self._specs[name], cur.shape[0], cur.device, cur.dtype)
        for name, value in items.items():
            self[name] = value


def _init_params(spec: ModelSpec, size: int, seed: int, independent: bool, init_scale: Tensor,
                 device: torch.device, dtype: torch.dtype) -> list[Tensor]:
    """Initial weights as ``nn.Linear`` draws them (uniform in +-1/sqrt(fan_in)), from a CPU generator so the
    same seed gives the same weights on every device; shared by all candidates unless ``independent``."""
    gen = torch.Generator().manual_seed(int(seed))
    draws = size if independent else 1
    params = []
    for shape in spec.shapes():
        bound = 1.0 / math.sqrt(shape[0] if len(shape) == 2 else params[-1].shape[1])
        t = (torch.rand((draws,) + shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        t = t.to(device=device, dtype=dtype).expand((size,) + shape).clone()
        params.append(t * init_scale.view((-1,) + (1,) * len(shape)))
    return params


class Population:
    """K candidate MLPs ``layers=[d_in, h1, ..., n_out]`` trained together, one set of hyperparameters each.

    Args:
        layers: widths from the input features to the outputs (classes for cross-entropy).
        size: the number of candidates K.
        optimizer: ``"sgd"`` (lr, momentum, weight_decay) or ``"adamw"`` (lr, beta1, beta2, eps,
            weight_decay), with torch.optim's exact semantics; any of them may also take ``init_scale``.
        hparams: name -> scalar or (K,) values; missing names take torch.optim's defaults.
        nesterov: Nesterov momentum (SGD).
        activation: hidden nonlinearity, one of relu, tanh, sigmoid, gelu.
        loss: ``"cross_entropy"`` (integer labels) or ``"mse"`` (float targets of width n_out).
        seed: seeds the initial weights.
        init: ``"shared"`` (every candidate starts from the same draw, scaled by its ``init_scale``) or
            ``"independent"`` (one draw per candidate).
        device, dtype: where and in what precision the population lives (default CPU, float32).
        backend: ``"auto"``, ``"torch"``, ``"reference"`` or ``"triton"`` (see :mod:`metahp_fast.backends`).
        precision: the triton backend's dot precision: ``"tf32"`` (its default, or ``$METAHP_TRITON_PRECISION``),
            ``"ieee"`` (exact fp32 products, for checks) or ``"bf16"`` (bf16 inputs, fp32 accumulation); master
            weights and optimizer state stay in ``dtype``. The torch and reference backends accept it and compute
            in ``dtype`` regardless, so code written for a GPU runs unchanged on the CPU.

    Dead candidates: a candidate whose minibatch loss is not finite is marked dead (``alive[k]`` False) and
    never updated again; :meth:`step` reports ``inf`` for it and :meth:`evaluate` ``inf`` loss and ``nan``
    accuracy. The other candidates train exactly as they would without it.
    """

    def __init__(self, layers: Sequence[int], size: int, optimizer: str = "sgd",
                 hparams: Optional[Mapping[str, Any]] = None, *, nesterov: bool = False, activation: str = "relu",
                 loss: str = "cross_entropy", seed: int = 0, init: str = "shared",
                 device: Union[str, torch.device, None] = None, dtype: torch.dtype = torch.float32,
                 backend: str = "auto", precision: Optional[str] = None):
        spec = check_spec(layers, activation, loss, optimizer, nesterov)
        size = check_size(size)
        check_choice("init", init, ("shared", "independent"))
        device = check_device(device)
        dtype = _check_dtype(dtype)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int; got {seed!r}")
        resolve_name(backend, device)
        hp = check_hparams(hparams, optimizer, size, device, dtype)
        params = _init_params(spec, size, seed, init == "independent", hp["init_scale"], device, dtype)
        self._setup(spec, params, hp, backend, precision)

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Sequential], optimizer: str = "sgd",
                     hparams: Optional[Mapping[str, Any]] = None, *, nesterov: bool = False,
                     loss: str = "cross_entropy", backend: str = "auto",
                     precision: Optional[str] = None) -> "Population":
        """A population whose candidate k starts from the weights of ``modules[k]``, a ``nn.Sequential`` of
        ``Linear`` layers with one kind of activation between them (the inverse of :meth:`to_module`); the
        other arguments as for the constructor."""
        if isinstance(modules, nn.Module) or not isinstance(modules, Sequence) or len(modules) == 0:
            raise ValueError("modules must be a non-empty list of nn.Sequential MLPs")
        layers, activation = _parse_mlp(modules[0], 0)
        for k, m in enumerate(modules[1:], 1):
            if _parse_mlp(m, k) != (layers, activation):
                raise ValueError(f"modules[{k}] has a different architecture from modules[0] "
                                 f"({layers}, {activation})")
        first = next(modules[0].parameters())
        device, dtype = first.device, first.dtype
        if any(p.dtype != dtype or p.device != device for m in modules for p in m.parameters()):
            raise TypeError(f"all modules must share one dtype and device ({dtype} on {device})")
        spec = check_spec(layers, activation, loss, optimizer, nesterov)
        resolve_name(backend, device)
        hp = check_hparams(hparams, optimizer, len(modules), device, dtype)
        linears = [[mod for mod in m if isinstance(mod, nn.Linear)] for m in modules]
        params = []
        with torch.no_grad():
            for i in range(len(linears[0])):
                params.append(torch.stack([lin[i].weight.t() for lin in linears]).contiguous())
                params.append(torch.stack([lin[i].bias for lin in linears]).contiguous())
        pop = cls.__new__(cls)
        pop._setup(spec, params, hp, backend, precision)
        return pop

    def _setup(self, spec: ModelSpec, params: list[Tensor], hp: dict[str, Tensor], backend: str,
               precision: Optional[str] = None) -> None:
        if precision is not None:
            check_choice("precision", precision, PRECISIONS)
        size, device, dtype = params[0].shape[0], params[0].device, params[0].dtype
        self._backend = get_backend(backend, spec, device, dtype)
        self._precision = precision
        if precision is not None and hasattr(self._backend, "precision"):
            self._backend.precision = precision
        state_names = OPTIMIZERS[spec.optimizer].state_names
        self._state = PopulationState(
            spec=spec, params=params,
            opt_state={name: [torch.zeros_like(p) for p in params] for name in state_names},
            step_count=torch.zeros(size, dtype=torch.int64, device=device),
            hparams=HParams(hp, spec.optimizer),
            alive=torch.ones(size, dtype=torch.bool, device=device))
        self.steps_done = 0

    # ---------------------------------------------------------------- properties
    @property
    def size(self) -> int:
        """The number of candidates K."""
        return self._state.size

    @property
    def spec(self) -> ModelSpec:
        return self._state.spec

    @property
    def layers(self) -> tuple[int, ...]:
        return self._state.spec.layers

    @property
    def device(self) -> torch.device:
        return self._state.alive.device

    @property
    def dtype(self) -> torch.dtype:
        return self._state.params[0].dtype

    @property
    def backend(self) -> str:
        """The name of the backend that runs :meth:`step`."""
        return self._backend.name

    @property
    def precision(self) -> str:
        """The dot precision the backend runs with: the triton backend's (``"ieee"`` under the interpreter),
        ``"ieee"`` for the torch and reference backends (torch's own matmul settings apply)."""
        return getattr(self._backend, "precision", "ieee")

    @property
    def alive(self) -> Tensor:
        """(K,) bool: False for candidates that diverged."""
        return self._state.alive

    @property
    def hparams(self) -> HParams:
        """name -> (K,) tensor; assign a key (or the whole dict) between steps to change hyperparameters."""
        return self._state.hparams

    @hparams.setter
    def hparams(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise TypeError(f"hparams must be a dict; got {type(values).__name__}")
        self._state.hparams.update(values)

    @property
    def params(self) -> list[Tensor]:
        """[W0 (K, in, out), b0 (K, out), W1, b1, ...]: the live stacked parameters (do not resize)."""
        return self._state.params

    @property
    def optimizer_state(self) -> dict[str, list[Tensor]]:
        """Per state name (momentum_buffer; or exp_avg, exp_avg_sq), tensors shaped like :attr:`params`."""
        return self._state.opt_state

    @property
    def step_count(self) -> Tensor:
        """(K,) int64: updates applied to each candidate (AdamW's bias-correction step)."""
        return self._state.step_count

    def __repr__(self) -> str:
        s = self.spec
        return (f"Population(layers={list(s.layers)}, size={self.size}, optimizer={s.optimizer!r}, "
                f"backend={self.backend!r}, device={self.device}, dtype={self.dtype}, "
                f"alive={int(self.alive.sum())}/{self.size}, steps_done={self.steps_done})")

    # ---------------------------------------------------------------- training
    def step(self, x: Tensor, y: Tensor, lr: Optional[Tensor] = None, check: bool = True) -> Tensor:
        """One step of every live candidate on the shared minibatch (x, y); returns the (K,) minibatch losses
        before the update (``inf`` for dead candidates). ``lr`` (K,) overrides the learning rates for this
        step only (schedules).

        ``check=False`` skips the checks of the data's values (NaN/inf, label range), which cost one host
        sync per step on a GPU: for a loop over batches already checked, e.g. slices of data passed once
        through :meth:`check_data` (shapes, dtypes and devices are always checked)."""
        if check:
            x, y = check_batch(x, y, self.spec, self.device, self.dtype)
        else:
            x, y = check_batch(x, y, self.spec, self.device, self.dtype, values=False)
        if lr is not None:
            lr = check_hparam("lr", lr, hparam_specs(self.spec.optimizer)["lr"], self.size, self.device, self.dtype)
        return self._step(x, y, lr)

    def check_data(self, x: Any, y: Any) -> tuple[Tensor, Tensor]:
        """Check a whole dataset (x, y) once, as :meth:`step` would; returns it as tensors to train on."""
        return check_batch(x, y, self.spec, self.device, self.dtype)

    def _step(self, x: Tensor, y: Tensor, lr: Optional[Tensor]) -> Tensor:
        losses = self._backend.step(self._state, x, y, lr)
        self.steps_done += 1
        return losses

    def fit(self, x: Any, y: Any, steps: int, batch_size: int = 128, seed: int = 0,
            lr_schedule: Optional[LrSchedule] = None, progress: bool = True, x_val: Any = None,
            y_val: Any = None, eval_every: Optional[int] = None) -> dict[str, Any]:
        """Train for ``steps`` steps on shuffled minibatches of (x, y) (epochs without replacement, seeded),
        all candidates seeing the same batches.

        ``lr_schedule`` is a callable ``(step, base_lr) -> lr`` returning (K,) learning rates or a multiplier,
        or a tensor of shape (steps,) (multipliers) or (steps, K) (learning rates). With validation data, the
        population is evaluated every ``eval_every`` steps (default: 10 times) and at the end.

        Returns a history: ``"loss"`` (steps, K) minibatch losses, and with validation data ``"eval_step"``,
        ``"val_loss"`` and (cross-entropy) ``"val_accuracy"``, each (evaluations, K)."""
        x, y = check_batch(x, y, self.spec, self.device, self.dtype)
        has_val = x_val is not None or y_val is not None
        if has_val:
            x_val, y_val = check_batch(x_val, y_val, self.spec, self.device, self.dtype, names=("x_val", "y_val"))
        steps = _positive_int("steps", steps)
        batch_size = _positive_int("batch_size", batch_size)
        schedule = self._check_schedule(lr_schedule, steps)
        eval_every = max(1, steps // 10) if eval_every is None else _positive_int("eval_every", eval_every)
        n, bs = x.shape[0], min(batch_size, x.shape[0])
        batches = _Batches(n, bs, torch.Generator().manual_seed(int(seed)), self.device)
        span_cap = steps_per_launch(self._backend, self.spec, bs)
        base_lr = self.hparams["lr"].clone()
        hist: dict[str, Any] = {"loss": [], "eval_step": [], "val_loss": [], "val_accuracy": []}
        bar = _progress(steps, progress, f"training {self.size} candidates")
        t = 0
        while t < steps:
            # a span of steps up to the next evaluation, as many as the backend trains in one call
            end = min(steps, t + span_cap, (t // eval_every + 1) * eval_every if has_val else steps)
            idx = batches.take(end - t)
            lrs = (None if schedule is None else schedule(t, base_lr).unsqueeze(0) if end - t == 1
                   else torch.stack([schedule(s, base_lr) for s in range(t, end)]))
            ok = None if not callable(lr_schedule) else (lrs >= 0) & torch.isfinite(lrs)
            if ok is not None and not bool(ok.all()):  # one check (one host sync) a span
                bad = int((~ok).any(1).nonzero()[0]) + t
                raise ValueError(f"lr_schedule returned a negative or non-finite learning rate for step {bad} "
                                 f"({self.steps_done} steps trained so far, none after them); it must return "
                                 "finite values >= 0")
            hist["loss"].append(run_steps(self._backend, self._state, x, y, idx, lrs))
            self.steps_done += end - t
            t = end
            if has_val and (t % eval_every == 0 or t == steps):
                m = self.evaluate(x_val, y_val)
                hist["eval_step"].append(self.steps_done)
                hist["val_loss"].append(m["loss"])
                if "accuracy" in m:
                    hist["val_accuracy"].append(m["accuracy"])
                if bar is not None:
                    best = int(torch.argmin(m["loss"]))
                    bar.set_postfix(best_val_loss=f"{m['loss'][best].item():.4f}", alive=int(self.alive.sum()))
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        out: dict[str, Any] = {"loss": torch.cat(hist["loss"]).cpu()}
        if has_val:
            out["eval_step"] = hist["eval_step"]
            out["val_loss"] = torch.stack(hist["val_loss"]).cpu()
            if hist["val_accuracy"]:
                out["val_accuracy"] = torch.stack(hist["val_accuracy"]).cpu()
        return out

    def _check_schedule(self, schedule: Optional[LrSchedule], steps: int):
        """Turn ``lr_schedule`` into a function ``(t, base_lr) -> (K,) lr``, checking what can be checked."""
        if schedule is None:
            return None
        if isinstance(schedule, Tensor):
            s = schedule.to(self.device, self.dtype)
            if s.shape not in ((steps,), (steps, self.size)):
                raise ValueError(f"lr_schedule tensor must have shape ({steps},) or ({steps}, {self.size}); "
                                 f"got {tuple(s.shape)}")
            if not (torch.isfinite(s).all() and (s >= 0).all()):
                raise ValueError("lr_schedule must hold finite values >= 0")
            return (lambda t, base: base * s[t]) if s.dim() == 1 else (lambda t, base: s[t])
        if not callable(schedule):
            raise TypeError("lr_schedule must be a callable (step, base_lr) -> lr or a tensor")

        def call(t: int, base: Tensor) -> Tensor:
            lr = schedule(t, base)
            lr = base * lr if not isinstance(lr, Tensor) else lr.to(self.device, self.dtype)
            if lr.shape != (self.size,):
                raise ValueError(f"lr_schedule returned shape {tuple(lr.shape)}; expected ({self.size},)")
            return lr
        return call

    # ---------------------------------------------------------------- evaluation and export
    @torch.no_grad()
    def forward(self, x: Any) -> Tensor:
        """Outputs (K, B, n_out) of every candidate on x (B, d_in)."""
        x = as_tensor("x", x, self.device, self.dtype)
        if x.dim() != 2 or x.shape[1] != self.layers[0]:
            raise ValueError(f"x must have shape (batch, {self.layers[0]}); got {tuple(x.shape)}")
        return forward(self._state.params, x, self.spec.activation)

    @torch.no_grad()
    def evaluate(self, x: Any, y: Any, batch_size: int = 0) -> dict[str, Tensor]:
        """Mean loss (K,) and, for cross-entropy, accuracy (K,) of every candidate on (x, y), computed in
        chunks of ``batch_size`` rows (default: sized to keep K * rows * hidden width under ~32M values)."""
        x, y = check_batch(x, y, self.spec, self.device, self.dtype)
        n = x.shape[0]
        if batch_size != 0:  # 0: sized automatically
            batch_size = _positive_int("batch_size", batch_size)
        chunk = batch_size or max(1, (1 << 25) // (self.size * max(self.layers[1:])))
        loss = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        correct = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for i in range(0, n, chunk):
            out = forward(self._state.params, x[i:i + chunk], self.spec.activation)
            loss += loss_only(out, y[i:i + chunk], self.spec.loss) * out.shape[1]
            if self.spec.loss == "cross_entropy":
                correct += (out.argmax(-1) == y[i:i + chunk]).sum(1)
        dead = ~self.alive
        res = {"loss": (loss / n).masked_fill(dead, math.inf)}
        if self.spec.loss == "cross_entropy":
            res["accuracy"] = (correct / n).masked_fill(dead, math.nan)
        return res

    def to_module(self, i: int) -> nn.Sequential:
        """Candidate i as a plain ``nn.Sequential`` (a copy), whose outputs equal the population's."""
        i = self._check_index(i)
        act = _ACT[self.spec.activation]
        mods: list[nn.Module] = []
        n = len(self.params) // 2
        with torch.no_grad():
            for j in range(n):
                lin = nn.Linear(self.layers[j], self.layers[j + 1], device=self.device, dtype=self.dtype)
                lin.weight.copy_(self.params[2 * j][i].t())
                lin.bias.copy_(self.params[2 * j + 1][i])
                mods.append(lin)
                if j < n - 1:
                    mods.append(act())
        return nn.Sequential(*mods)

    def _check_index(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, int) or not -self.size <= i < self.size:
            raise IndexError(f"candidate index must be an int in [0, {self.size}); got {i!r}")
        return i % self.size

    def select(self, indices: Union[Sequence[int], Sequence[bool], Tensor]) -> "Population":
        """A new population of the chosen candidates (weights, optimizer state, hyperparameters, step counts
        and alive flags copied), on the same backend; this one is left as it is. ``indices`` are candidate
        numbers, or a (K,) bool mask such as ``pop.alive``. Tuners use it to drop candidates from the batch."""
        idx = torch.as_tensor(indices)
        if idx.numel() == 0:
            raise ValueError("indices must choose at least one candidate")
        if idx.dtype == torch.bool:
            if idx.shape != (self.size,):
                raise ValueError(f"a bool mask for indices must have shape ({self.size},), one flag per candidate; "
                                 f"got {tuple(idx.shape)}")
            idx = idx.cpu().nonzero().flatten()
        elif idx.dtype.is_floating_point or idx.dtype.is_complex:
            raise TypeError(f"indices must be candidate numbers (ints) or a bool mask; got dtype {idx.dtype}")
        idx = idx.long().flatten()
        if idx.numel() == 0:
            raise ValueError("indices must choose at least one candidate")
        if int(idx.min()) < -self.size or int(idx.max()) >= self.size:
            raise IndexError(f"indices must lie in [0, {self.size}); got {idx.tolist()}")
        idx = (idx % self.size).to(self.device)
        s = self._state
        pop = Population.__new__(Population)
        pop._setup(s.spec, [p.index_select(0, idx) for p in s.params],
                   {k: v.index_select(0, idx) for k, v in s.hparams.items()}, self.backend, self._precision)
        for name, ts in s.opt_state.items():
            for dst, src in zip(pop._state.opt_state[name], ts):
                dst.copy_(src.index_select(0, idx))
        pop._state.step_count.copy_(s.step_count.index_select(0, idx))
        pop._state.alive.copy_(s.alive.index_select(0, idx))
        pop.steps_done = self.steps_done
        return pop

    # ---------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """A copy of everything needed to resume bit-identically: architecture, parameters, optimizer state,
        hyperparameters, step counts, alive flags and the number of steps done."""
        s = self._state
        return {
            "version": STATE_DICT_VERSION,
            "spec": {"layers": list(s.spec.layers), "activation": s.spec.activation, "loss": s.spec.loss,
                     "optimizer": s.spec.optimizer, "nesterov": s.spec.nesterov},
            "params": [p.detach().clone() for p in s.params],
            "optimizer_state": {k: [t.clone() for t in v] for k, v in s.opt_state.items()},
            "step_count": s.step_count.clone(),
            "hparams": {k: v.clone() for k, v in s.hparams.items()},
            "alive": s.alive.clone(),
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a population of the same architecture and size (checked first;
        nothing changes unless all of it fits)."""
        if not isinstance(state, Mapping) or "params" not in state or "spec" not in state:
            raise ValueError("state must be a dict made by Population.state_dict()")
        if state.get("version") != STATE_DICT_VERSION:
            raise ValueError(f"state has version {state.get('version')!r}; this library reads {STATE_DICT_VERSION}")
        s = self._state
        mine = self.state_dict()
        if dict(state["spec"]) != mine["spec"]:
            raise ValueError(f"state is for {dict(state['spec'])}, not this population's {mine['spec']}")

        def flat(d):
            if isinstance(d, Tensor):
                return [d]
            if isinstance(d, Mapping):
                return [t for k in sorted(d) for t in flat(d[k])]
            if isinstance(d, (list, tuple)):
                return [t for v in d for t in flat(v)]
            return []
        keys = ("params", "optimizer_state", "step_count", "hparams", "alive")
        for key in keys:
            src, dst = flat(state[key]), flat(mine[key])
            if len(src) != len(dst) or any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(src, dst)):
                raise ValueError(f"state[{key!r}] does not match this population's shapes and dtypes")
        live = flat([s.params, s.opt_state, s.step_count, dict(s.hparams), s.alive])
        src_all = [t for key in keys for t in flat(state[key])]
        with torch.no_grad():
            for dst, src in zip(live, src_all):
                dst.copy_(src)
        self.steps_done = int(state["steps_done"])

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (``torch.save(pop)``, multiprocessing) keeps the :meth:`state_dict` and the backend's name;
        the backend's caches (the torch backend's scratch buffers) are rebuilt, not saved."""
        return {"state_dict": self.state_dict(), "backend": self.backend, "precision": self._precision}

    def __setstate__(self, state: dict[str, Any]) -> None:
        sd = state["state_dict"]  # fresh tensors (unpickled, or a state_dict() copy): used as they are
        spec = ModelSpec(**{**sd["spec"], "layers": tuple(sd["spec"]["layers"])})
        try:
            self._setup(spec, sd["params"], sd["hparams"], state["backend"], state["precision"])
        except (ValueError, TypeError, ImportError, RuntimeError) as e:  # e.g. triton, loaded onto the CPU
            warnings.warn(f"backend {state['backend']!r} cannot run this population where it was loaded ({e}); "
                          "using backend 'auto'", stacklevel=2)
            self._setup(spec, sd["params"], sd["hparams"], "auto", state["precision"])
        self.load_state_dict(sd)

    def __deepcopy__(self, memo):
        pop = Population.__new__(Population)
        pop.__setstate__(self.__getstate__())
        return pop


class _Batches:
    """The minibatch row indices of :meth:`Population.fit`: epochs of a seeded permutation of range(n), ``bs``
    rows per step (a short tail is dropped), handed out a span of steps at a time on the population's device.

    Each epoch's permutation is drawn on the CPU (seeded) and moved to the device once; on CUDA through pinned
    memory without blocking the host: a plain copy would wait for every queued step, and the GPU would idle
    while the next launches are prepared."""

    def __init__(self, n: int, bs: int, gen: torch.Generator, device: torch.device):
        self.n, self.bs, self.gen, self.device = n, bs, gen, device
        self.order, self.pos = torch.empty(0, dtype=torch.int64), n

    def take(self, steps: int) -> Tensor:
        """The next ``steps`` minibatches as a (steps, bs) int64 tensor on the device."""
        rows = []
        for _ in range(steps):
            if self.pos + self.bs > self.n:
                perm = torch.randperm(self.n, generator=self.gen)
                cuda = self.device.type == "cuda"
                self.order = (perm.pin_memory() if cuda else perm).to(self.device, non_blocking=cuda)
                self.pos = 0
            rows.append(self.order[self.pos:self.pos + self.bs])
            self.pos += self.bs
        return rows[0].unsqueeze(0) if steps == 1 else torch.stack(rows)


def _parse_mlp(m: Any, k: int) -> tuple[tuple[int, ...], str]:
    """(layers, activation) of an ``nn.Sequential`` of Linear layers with one activation kind between them."""
    if not isinstance(m, nn.Sequential):
        raise TypeError(f"modules[{k}] must be an nn.Sequential; got {type(m).__name__}")
    mods = list(m)
    kinds = {cls: name for name, cls in _ACT.items()}
    linears, acts = mods[0::2], mods[1::2]
    ok = len(mods) % 2 == 1 and all(isinstance(l, nn.Linear) and l.bias is not None for l in linears) \
        and all(type(a) in kinds for a in acts) and len({type(a) for a in acts}) <= 1
    if not ok:
        raise ValueError(f"modules[{k}] must alternate nn.Linear (with bias) and one kind of activation "
                         f"({', '.join(c.__name__ for c in kinds)}); got {[type(x).__name__ for x in mods]}")
    approx = [a for a in acts if getattr(a, "approximate", "none") != "none"]
    if approx:  # the backends compute the exact GELU: a tanh-approximated one would silently change the model
        raise ValueError(f"modules[{k}] has {approx[0]!r}; the population computes the exact GELU, nn.GELU()")
    for a, b in zip(linears[:-1], linears[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"modules[{k}] has mismatched Linear sizes {a.out_features} -> {b.in_features}")
    layers = (linears[0].in_features,) + tuple(l.out_features for l in linears)
    return layers, kinds[type(acts[0])] if acts else "relu"


def _check_dtype(dtype: Any) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype such as torch.float32; got {dtype!r}")
    return dtype


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int; got {v!r}")
    return v


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but stay usable without it
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=False)
