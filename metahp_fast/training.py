"""Training primitives shared by the tuners and the hypergradient estimators: tasks, populations built from
rows of ``u``, seeded training, objectives, test metrics and atomic saving."""
from __future__ import annotations

import dataclasses
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from .backends.base import PRECISIONS
from .population import Population
from .search_space import SearchSpace
from .tasks import Task, from_arrays, load_task

TaskLike = Union[Task, str, os.PathLike, tuple]
OBJECTIVES = ("loss", "error")


def as_task(task_or_data: TaskLike, seed: int = 0) -> Task:
    """A :class:`Task` as given, loaded by name or path (:func:`load_task`), or built from an ``(x, y)`` pair."""
    if isinstance(task_or_data, Task):
        return task_or_data
    if isinstance(task_or_data, (str, os.PathLike)):
        return load_task(task_or_data, seed=seed)
    if isinstance(task_or_data, tuple) and len(task_or_data) == 2:
        return from_arrays(*task_or_data, seed=seed)
    raise TypeError("task_or_data must be a Task, a dataset name or file path, or an (x, y) pair; "
                    f"got {type(task_or_data).__name__}")


@dataclass(frozen=True)
class TrainConfig:
    """How every candidate is trained: architecture, steps of one full training, minibatch, where it runs."""

    hidden: tuple[int, ...] = (128,)
    steps: int = 300
    batch_size: int = 128
    optimizer: str = "sgd"
    activation: str = "relu"
    nesterov: bool = False
    eval_every: Optional[int] = None
    backend: str = "auto"
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    precision: Optional[str] = None

    def __post_init__(self) -> None:
        hidden = tuple(self.hidden) if isinstance(self.hidden, (list, tuple)) else (self.hidden,)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a list of positive ints; got {self.hidden!r}")
        object.__setattr__(self, "hidden", hidden)
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or None; got {self.precision!r}")
        for name in ("steps", "batch_size") + (("eval_every",) if self.eval_every is not None else ()):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")

    @property
    def every(self) -> int:
        """Steps between validation evaluations (default: 10 per full training)."""
        return self.eval_every or max(1, self.steps // 10)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        d = dataclasses.asdict(self)
        d["hidden"], d["dtype"] = list(self.hidden), str(self.dtype).replace("torch.", "")
        if d["precision"] is None:  # as checkpoints written before the option had it: they still resume
            del d["precision"]
        return d


def prepare_task(task: Task, config: TrainConfig) -> Task:
    """``task`` with its tensors on ``config``'s device and its features (and regression targets) in its dtype."""
    ys = {} if task.is_classification else {f"y_{s}": getattr(task, f"y_{s}").to(config.dtype)
                                            for s in ("train", "val", "test")}
    t = dataclasses.replace(task, **{f"x_{s}": getattr(task, f"x_{s}").to(config.dtype)
                                     for s in ("train", "val", "test")}, **ys)
    return t.to(config.device)


def check_space(space: Optional[SearchSpace], optimizer: str) -> SearchSpace:
    """``space`` (default: the optimizer's default space), checked to be a space for ``optimizer``."""
    if space is None:
        return SearchSpace.default(optimizer)
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space must be a SearchSpace; got {type(space).__name__}")
    if space.optimizer not in (None, optimizer):
        raise ValueError(f"space is for optimizer {space.optimizer!r} but optimizer={optimizer!r}")
    if not space.dims:
        raise ValueError("space must have at least one non-fixed hyperparameter to tune")
    return space


def check_u(name: str, u: Any, space: SearchSpace) -> Tensor:
    """``u`` as a float64 (n, d) tensor of finite values for ``space``."""
    t = torch.as_tensor(u, dtype=torch.float64).detach()
    if t.dim() == 1:
        t = t.unsqueeze(0)
    d = len(space.dims)
    if t.dim() != 2 or t.shape[1] != d or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape ({d},) or (n, {d}) for dims {list(space.dims)}; "
                         f"got {tuple(torch.as_tensor(u).shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must hold finite values; got {t.tolist()}")
    return t


def hparams_from_u(space: SearchSpace, u: Tensor) -> dict[str, Tensor]:
    """Rows of ``u`` (n, d) -> natural hyperparameters name -> (n,) float64, fixed ones included, ints rounded."""
    return {k: v.detach().double() for k, v in space.from_unconstrained(u, round_ints=True).items()}


def u_bounds(space: SearchSpace) -> tuple[Tensor, Tensor]:
    """(low, high) of ``u`` (d,): the images of every range's ends."""
    ends = [space[n].to_u(torch.tensor(space[n].bounds(), dtype=torch.float64)) for n in space.dims]
    return torch.stack([e[0] for e in ends]), torch.stack([e[1] for e in ends])


def make_population(task: Task, space: SearchSpace, u: Tensor, config: TrainConfig, seed: int) -> Population:
    """One population, candidate k with the hyperparameters of row k of ``u``, all from the same initial weights
    (drawn from ``seed``; scaled per candidate if ``init_scale`` is tuned)."""
    return Population(task.layers(config.hidden), u.shape[0], config.optimizer, hparams_from_u(space, u),
                      nesterov=config.nesterov, activation=config.activation, loss=task.loss, seed=int(seed),
                      device=config.device, dtype=config.dtype, backend=config.backend, precision=config.precision)


