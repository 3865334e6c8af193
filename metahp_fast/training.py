"""Training primitives shared by the tuners and the hypergradient estimators: how candidates are trained
(:class:`TrainConfig`), tasks on its device, populations built from rows of ``u``, seeded training."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from .backends.base import PRECISIONS
from .population import Population
from .population_group import PopulationGroup, is_group_state
from .objectives import objective_values
from .search_space import STRUCTURAL, SearchSpace, check_u, hparams_from_u
from .tasks import Task, from_arrays, load_task

TaskLike = Union[Task, str, os.PathLike, tuple]


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


def hidden_for(space: SearchSpace, config: TrainConfig, depth: Optional[int] = None) -> tuple[int, ...]:
    """The population's hidden layer sizes: ``config.hidden``, widened to the top of a tuned ``width`` range;
    for a candidate of ``depth`` hidden layers (a space that tunes ``depth``), the first ``depth`` of them, the
    last repeated past its end (``hidden=(128,)``, depth 3: ``(128, 128, 128)``)."""
    return layer_widths(config.hidden, top_width(space), depth)


def top_width(space: SearchSpace) -> Optional[int]:
    """The top of ``space``'s ``width`` range (None if it does not tune width)."""
    return int(space["width"].bounds()[1]) if "width" in space.names else None


def layer_widths(hidden: Sequence[int], top: Optional[int], depth: Optional[int] = None) -> tuple[int, ...]:
    """:func:`hidden_for` given the top of the ``width`` range (None: width not tuned) instead of a space."""
    hidden = tuple(hidden) if top is None else tuple(max(h, top) for h in hidden)
    if depth is None:
        return hidden
    return tuple(hidden[min(i, len(hidden) - 1)] for i in range(depth))


def split_structural(values: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(the population's hparams, its other keyword arguments) from natural values name -> (K,): the
    :data:`~metahp_fast.search_space.STRUCTURAL` ones become ``widths`` (whole numbers) and ``dropout``; the
    ``depth`` (see :func:`depths_of`) is left out of both."""
    hp = {k: v for k, v in values.items() if k not in STRUCTURAL}
    kwargs = {}
    if "width" in values:
        kwargs["widths"] = values["width"].round().long()
    if "dropout" in values:
        kwargs["dropout"] = values["dropout"]
    return hp, kwargs


def depths_of(values: dict[str, Tensor]) -> Optional[Tensor]:
    """The (K,) numbers of hidden layers from natural values name -> (K,), or None if ``depth`` is not tuned."""
    return values["depth"].round().long().reshape(-1) if "depth" in values else None


def make_population(task: Task, space: SearchSpace, u: Tensor, config: TrainConfig,
                    seed: int) -> Union[Population, PopulationGroup]:
    """One population, candidate k with the hyperparameters of row k of ``u`` (its hidden width and dropout too,
    if the space tunes them), all from the same initial weights (drawn from ``seed``, which also seeds the
    dropout masks; scaled per candidate if ``init_scale`` is tuned; cut to each width as ``nn.Linear`` would
    draw them). If the space tunes ``depth``, a :class:`PopulationGroup` instead: one population per depth, each
    as this function would build it for that depth's rows alone (the same seed, so candidate k starts as a
    separate population of its depth)."""
    return population_from_values(task, hparams_from_u(space, u), config, seed, top_width(space))


def population_from_values(task: Task, values: dict[str, Tensor], config: TrainConfig, seed: int,
                           top: Optional[int] = None) -> Union[Population, PopulationGroup]:
    """:func:`make_population` from natural values name -> (K,) (structural ones included) instead of ``u``;
    ``top``: the top of the ``width`` range, the layer size every candidate's width is cut from."""
    hp, kwargs = split_structural(values)
    depths = depths_of(values)
    size = len(next(iter(values.values())))

    def build(rows: Optional[Tensor], depth: Optional[int]) -> Population:
        pick = (lambda v: v) if rows is None else (lambda v: v.index_select(0, rows))
        return Population(task.layers(layer_widths(config.hidden, top, depth)), size if rows is None else len(rows),
                          config.optimizer, {k: pick(v) for k, v in hp.items()}, nesterov=config.nesterov,
                          activation=config.activation, loss=task.loss, seed=int(seed), device=config.device,
                          dtype=config.dtype, backend=config.backend, precision=config.precision,
                          **{k: pick(v) for k, v in kwargs.items()})
    if depths is None:
        return build(None, None)
    return PopulationGroup.by_depth(depths, lambda depth, rows: build(rows, depth))


def candidate_values(pop: Union[Population, PopulationGroup], names: Sequence[str]) -> dict[str, Tensor]:
    """Every candidate's values of the space's ``names`` (K,) float64 CPU: its hparams, width, depth and
    dropout."""
    out = {}
    for k in names:
        if k == "width":
            out[k] = pop.widths[:, 0].double()
        elif k == "depth":
            out[k] = pop.depths.double()
        elif k == "dropout":
            out[k] = pop.options["dropout"].detach().cpu().double()
        else:
            out[k] = pop.hparams[k].detach().cpu().double()
    return out


def population_from_state(state: dict[str, Any], config: TrainConfig) -> Union[Population, PopulationGroup]:
    """A population (or group of them) rebuilt from its ``state_dict()`` on ``config``'s backend and device (with
    the same training options: their values come from ``state``)."""
    if is_group_state(state):
        return PopulationGroup.from_state_dict(state, lambda s: population_from_state(s, config))
    spec, params = state["spec"], state["params"]
    options = state.get("options") or {}
    pop = Population(spec["layers"], params[0].shape[0], spec["optimizer"], nesterov=spec["nesterov"],
                     activation=spec["activation"], loss=spec["loss"], device=config.device, dtype=params[0].dtype,
                     backend=config.backend, precision=config.precision,
                     label_smoothing=options.get("label_smoothing"), batch_sizes=options.get("batch_size"),
                     dropout=options.get("dropout"))
    pop.load_state_dict(state)
    return pop


def fit(pop: Union[Population, PopulationGroup], task: Task, steps: int, config: TrainConfig,
        seed: int) -> dict[str, Any]:
    """``steps`` steps of :meth:`Population.fit` on the task's train split (batches seeded by ``seed``),
    evaluating on the validation split every ``config.every`` steps; returns fit's history."""
    return pop.fit(task.x_train, task.y_train, steps=steps, batch_size=config.batch_size, seed=int(seed),
                   progress=False, x_val=task.x_val, y_val=task.y_val, eval_every=min(config.every, steps))


def validation_objective(task: Task, space: SearchSpace, u: Tensor, config: TrainConfig, seed: int,
                         objective: str = "loss") -> Tensor:
    """Train one candidate per row of ``u`` for ``config.steps`` steps from shared initial weights on shared
    batches and return their validation objective (n,): the function ES hypergradients estimate."""
    task = prepare_task(task, config)
    pop = make_population(task, space, check_u("u", u, space), config, seed)
    pop.fit(task.x_train, task.y_train, steps=config.steps, batch_size=config.batch_size, seed=int(seed),
            progress=False)
    return objective_values(pop.evaluate(task.x_val, task.y_val), objective)


__all__ = ["TaskLike", "TrainConfig", "hidden_for", "layer_widths", "top_width", "split_structural", "depths_of",
           "candidate_values", "as_task", "prepare_task", "check_space", "make_population", "population_from_values",
           "population_from_state", "fit", "validation_objective"]
