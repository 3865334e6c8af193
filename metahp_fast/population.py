"""The population: K candidate MLPs of one architecture, each with its own hyperparameters, trained together.

All candidates see the same minibatch each step (common random numbers); their stacked weights, optimizer
state and hyperparameters live in one :class:`PopulationState` that a backend updates in place.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .backends import get_backend, resolve_name
from .backends.base import PRECISIONS, PopulationState
from .batches import Batches
from .model import (TRAIN_OPTIONS, ModelSpec, apply_widths, candidate_params, check_widths, forward, loss_only,
                    sequential, stack_sequentials)
from .optimizers import OPTIMIZERS, hparam_specs
from .validation import (as_tensor, check_batch, check_choice, check_device, check_hparam, check_hparams,
                         check_indices, check_int, check_positive_int, check_size, check_spec)

LrSchedule = Union[Callable[[int, Tensor], Union[Tensor, float]], Tensor]
STATE_DICT_VERSION = 2


class HParams(dict):
    """The population's hyperparameters: name -> (K,) tensor. Assigning a key validates the value and writes
    it into the existing tensor, so backends see it at the next step without recompiling or syncing. The
    names are fixed (every step reads all of its optimizer's): removing one is refused."""

    def __init__(self, values: dict[str, Tensor], optimizer: str):
        super().__init__(values)
        self._optimizer = optimizer
        self._specs = hparam_specs(optimizer)

    def _refuse_removal(self, name: Any = None) -> None:
        which = f"hyperparameter {name!r}" if name is not None else "hyperparameters"
        raise TypeError(f"cannot remove {which}: a population with optimizer={self._optimizer!r} keeps all of "
                        f"{sorted(self)} (its steps read them); assign a new value instead, e.g. "
                        f"pop.hparams[{(name if name is not None else 'lr')!r}] = ...")

    def __delitem__(self, name: str) -> None:
        self._refuse_removal(name)

    def pop(self, name: str, *default: Any) -> Any:  # type: ignore[override]
        if name in self:
            self._refuse_removal(name)
        if default:
            return default[0]
        raise KeyError(name)

    def popitem(self) -> tuple[str, Tensor]:
        self._refuse_removal(next(reversed(self), None))
        raise AssertionError("unreachable")

    def clear(self) -> None:
        self._refuse_removal()

    def setdefault(self, name: str, default: Any = None) -> Tensor:  # type: ignore[override]
        if name not in self:
            self[name] = default  # refuses an unknown name, as assignment does
        return self[name]

    def __ior__(self, other: Mapping[str, Any]) -> "HParams":  # type: ignore[override]
        self.update(other)
        return self

    def __reduce__(self):
        """copy, deepcopy and pickle rebuild it from its items (dict's own way assigns into an empty one)."""
        return HParams, (dict(self), self._optimizer)

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
        seed: seeds the initial weights (and the dropout masks).
        init: ``"shared"`` (every candidate starts from the same draw, scaled by its ``init_scale``) or
            ``"independent"`` (one draw per candidate).
        widths: per-candidate hidden widths, (K,) or (K, hidden layers), each up to its layer's size in
            ``layers`` (default: all full). Units beyond a candidate's width start at zero and stay exactly zero
            (relu, tanh, gelu), so it trains as a separate model of its width, initialized as nn.Linear would
            (the next layer's draw scaled to its fan-in); :meth:`to_module` exports exactly that width.
        label_smoothing: per-candidate label smoothing in [0, 1), a scalar or (K,), as
            ``F.cross_entropy(label_smoothing=...)`` (cross-entropy only; reported losses include it).
        batch_sizes: per-candidate batch sizes (K,): candidate k's loss is the mean over the first
            ``batch_sizes[k]`` rows of each shared minibatch (``fit``'s ``batch_size`` must be at least the largest).
        dropout: per-candidate dropout probability in [0, 1), a scalar or (K,): in training steps only, each hidden
            unit's activation is zeroed with probability p_k and the rest scaled by 1 / (1 - p_k) (inverted
            dropout; evaluation, :meth:`forward` and the reported validation metrics use no dropout; p_k is
            resolved in steps of 2^-16). The masks are drawn from ``seed`` and the step number
            (:meth:`metahp_fast.backends.base.PopulationState.dropout`), the same on every backend; a candidate
            with p_k = 0 trains bit for bit as without the option (on triton, as its per-layer path would).
            :meth:`to_module` exports ``nn.Dropout(p_k)`` layers.
            With any of these options the triton backend takes its per-layer path.
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
                 loss: str = "cross_entropy", seed: int = 0, init: str = "shared", widths: Any = None,
                 label_smoothing: Any = None, batch_sizes: Any = None, dropout: Any = None,
                 device: Union[str, torch.device, None] = None, dtype: torch.dtype = torch.float32,
                 backend: str = "auto", precision: Optional[str] = None):
        spec = check_spec(layers, activation, loss, optimizer, nesterov)
        size = check_size(size)
        widths = check_widths(widths, spec.layers, size, activation)
        check_choice("init", init, ("shared", "independent"))
        device = check_device(device)
        dtype = _check_dtype(dtype)
        seed = check_int("seed", seed)
        resolve_name(backend, device)
        hp = check_hparams(hparams, optimizer, size, device, dtype)
        options = _check_options(label_smoothing, batch_sizes, dropout, spec, size, device, dtype)
        params = _init_params(spec, size, seed, init == "independent", hp["init_scale"], device, dtype)
        apply_widths(params, widths, rescale=True)
        self._setup(spec, params, hp, backend, precision, widths, options, seed)

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Sequential], optimizer: str = "sgd",
                     hparams: Optional[Mapping[str, Any]] = None, *, nesterov: bool = False,
                     loss: str = "cross_entropy", seed: int = 0, backend: str = "auto",
                     precision: Optional[str] = None) -> "Population":
        """A population whose candidate k starts from the weights of ``modules[k]``, a ``nn.Sequential`` of
        ``Linear`` layers with one kind of activation between them, each optionally followed by an ``nn.Dropout``
        (the inverse of :meth:`to_module`: a module's dropout probability becomes its candidate's ``dropout``);
        modules of one depth may differ in hidden widths (see ``widths``). ``seed`` seeds the dropout masks. The
        other arguments as for the constructor."""
        layers, activation, params, widths, dropout = stack_sequentials(modules)
        device, dtype = params[0].device, params[0].dtype
        spec = check_spec(layers, activation, loss, optimizer, nesterov)
        seed = check_int("seed", seed)
        resolve_name(backend, device)
        hp = check_hparams(hparams, optimizer, len(modules), device, dtype)
        options = _check_options(None, None, dropout if any(dropout) else None, spec, len(modules), device, dtype)
        pop = cls.__new__(cls)
        pop._setup(spec, params, hp, backend, precision, widths, options, seed)
        return pop

    def _setup(self, spec: ModelSpec, params: list[Tensor], hp: dict[str, Tensor], backend: str,
               precision: Optional[str] = None, widths: Optional[Tensor] = None,
               options: Optional[dict[str, Tensor]] = None, seed: int = 0) -> None:
        if precision is not None:
            check_choice("precision", precision, PRECISIONS)
        size, device, dtype = params[0].shape[0], params[0].device, params[0].dtype
        self._backend = get_backend(backend, spec, device, dtype)
        self._precision = precision
        if precision is not None:
            self._backend.precision = precision
        state_names = OPTIMIZERS[spec.optimizer].state_names
        self._state = PopulationState(
            spec=spec, params=params,
            opt_state={name: [torch.zeros_like(p) for p in params] for name in state_names},
            step_count=torch.zeros(size, dtype=torch.int64, device=device),
            hparams=HParams(hp, spec.optimizer),
            alive=torch.ones(size, dtype=torch.bool, device=device), options=dict(options or {}), seed=int(seed))
        self._widths = check_widths(widths, spec.layers, size, spec.activation)

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
        return self._backend.precision

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
    def steps_done(self) -> int:
        """Steps the population has taken (each :meth:`step` or step of :meth:`fit` counts one); with the seed,
        it keys each step's dropout masks."""
        return self._state.steps_done

    @steps_done.setter
    def steps_done(self, value: int) -> None:
        self._state.steps_done = int(value)

    @property
    def seed(self) -> int:
        """The seed the population was built with (its initial weights and dropout masks)."""
        return self._state.seed

    @property
    def options(self) -> dict[str, Tensor]:
        """The per-candidate training options this population was built with (``label_smoothing``,
        ``batch_size``, ``dropout``), name -> (K,) copies."""
        return {k: v.clone() for k, v in self._state.options.items()}

    @property
    def widths(self) -> Tensor:
        """(K, hidden layers) int64: each candidate's hidden widths (see the ``widths`` argument)."""
        return self._widths.clone()

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
        return self._backend.step(self._state, x, y, lr)

    def fit(self, x: Any, y: Any, steps: int, batch_size: int = 128, seed: int = 0,
            lr_schedule: Optional[LrSchedule] = None, progress: bool = True, x_val: Any = None,
            y_val: Any = None, eval_every: Optional[int] = None, keep_best: Optional[str] = None) -> dict[str, Any]:
        """Train for ``steps`` steps on shuffled minibatches of (x, y) (epochs without replacement, seeded),
        all candidates seeing the same batches.

        ``lr_schedule`` is a callable ``(step, base_lr) -> lr`` returning (K,) learning rates or a multiplier,
        or a tensor of shape (steps,) (multipliers) or (steps, K) (learning rates). With validation data, the
        population is evaluated every ``eval_every`` steps (default: 10 times) and at the end.

        ``keep_best`` (``"loss"`` or ``"accuracy"``, with validation data): per-candidate early stopping. Each
        candidate's weights at its best evaluation so far are kept on the device (no host sync), and at the end
        every candidate gets its best weights back (the optimizer state stays the last step's), so the training
        length is chosen per candidate, not guessed.

        Returns a history: ``"loss"`` (steps, K) minibatch losses, and with validation data ``"eval_step"``,
        ``"val_loss"`` and (cross-entropy) ``"val_accuracy"``, each (evaluations, K); with ``keep_best`` also
        ``"best_step"`` (K,) (the step count of the weights kept; 0, with the initial weights, if no evaluation
        was finite) and ``"best_val"`` (K,), the kept weights' validation loss or accuracy (nan for 0)."""
        x, y = check_batch(x, y, self.spec, self.device, self.dtype)
        has_val = x_val is not None or y_val is not None
        if has_val:
            x_val, y_val = check_batch(x_val, y_val, self.spec, self.device, self.dtype, names=("x_val", "y_val"))
        steps = check_positive_int("steps", steps)
        batch_size = check_positive_int("batch_size", batch_size)
        if "batch_size" in self._state.options and batch_size < int(self._state.options["batch_size"].max()):
            raise ValueError(f"batch_size ({batch_size}) must be at least the largest of the candidates' "
                             f"batch_sizes ({int(self._state.options['batch_size'].max())}): each minibatch is shared")
        if keep_best is not None:
            check_choice("keep_best", keep_best, ("loss", "accuracy"))
            if not has_val:
                raise ValueError("keep_best needs validation data: pass x_val and y_val")
            if keep_best == "accuracy" and self.spec.loss != "cross_entropy":
                raise ValueError("keep_best='accuracy' needs a classification (cross-entropy) population")
        schedule = self._check_schedule(lr_schedule, steps)
        eval_every = max(1, steps // 10) if eval_every is None else check_positive_int("eval_every", eval_every)
        batches = Batches(x.shape[0], batch_size, seed, self.device)
        span_cap = self._backend.steps_per_launch(self.spec, batches.batch_size)
        base_lr = self.hparams["lr"].clone()
        hist: dict[str, Any] = {"loss": [], "eval_step": [], "val_loss": [], "val_accuracy": []}
        best = _BestWeights(self, keep_best) if keep_best is not None else None
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
            hist["loss"].append(self._backend.steps(self._state, x, y, idx, lrs))  # counts its steps_done
            t = end
            if has_val and (t % eval_every == 0 or t == steps):
                m = self.evaluate(x_val, y_val)
                hist["eval_step"].append(self.steps_done)
                hist["val_loss"].append(m["loss"])
                if "accuracy" in m:
                    hist["val_accuracy"].append(m["accuracy"])
                if best is not None:
                    best.update(m, self.steps_done)
                if bar is not None:
                    best = int(torch.argmin(m["loss"]))
                    bar.set_postfix(best_val_loss=f"{m['loss'][best].item():.4f}", alive=int(self.alive.sum()))
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        out: dict[str, Any] = {"loss": torch.cat(hist["loss"]).cpu()}
        if best is not None:
            out["best_step"], out["best_val"] = best.restore()
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
            batch_size = check_positive_int("batch_size", batch_size)
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
        """Candidate i as a plain ``nn.Sequential`` (a copy) of its own widths, whose outputs equal the
        population's; with an ``nn.Dropout(p_i)`` after each activation if its dropout p_i > 0 (the identity in
        eval mode, so retraining the export drops units as the population did)."""
        i = self._check_index(i)
        hidden, params = candidate_params(self.params, self._widths, i)
        spec = ModelSpec((self.layers[0], *hidden, self.layers[-1]), self.spec.activation)
        p = self._state.options.get("dropout")
        return sequential(spec, params, 0, dropout=0.0 if p is None else float(p[i]))

    def _check_index(self, i: Any) -> int:
        """A candidate number as an int in [0, K): an int, numpy integer or 0-dim integer tensor (such as
        ``losses.argmin()``), negative ones counting from the end."""
        if isinstance(i, Tensor) and i.dim() == 0 and not (i.dtype.is_floating_point or i.dtype.is_complex
                                                            or i.dtype == torch.bool):
            i = int(i)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) or not -self.size <= i < self.size:
            raise IndexError(f"candidate index must be an int (or a 0-dim integer tensor) in [0, {self.size}); "
                             f"got {i!r}")
        return int(i) % self.size

    def select(self, indices: Union[Sequence[int], Sequence[bool], Tensor]) -> "Population":
        """A new population of the chosen candidates (weights, optimizer state, hyperparameters, step counts
        and alive flags copied), on the same backend; this one is left as it is. ``indices`` are candidate
        numbers, or a (K,) bool mask such as ``pop.alive``. Tuners use it to drop candidates from the batch."""
        idx = (check_indices(indices, self.size) % self.size).to(self.device)
        s = self._state
        pop = Population.__new__(Population)
        pop._setup(s.spec, [p.index_select(0, idx) for p in s.params],
                   {k: v.index_select(0, idx) for k, v in s.hparams.items()}, self.backend, self._precision,
                   self._widths.index_select(0, idx.cpu()),
                   {k: v.index_select(0, idx) for k, v in s.options.items()}, s.seed)
        for name, ts in s.opt_state.items():
            for dst, src in zip(pop._state.opt_state[name], ts):
                dst.copy_(src.index_select(0, idx))
        pop._state.step_count.copy_(s.step_count.index_select(0, idx))
        pop._state.alive.copy_(s.alive.index_select(0, idx))
        pop.steps_done = self.steps_done
        return pop

    def copy_candidates(self, src: Tensor, dst: Tensor) -> None:
        """Overwrite candidates ``dst`` with the weights, optimizer state, step counts, alive flags, widths and
        training options (dropout, ...) of candidates ``src`` (1-D index tensors of one length, ``dst`` distinct),
        in place; hyperparameters are left as they are (PBT's exploit step)."""
        src, dst = src.long().to(self.device), dst.long().to(self.device)
        s = self._state
        with torch.no_grad():
            for t in [*s.params, *(t for ts in s.opt_state.values() for t in ts), s.step_count, s.alive,
                      *s.options.values()]:
                t.index_copy_(0, dst, t.index_select(0, src))
        self._widths.index_copy_(0, dst.cpu(), self._widths.index_select(0, src.cpu()))

    # ---------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """A copy of everything needed to resume bit-identically: architecture, parameters, optimizer state,
        hyperparameters, step counts, alive flags, options, the seed and the number of steps done."""
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
            "widths": self._widths.clone(),
            "options": {k: v.clone() for k, v in s.options.items()},
            "seed": s.seed,
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
        keys = ("params", "optimizer_state", "step_count", "hparams", "alive", "options")
        if not isinstance(state.get("options"), Mapping) or sorted(state["options"]) != sorted(s.options):
            raise ValueError(f"state has options {sorted(state.get('options') or {})}; this population has "
                             f"{sorted(s.options)}")
        for key in keys:
            src, dst = flat(state[key]), flat(mine[key])
            if len(src) != len(dst) or any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(src, dst)):
                raise ValueError(f"state[{key!r}] does not match this population's shapes and dtypes")
        try:
            widths = check_widths(state.get("widths"), s.spec.layers, self.size, s.spec.activation)
        except (ValueError, TypeError) as e:
            raise ValueError(f"state['widths'] does not fit this population: {e}") from None
        live = flat([s.params, s.opt_state, s.step_count, dict(s.hparams), s.alive, s.options])
        src_all = [t for key in keys for t in flat(state[key])]
        with torch.no_grad():
            for dst, src in zip(live, src_all):
                dst.copy_(src)
        self._widths = widths
        s.seed = int(state.get("seed", 0))  # states saved before dropout had no seed to key masks by
        self.steps_done = int(state["steps_done"])

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (``torch.save(pop)``, multiprocessing) keeps the :meth:`state_dict` and the backend's name;
        the backend's caches (the torch backend's scratch buffers) are rebuilt, not saved."""
        return {"state_dict": self.state_dict(), "backend": self.backend, "precision": self._precision}

    def __setstate__(self, state: dict[str, Any]) -> None:
        sd = state["state_dict"]  # fresh tensors (unpickled, or a state_dict() copy): used as they are
        spec = ModelSpec(**{**sd["spec"], "layers": tuple(sd["spec"]["layers"])})
        try:
            self._setup(spec, sd["params"], sd["hparams"], state["backend"], state["precision"], None, sd["options"])
        except (ValueError, TypeError, ImportError, RuntimeError) as e:  # e.g. triton, loaded onto the CPU
            warnings.warn(f"backend {state['backend']!r} cannot run this population where it was loaded ({e}); "
                          "using backend 'auto'", stacklevel=2)
            self._setup(spec, sd["params"], sd["hparams"], "auto", state["precision"], None, sd["options"])
        self.load_state_dict(sd)

    def __deepcopy__(self, memo):
        pop = Population.__new__(Population)
        pop.__setstate__(self.__getstate__())
        return pop