def population_from_state(state: dict[str, Any], config: TrainConfig) -> Population:
    """A population rebuilt from :meth:`Population.state_dict` on ``config``'s backend and device."""
    spec, params = state["spec"], state["params"]
    pop = Population(spec["layers"], params[0].shape[0], spec["optimizer"], nesterov=spec["nesterov"],
                     activation=spec["activation"], loss=spec["loss"], device=config.device, dtype=params[0].dtype,
                     backend=config.backend, precision=config.precision)
    pop.load_state_dict(state)
    return pop


def fit(pop: Population, task: Task, steps: int, config: TrainConfig, seed: int) -> dict[str, Any]:
    """``steps`` steps of :meth:`Population.fit` on the task's train split (batches seeded by ``seed``),
    evaluating on the validation split every ``config.every`` steps; returns fit's history."""
    return pop.fit(task.x_train, task.y_train, steps=steps, batch_size=config.batch_size, seed=int(seed),
                   progress=False, x_val=task.x_val, y_val=task.y_val, eval_every=min(config.every, steps))


def fit_batch_indices(n: int, steps: int, batch_size: int, seed: int) -> list[Tensor]:
    """The row indices of the minibatches that :meth:`Population.fit` draws for these arguments, in order."""
    gen = torch.Generator().manual_seed(int(seed))
    bs, out, order, pos = min(batch_size, n), [], None, n
    for _ in range(steps):
        if pos + bs > n:
            order, pos = torch.randperm(n, generator=gen), 0
        out.append(order[pos:pos + bs])
        pos += bs
    return out


def objective_values(metrics: dict[str, Tensor], objective: str) -> Tensor:
    """The quantity tuners minimise, (K,) float64: validation ``loss`` or ``error`` (1 - accuracy);
    diverged candidates read ``inf``."""
    if objective == "error":
        v = 1 - metrics["accuracy"].double()
    else:
        v = metrics["loss"].double()
    return torch.nan_to_num(v, nan=math.inf, posinf=math.inf)


def baseline_objective(task: Task, objective: str = "loss") -> float:
    """The validation objective of a model that ignores its input and predicts the train labels' prior (class
    frequencies, or the mean target): what a candidate worse than this has not learned."""
    if not task.is_classification:
        return float((task.y_val - task.y_train.mean(0)).pow(2).mean())
    prior = torch.bincount(task.y_train.cpu(), minlength=task.n_classes).double() / len(task.y_train)
    if objective == "error":
        return float((task.y_val.cpu() != int(prior.argmax())).double().mean())
    return float(-torch.log(prior.clamp_min(1e-12))[task.y_val.cpu()].mean())


def check_objective(objective: str, task: Task) -> str:
    """``objective`` checked against :data:`OBJECTIVES` and the task (``error`` needs classification)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
    if objective == "error" and not task.is_classification:
        raise ValueError(f"objective='error' needs a classification task; {task.name!r} is a regression task")
    return objective


def validation_objective(task: Task, space: SearchSpace, u: Tensor, config: TrainConfig, seed: int,
                         objective: str = "loss") -> Tensor:
    """Train one candidate per row of ``u`` for ``config.steps`` steps from shared initial weights on shared
    batches and return their validation objective (n,): the function ES hypergradients estimate."""
    task = prepare_task(task, config)
    pop = make_population(task, space, check_u("u", u, space), config, seed)
    pop.fit(task.x_train, task.y_train, steps=config.steps, batch_size=config.batch_size, seed=int(seed),
            progress=False)
    return objective_values(pop.evaluate(task.x_val, task.y_val), objective)


@torch.no_grad()
def model_metrics(model: nn.Module, task: Task, split: str = "test") -> dict[str, float]:
    """Loss and accuracy (classification), or loss and RMSE in the target's units (regression: the loss is on
    standardized targets), of a plain model on one split (``"train"``, ``"val"`` or ``"test"``) of the task."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test'; got {split!r}")
    p = next(model.parameters())
    x, y = getattr(task, f"x_{split}").to(p.device, p.dtype), getattr(task, f"y_{split}").to(p.device)
    out = model(x)
    if task.is_classification:
        return {"loss": float(nn.functional.cross_entropy(out, y)),
                "accuracy": float((out.argmax(1) == y).float().mean())}
    err = out - y.to(out.dtype)
    scale = 1.0 if task.y_std is None else task.y_std.to(err.device, err.dtype)
    return {"loss": float(err.pow(2).mean()), "rmse": float((err * scale).pow(2).mean().sqrt())}


def derive_seed(*keys: int) -> int:
    """A 31-bit seed derived from integers (a run's seed, a round number, ...), stable across runs."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(1)[0] >> 1)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (a diverged candidate's loss, an empty interval) as None, which
    strict JSON can hold (write with ``allow_nan=False``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_save(obj: Any, path: Union[str, Path]) -> None:
    """torch.save into a temporary file next to ``path``, then rename it over ``path`` in one step."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:  # a fresh name, created with the mode any new file gets (0o666 less the umask, which the
        tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"  # kernel applies: no umask toggling)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["TaskLike", "OBJECTIVES", "TrainConfig", "as_task", "prepare_task", "check_space", "check_u", "hparams_from_u",
           "u_bounds", "make_population", "population_from_state", "fit", "fit_batch_indices", "objective_values",
           "baseline_objective", "check_objective", "validation_objective", "model_metrics", "derive_seed", "atomic_save",
           "json_safe"]
