"""``MetaLearner``: a small MLP from a task's encoding to the search space's ``u``, meta-trained by gradient
descent on the validation loss its hyperparameters reach, the gradient w.r.t. ``u`` estimated by antithetic ES
over one population per task and chained into the network by autograd."""
from __future__ import annotations

import functools
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..hypergrad import es_hypergradient
from ..search_space import SearchSpace, u_bounds
from ..tasks import Task, from_arrays, load_task
from ..training import TrainConfig, check_space, validation_objective
from ..files import FORMAT_VERSION, UnsafeFileError, load_file, save_file
from ..objectives import baseline_objective
from ..seeds import derive_seed
from .encoder import FEATURES, encode
from .tasks_distribution import MetaTask, check_not_held_out
from .shipped import shipped_file

#: Version of the saved file and checkpoint layout: the format of :func:`metahp_fast.files.save_file`, whose
#: files load with ``torch.load(weights_only=True)``.
VERSION = FORMAT_VERSION
#: The kinds of file (see :func:`metahp_fast.files.save_file`) of a saved learner and of a meta-training checkpoint.
KIND, CHECKPOINT_KIND = "meta-learner", "meta-checkpoint"
PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class MetaConfig:
    """g's width, the inner-loop model, and the ES and meta-optimization settings."""

    optimizer: str = "sgd"
    hidden: int = 64
    inner_hidden: tuple[int, ...] = (64,)
    n_pairs: int = 4
    sigma: float = 0.5
    meta_batch: int = 4
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "inner_hidden", tuple(self.inner_hidden))
        for name in ("hidden", "n_pairs", "meta_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        for name in ("sigma", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ValueError(f"{name} must be a positive number; got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {self.seed!r}")


class MetaLearner:
    """``g(task) -> u``: encoder features, normalized by statistics of the training tasks, through an MLP whose
    output, scaled per dimension around the middle of the space, is clamped into the space's ranges.

    >>> g = MetaLearner.pretrained()
    >>> g.predict(x, y, steps=300, batch_size=128)   # {"lr": ..., "momentum": ..., "weight_decay": ...}
    """

    def __init__(self, space: Optional[SearchSpace] = None, config: Optional[MetaConfig] = None):
        self.config = config or MetaConfig()
        if not isinstance(self.config, MetaConfig):
            raise TypeError(f"config must be a MetaConfig; got {type(config).__name__}")
        self.space = check_space(space, self.config.optimizer)
        d, h = len(self.space.dims), self.config.hidden
        gen = torch.Generator().manual_seed(self.config.seed)
        self.net = nn.Sequential(nn.Linear(len(FEATURES), h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, d))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / math.sqrt(p.shape[-1]) if p.dim() > 1 else 0.0))
            self.net[-1].weight.mul_(0.1)
        self.in_mean = torch.zeros(len(FEATURES))
        self.in_std = torch.ones(len(FEATURES))
        self.constant: Optional[Tensor] = None
        self.history: list[dict[str, Any]] = []
        self.meta_steps_done = 0
        self.lo, self.hi = (b.float() for b in u_bounds(self.space))
        self.anchor, self.scale = (self.lo + self.hi) / 2, ((self.hi - self.lo) / 4).clamp(1.0, 4.0)

    def __repr__(self) -> str:
        return (f"MetaLearner({self.config.optimizer}: predicts {', '.join(self.space.dims)}; hidden "
                f"{self.config.hidden}; {self.meta_steps_done} meta-steps done)")

    # ---------------------------------------------------------------- prediction
    def forward(self, enc: Tensor) -> Tensor:
        """Raw ``u`` (n, d) or (d,) for encodings (n, F) or (F,), differentiable w.r.t. the network; it may leave
        the space's box during meta-training (a penalty pulls it back), :meth:`predict_u` clamps it."""
        z = (enc.float().cpu() - self.in_mean) / self.in_std
        return self.anchor + self.scale * self.net(z)

    def clamp(self, u: Tensor) -> Tensor:
        """``u`` clamped into the images of the space's ranges."""
        return torch.maximum(torch.minimum(u, self.hi.to(u.dtype)), self.lo.to(u.dtype))

    def set_output(self, u: Tensor) -> None:
        """Make the network output ``u`` (d,) for the mean encoding (sets the last layer's bias)."""
        with torch.no_grad():
            self.net[-1].bias.copy_((torch.as_tensor(u, dtype=torch.float32) - self.anchor) / self.scale)

    def predict_u(self, task: Task, steps: int = 300, batch_size: int = 128) -> Tensor:
        """g's ``u`` (d,) float64 for ``task`` trained ``steps`` steps of ``batch_size``; a warning for a regression
        task (every meta-training task is a classification one, so g extrapolates there)."""
        if not task.is_classification:
            warnings.warn(f"{task.name}: a regression task, but this meta-learner was meta-trained on classification "
                          "tasks only; its prediction is an extrapolation (a tuning round with init=None avoids it)",
                          stacklevel=3)
        with torch.no_grad():
            return self.clamp(self.forward(encode(task, steps, batch_size, self.config.optimizer))).double()

    def predict(self, x: Any, y: Any = None, steps: int = 300, batch_size: int = 128,
                optimizer: Optional[str] = None, kind: str = "auto") -> dict[str, float]:
        """Natural hyperparameters (name -> float, fixed ones included) for data ``(x, y)``, a Task ``x`` or a
        dataset name or file ``x`` (as tuners take them); ``optimizer`` (default: the learner's own) must be
        the one it was meta-trained for; ``kind`` as for :func:`~metahp_fast.tasks.from_arrays`."""
        if optimizer is not None and optimizer != self.config.optimizer:
            raise ValueError(f"optimizer={optimizer!r}, but this meta-learner was trained for "
                             f"{self.config.optimizer!r}")
        if isinstance(x, (Task, str)):
            if y is not None:
                raise ValueError("y must be None when x is a Task or a dataset name")
            task = x if isinstance(x, Task) else load_task(x, kind=kind)
        elif y is None:
            raise ValueError("y is required when x is an array (or pass a Task or a dataset name as x)")
        else:
            task = from_arrays(x, y, name="predict", kind=kind)
        u = self.predict_u(task, steps, batch_size)
        return {k: float(v) for k, v in self.space.from_unconstrained(u, round_ints=True).items()}

    # ---------------------------------------------------------------- meta-training
    def _inner(self, mt: MetaTask) -> TrainConfig:
        return TrainConfig(hidden=self.config.inner_hidden, steps=mt.steps, batch_size=mt.batch_size,
                           optimizer=self.config.optimizer, backend="torch")

    def fit_constant(self, tasks: Sequence[Union[MetaTask, Task]], n_candidates: int = 64, seed: int = 0) -> Tensor:
        """The single best average configuration: of ``n_candidates`` shared random ``u`` (plus the space's
        center), the one with the lowest mean normalized validation loss ``(L - min) / (median - min)`` (clipped
        to [0, 3]) over ``tasks``; stored as ``self.constant`` and returned."""
        mts = _meta_tasks(tasks)
        u = torch.cat([self.space.sample_u(n_candidates, seed=seed), self.space.center().unsqueeze(0)])
        scores = []
        for i, mt in enumerate(mts):
            L = validation_objective(mt.task, self.space, u, self._inner(mt), derive_seed(seed, i, 7))
            best, med = float(L.min()), float(L.median())
            scores.append(((L - best) / max(med - best, 1e-12)).nan_to_num(3.0, 3.0).clamp(0, 3))
        self.constant = u[int(torch.stack(scores).mean(0).argmin())].clone()
        return self.constant

    def fit(self, tasks: Sequence[Union[MetaTask, Task]], meta_steps: int = 100,
            checkpoint: Optional[PathLike] = None, checkpoint_every: int = 10, progress: bool = False,
            plot: Optional[PathLike] = None) -> "MetaLearner":
        """Meta-train on ``tasks`` (MetaTasks, or Tasks trained 100 steps of 64) until ``meta_steps`` meta-steps
        of ``meta_batch`` tasks each are done in all (a loaded learner counts the ones it has); with
        ``checkpoint``, save every ``checkpoint_every`` steps (atomically) and resume from it if it exists;
        ``plot``: write the meta-training curve there."""
        mts = _meta_tasks(tasks)
        for name, v in (("meta_steps", meta_steps), ("checkpoint_every", checkpoint_every)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        cfg = self.config
        enc = torch.stack([encode(mt.task, mt.steps, mt.batch_size, cfg.optimizer).cpu() for mt in mts])
        base = torch.tensor([baseline_objective(mt.task) for mt in mts], dtype=torch.float64)
        header = {"version": VERSION, "config": _config_dict(cfg), "space": self.space.to_dict(),
                  "order": list(self.space.names),
                  "tasks": [mt.task.name for mt in mts], "encodings": enc.sum().item()}
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        ckpt = None if checkpoint is None else Path(checkpoint)
        if ckpt is not None and ckpt.exists():
            saved = load_file(ckpt, CHECKPOINT_KIND)
            if isinstance(saved.get("header"), dict) and "order" not in saved["header"]:
                header.pop("order")  # a checkpoint from before the space's order was recorded
            if saved.get("header") != header:
                raise ValueError(f"checkpoint {str(ckpt)!r} belongs to a different meta-training run; "
                                 f"use another path or delete it")
            self._load_state(saved["learner"])
            opt.load_state_dict(saved["opt"])
        elif self.meta_steps_done >= meta_steps:  # a loaded or pretrained learner: nothing would happen
            raise ValueError(f"meta_steps={meta_steps} is the total to reach, and this learner has done "
                             f"{self.meta_steps_done} already; pass more than {self.meta_steps_done} to train further")
        elif self.meta_steps_done == 0:
            self.in_mean = enc.mean(0)
            self.in_std = enc.std(0, unbiased=False).where(enc.std(0, unbiased=False) > 1e-3, torch.ones(()))
        bar = _bar(meta_steps, self.meta_steps_done, progress)
        while self.meta_steps_done < meta_steps:
            t0, step = time.perf_counter(), self.meta_steps_done
            gen = torch.Generator().manual_seed(derive_seed(cfg.seed, step))
            batch = torch.randperm(len(mts), generator=gen)[:cfg.meta_batch].tolist()
            opt.zero_grad()
            surrogate, objective, vs_constant = torch.zeros(()), [], []
            for i in batch:
                mt, inner, cap = mts[i], self._inner(mts[i]), 1.5 * float(base[i])
                u = self.forward(enc[i])
                center = self.clamp(u.detach()).double()
                seed = derive_seed(cfg.seed, step, i)
                extra = center.unsqueeze(0) if self.constant is None else torch.stack([center, self.constant.double()])
                est = es_hypergradient(lambda rows: validation_objective(mt.task, self.space, rows, inner, seed),
                                       center, cfg.sigma, cfg.n_pairs, seed=seed, extra=extra, cap=cap)
                finite = est.losses[torch.isfinite(est.losses)].clamp(max=cap)
                scale = max(float(finite.median()) if len(finite) else float(base[i]), 0.05 * float(base[i]))
                box = (u - self.hi).relu().pow(2).sum() + (self.lo - u).relu().pow(2).sum()
                surrogate = surrogate + ((u * (est.grad / scale).float()).sum() + box) / len(batch)
                at = est.extra_losses.nan_to_num(cap, cap).clamp(max=cap)
                objective.append(float(at[0]) / float(base[i]))
                if self.constant is not None:
                    vs_constant.append(float(at[0] / at[1]))
            surrogate.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            opt.step()
            self.meta_steps_done += 1
            prev = self.history[-1]["seconds"] if self.history else 0.0
            self.history.append({"step": self.meta_steps_done, "objective": sum(objective) / len(objective),
                                 "vs_constant": sum(vs_constant) / len(vs_constant) if vs_constant else None,
                                 "seconds": prev + time.perf_counter() - t0})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(objective=f"{self.history[-1]['objective']:.4f}")
            if ckpt is not None and (self.meta_steps_done % checkpoint_every == 0 or self.meta_steps_done == meta_steps):
                save_file(ckpt, CHECKPOINT_KIND, {"header": header, "learner": self._state(),
                                                  "opt": opt.state_dict()})
        if bar is not None:
            bar.close()
        if plot is not None:
            plot_curve(self.history, plot)
        return self

    # ---------------------------------------------------------------- saving
    def _state(self) -> dict[str, Any]:
        return {"net": {k: v.clone() for k, v in self.net.state_dict().items()}, "in_mean": self.in_mean.clone(),
                "in_std": self.in_std.clone(), "constant": None if self.constant is None else self.constant.clone(),
                "history": list(self.history), "meta_steps_done": self.meta_steps_done}

    def _load_state(self, s: dict[str, Any]) -> None:
        self.net.load_state_dict(s["net"])
        self.in_mean, self.in_std, self.constant = s["in_mean"], s["in_std"], s["constant"]
        self.history, self.meta_steps_done = list(s["history"]), int(s["meta_steps_done"])

    def save(self, path: PathLike) -> None:
        """Write the learner (config, search space, feature names, weights, history) atomically, as a file that
        loads with ``torch.load(weights_only=True)``."""
        save_file(path, KIND, {"config": _config_dict(self.config), "space": self.space.to_dict(),
                               "features": list(FEATURES), "learner": self._state()})

    @classmethod
    def load(cls, path: PathLike) -> "MetaLearner":
        """A learner written by :meth:`save`."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"path: no meta-learner file at {str(path)!r}")
        try:
            data = load_file(path, KIND)
        except UnsafeFileError:  # pickled: never unpickled, with what to do
            raise
        except ValueError as e:  # a CSV, a model file, an earlier version, a truncated file
            why = str(e).removeprefix(f"{Path(path)} ")
            raise ValueError(f"path: {str(path)!r} is not a meta-learner file of format {VERSION} (one written by "
                             f"MetaLearner.save or `metahp-fast meta-train`): it {why}") from None
        if data.get("features") != list(FEATURES):
            raise ValueError(f"path: {str(path)!r} was made with other encoder features; retrain it")
        try:
            g = cls(SearchSpace.from_dict(data["space"]), MetaConfig(**data["config"]))
            g._load_state(data["learner"])
            g.predict_u(_probe_task(), 100, 64)  # weights, normalization and config agree: it can predict
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise ValueError(f"path: {str(path)!r} is a damaged or edited meta-learner file ({type(e).__name__}: "
                             f"{e}); retrain it with `metahp-fast meta-train`") from None
        return g

    @classmethod
    def pretrained(cls, optimizer: str = "sgd") -> "MetaLearner":
        """The meta-learner shipped inside the package (``pretrained_<optimizer>.pt``)."""
        return cls.load(shipped_file("", optimizer, "meta-learner"))


@functools.lru_cache(maxsize=1)
def _probe_task() -> Task:
    """A small fixed classification task that a loaded learner predicts for, to prove its file whole."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return from_arrays(x.numpy(), (x[:, 0] > 0).long().numpy(), name="probe")


def upgrade_payload(old: dict[str, Any], kind: str) -> dict[str, Any]:
    """The current payload of a meta-learner file or meta-training checkpoint of the earlier format (format 1: the
    same contents, without the file header), for :func:`metahp_fast.files.upgrade`."""
    if kind == KIND:
        return {k: old[k] for k in ("config", "space", "features", "learner")}
    if kind == CHECKPOINT_KIND:
        return {"header": {**old["header"], "version": VERSION}, "learner": old["learner"], "opt": old["opt"]}
    raise ValueError(f"kind must be {KIND!r} or {CHECKPOINT_KIND!r}; got {kind!r}")


def _meta_tasks(tasks: Sequence[Union[MetaTask, Task]]) -> list[MetaTask]:
    """``tasks`` as MetaTasks (Tasks get 100 steps of 64), none of them held out."""
    if isinstance(tasks, (Task, MetaTask)) or not isinstance(tasks, Sequence) or not tasks:
        raise ValueError("tasks must be a non-empty list of MetaTask or Task")
    out = []
    for t in tasks:
        mt = t if isinstance(t, MetaTask) else MetaTask(t, 100, 64) if isinstance(t, Task) else None
        if mt is None:
            raise TypeError(f"tasks must hold MetaTask or Task; got {type(t).__name__}")
        check_not_held_out(mt.task.name)
        out.append(mt)
    return out


def _config_dict(cfg: MetaConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["inner_hidden"] = list(cfg.inner_hidden)
    return d


def _bar(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=done, desc="meta-train", unit="meta-step")


def plot_curve(history: Sequence[dict[str, Any]], path: PathLike) -> Path:
    """The meta-training curve as a PNG: the validation loss at g's prediction over the prior predictor's loss
    per meta-batch and, when a constant configuration was set, g's loss over the constant's on the same tasks (on
    a log scale: on a task the constant fits almost perfectly the ratio can reach thousands)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("objective", "val loss at g's u / prior-predictor loss")]
    if history and history[0].get("vs_constant") is not None:
        panels.append(("vs_constant", "val loss at g's u / at the constant's"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), squeeze=False)
    steps = [h["step"] for h in history]
    for ax, (key, label) in zip(axes[0], panels):
        vals = torch.tensor([h[key] for h in history], dtype=torch.float64)
        k = min(20, len(vals))
        ratio = key == "vs_constant"  # a ratio that can spike by orders of magnitude: log scale, geometric mean
        t = vals.clamp_min(1e-6).log() if ratio else vals
        smooth = t.unfold(0, k, 1).mean(1) if k else t
        smooth = smooth.exp() if ratio else smooth
        ax.plot(steps, vals.tolist(), lw=0.6, alpha=0.5, label="meta-batch")
        ax.plot(steps[k - 1:], smooth.tolist(), lw=2, label=f"moving {'geometric ' if ratio else ''}mean of {k}")
        if ratio:
            ax.axhline(1.0, color="gray", ls="--", lw=0.8)
            ax.set_yscale("log")
        ax.set_xlabel("meta-step")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle("meta-training curve")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


__all__ = ["VERSION", "KIND", "CHECKPOINT_KIND", "MetaConfig", "MetaLearner", "plot_curve"]