def _check_options(label_smoothing: Any, batch_sizes: Any, dropout: Any, spec: ModelSpec, size: int,
                   device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
    """The per-candidate training options given (``None``: off) as (K,) tensors, each checked."""
    out: dict[str, Tensor] = {}
    if label_smoothing is not None:
        if spec.loss != "cross_entropy":
            raise ValueError("label_smoothing needs loss='cross_entropy'")
        try:
            v = torch.as_tensor(label_smoothing, dtype=dtype, device=device).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"label_smoothing must be a number or (K,) numbers; got {label_smoothing!r}") from None
        v = v.expand(size).clone() if v.numel() == 1 else v
        if v.shape != (size,) or not bool(((v >= 0) & (v < 1)).all()):
            raise ValueError(f"label_smoothing must be a scalar or ({size},) values in [0, 1); got "
                             f"{v.tolist() if v.numel() <= 8 else tuple(v.shape)}")
        out["label_smoothing"] = v
    if batch_sizes is not None:
        b = torch.as_tensor(np.asarray(batch_sizes) if not isinstance(batch_sizes, Tensor) else batch_sizes)
        if b.dtype.is_floating_point or b.dtype == torch.bool or b.shape != (size,) or bool((b < 1).any()):
            raise ValueError(f"batch_sizes must be ({size},) positive whole numbers; got {b.tolist()}")
        out["batch_size"] = b.long().to(device)
    if dropout is not None:
        out["dropout"] = _check_dropout(dropout, spec, size, device, dtype)
    assert set(out) <= set(TRAIN_OPTIONS)
    return out


def _check_dropout(dropout: Any, spec: ModelSpec, size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``dropout`` as (K,) probabilities in [0, 1), for a model with at least one hidden layer."""
    if len(spec.layers) < 3:
        raise ValueError("dropout needs at least one hidden layer in layers (it drops hidden units)")
    try:
        v = torch.as_tensor(np.asarray(dropout, dtype=np.float64) if not isinstance(dropout, Tensor)
                            else dropout.detach().cpu().double())
    except (TypeError, ValueError):
        raise TypeError(f"dropout must be a number or ({size},) numbers; got {dropout!r}") from None
    v = v.expand(size).clone() if v.dim() == 0 or v.shape == (1,) else v
    ok = (v >= 0) & (torch.round(v.to(dtype).double() * 65536) < 65536)  # masks resolve p in steps of 2^-16
    if v.shape != (size,) or not bool(ok.all()):
        raise ValueError(f"dropout must be a scalar or ({size},) probabilities in [0, 1) (below 1 - 2^-17); got "
                         f"{v.tolist() if v.numel() <= 8 else tuple(v.shape)}")
    return v.to(device=device, dtype=dtype)


class _BestWeights:
    """Each candidate's parameters at its best validation evaluation so far, kept on the device: updated with
    ``torch.where`` on the stacked tensors (no host sync), restored at the end of :meth:`Population.fit`."""

    def __init__(self, pop: Population, metric: str):
        self.pop, self.metric = pop, metric
        self.params = [p.detach().clone() for p in pop.params]
        self.value = torch.full((pop.size,), math.inf, dtype=torch.float64, device=pop.device)
        self.step = torch.zeros(pop.size, dtype=torch.int64, device=pop.device)

    def update(self, metrics: dict[str, Tensor], step: int) -> None:
        v = metrics[self.metric].double()
        v = torch.nan_to_num(-v if self.metric == "accuracy" else v, nan=math.inf)
        better = v < self.value
        self.value = torch.where(better, v, self.value)
        self.step = torch.where(better, torch.full_like(self.step, step), self.step)
        with torch.no_grad():
            for kept, p in zip(self.params, self.pop.params):
                kept.copy_(torch.where(better.view((-1,) + (1,) * (p.dim() - 1)), p, kept))

    def restore(self) -> tuple[Tensor, Tensor]:
        """Put the kept weights back; returns (best_step, best value) per candidate, on the CPU."""
        with torch.no_grad():
            for kept, p in zip(self.params, self.pop.params):
                p.copy_(kept)
        value = -self.value if self.metric == "accuracy" else self.value
        return self.step.cpu(), value.masked_fill(self.step == 0, math.nan).cpu()


def _check_dtype(dtype: Any) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype such as torch.float32; got {dtype!r}")
    return dtype


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but stay usable without it
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=False)
