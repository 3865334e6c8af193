"""The conditioned portfolio: ``g(task encoding, budget, k) -> k configurations``, meta-trained by gradient descent
on a soft minimum over its k members of the normalized validation loss after training.

The loss after training comes from a differentiable surrogate of the meta-dataset (per training dataset and
budget, a kernel regression over its M trained configurations; or one MLP ``s(encoding, u, budget)``), and can
then be fine-tuned on real tasks with the ES hypergradient through the batched inner loop
(:meth:`ConditionedPortfolio.fine_tune_es`). Members live in the space's unconstrained coordinates ``u``: the
network outputs ``z`` in (0, 1)^d through a sigmoid and ``u = low + (high - low) z``, so every proposal is inside
the space's ranges. With k = 1 it is a point predictor, as :class:`~metahp_fast.meta.MetaLearner`.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..files import load_file, save_file
from ..hypergrad import antithetic_directions, es_gradient
from ..search_space import SearchSpace, u_bounds
from ..seeds import derive_seed
from ..tasks import Task
from ..training import TrainConfig, validation_objective
from .encoder import FEATURES, encode
from .metadataset import MetaDataset
from .portfolio import _check_k, greedy_portfolio
from .shipped import shipped_file

PathLike = Union[str, os.PathLike]
#: The kind of file (see :func:`metahp_fast.files.save_file`) of a saved conditioned portfolio.
KIND = "conditioned-portfolio"
#: The encoding's entries that describe the budget (rewritten per learning-curve point).
BUDGET_FEATURES = ("log_steps", "log_batch_size", "log_epochs")
#: Normalized losses above this count as this (a diverged or hopeless configuration).
CAP = 3.0


@dataclass(frozen=True)
class PortfolioConfig:
    """g's size, its meta-training and the budget rule a proposal without a budget uses (the meta-dataset's)."""

    max_k: int = 16
    hidden: int = 64
    tau: float = 0.05
    bandwidth: float = 0.15
    prior: float = 0.3
    meta_steps: int = 800
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-3
    noise: float = 0.1
    surrogate: str = "kernel"
    epochs: float = 10.0
    max_steps: int = 600
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_k", "hidden", "meta_steps", "batch", "max_steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        for name in ("tau", "bandwidth", "lr", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ValueError(f"{name} must be a positive number; got {v!r}")
        for name in ("weight_decay", "noise", "prior"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise ValueError(f"{name} must be a non-negative number; got {v!r}")
        if self.surrogate not in ("kernel", "mlp"):
            raise ValueError(f"surrogate must be 'kernel' or 'mlp'; got {self.surrogate!r}")


def with_budget(enc: Tensor, steps: Union[int, Tensor], batch_size: int) -> Tensor:
    """Encodings (..., F) with their budget entries rewritten for ``steps`` steps of ``batch_size`` rows (the
    rows come from the encoding's own ``log_rows``): one task's encoding serves every point of a learning curve."""
    out = enc.clone().float()
    steps = torch.as_tensor(steps, dtype=torch.float32)
    rows = out[..., FEATURES.index("log_rows")].exp()
    out[..., FEATURES.index("log_steps")] = steps.log()
    out[..., FEATURES.index("log_batch_size")] = math.log(batch_size)
    out[..., FEATURES.index("log_epochs")] = (steps * torch.clamp(rows, max=float(batch_size)) / rows).log()
    return out


class KernelSurrogate:
    """Per row (a training dataset at one budget): a Nadaraya-Watson regression of its normalized validation
    losses over the M configurations' ``z`` (Gaussian kernel of width ``bandwidth``), with a pseudo-observation
    of the median (1) of weight ``prior``: away from the configurations measured it reads the median, so g
    cannot chase an extrapolation into the corners of the space. Smooth and differentiable in ``z``."""

    def __init__(self, z: Tensor, y: Tensor, bandwidth: float, prior: float = 0.3):
        self.z, self.y, self.bandwidth = z.float(), y.float().clamp(0, CAP), float(bandwidth)
        self.log_prior = math.log(prior) if prior > 0 else -math.inf

    def __call__(self, rows: Tensor, enc: Optional[Tensor], zq: Tensor) -> Tensor:
        """Losses (B, k) of the members ``zq`` (B, k, d) on ``rows`` (B,) (``enc`` unused: the row says it all)."""
        a = -((zq.unsqueeze(2) - self.z) ** 2).sum(-1) / (2 * self.bandwidth ** 2)  # (B, k, M)
        a = torch.cat([a, torch.full(a.shape[:2] + (1,), self.log_prior)], -1)
        y = torch.cat([self.y[rows], torch.ones(len(rows), 1)], -1)
        return (torch.softmax(a, dim=-1) * y.unsqueeze(1)).sum(-1)


class MLPSurrogate(nn.Module):
    """One MLP ``s(encoding, z) -> normalized validation loss`` fit by least squares on every (row, config)
    pair of the meta-dataset (budget inside the encoding): it shares what it learns across tasks."""

    def __init__(self, n_features: int, dim: int, hidden: int = 128, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(n_features + dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, 1))

    def fit(self, enc: Tensor, z: Tensor, y: Tensor, steps: int = 3000, batch: int = 512, seed: int = 0) -> float:
        """Least squares on all pairs (rows of ``enc`` (N, F) x configurations ``z`` (M, d), targets ``y``
        (N, M)); returns the final training mean squared error."""
        gen = torch.Generator().manual_seed(seed)
        y = y.float().clamp(0, CAP)
        opt = torch.optim.Adam(self.parameters(), lr=2e-3)
        n, m = y.shape
        loss = torch.zeros(())
        for _ in range(steps):
            i = torch.randint(n, (batch,), generator=gen)
            j = torch.randint(m, (batch,), generator=gen)
            loss = ((self.net(torch.cat([enc[i], z[j]], 1)).squeeze(1) - y[i, j]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        for p in self.parameters():
            p.requires_grad_(False)
        return float(loss.detach())

    def __call__(self, rows: Tensor, enc: Tensor, zq: Tensor) -> Tensor:
        b, k, _ = zq.shape
        x = torch.cat([enc.unsqueeze(1).expand(b, k, enc.shape[-1]), zq], -1)
        return self.net(x).squeeze(-1)


def soft_min(losses: Tensor, tau: float) -> Tensor:
    """``-tau * log(mean(exp(-L / tau)))`` over the last axis: the minimum as tau -> 0, the mean as tau -> inf
    (members other than the best still get gradient, so none is wasted)."""
    return -tau * (torch.logsumexp(-losses / tau, dim=-1) - math.log(losses.shape[-1]))


class ConditionedPortfolio:
    """``propose(task, k, budget)`` -> k configurations for ``task`` (natural values, name -> (k,) float64),
    from a network of the task's encoding, the budget and k.

    >>> p = ConditionedPortfolio.pretrained()
    >>> p.propose(load_task("keel:pima", fold=0), k=8)   # {"lr": tensor([...8 values]), "beta1": ..., ...}
    """

    def __init__(self, space: SearchSpace, config: Optional[PortfolioConfig] = None):
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace; got {type(space).__name__}")
        if not space.dims:
            raise ValueError("space must have at least one non-fixed hyperparameter")
        self.config = config or PortfolioConfig()
        if not isinstance(self.config, PortfolioConfig):
            raise TypeError(f"config must be a PortfolioConfig; got {type(config).__name__}")
        self.space = space
        c, d = self.config, len(space.dims)
        torch.manual_seed(c.seed)
        self.net = nn.Sequential(nn.Linear(len(FEATURES) + 1, c.hidden), nn.Tanh(), nn.Linear(c.hidden, c.hidden),
                                 nn.Tanh(), nn.Linear(c.hidden, c.max_k * d))
        with torch.no_grad():
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.zero_()
        self.base = nn.Parameter(torch.zeros(c.max_k, d))  # the members' logits for the mean task
        self.in_mean, self.in_std = torch.zeros(len(FEATURES)), torch.ones(len(FEATURES))
        self.low, self.high = (b.float() for b in u_bounds(space))
        self.history: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}

    def __repr__(self) -> str:
        return (f"ConditionedPortfolio({self.space.optimizer}: up to {self.config.max_k} configurations of "
                f"{', '.join(self.space.dims)}; {self.info.get('meta_steps', 0)} meta-steps done)")

    # ---------------------------------------------------------------- the map
    def _z(self, enc: Tensor, k: int) -> Tensor:
        """Members ``z`` (B, k, d) in (0, 1) for encodings (B, F)."""
        x = ((enc.float() - self.in_mean) / self.in_std).clamp(-3, 3)  # a task or budget unlike any seen: the edge
        kk = torch.full((x.shape[0], 1), math.log(k) / math.log(max(2, self.config.max_k)))
        out = self.net(torch.cat([x, kk], 1)).view(x.shape[0], self.config.max_k, -1)[:, :k]
        return torch.sigmoid(self.base[:k] + out)

    def to_u(self, z: Tensor) -> Tensor:
        return self.low + (self.high - self.low) * z

    def to_z(self, u: Tensor) -> Tensor:
        return ((u.float() - self.low) / (self.high - self.low)).clamp(0, 1)

    def steps_for(self, task: Task, budget: Optional[int]) -> int:
        """``budget`` (steps of one full training) as given, or the meta-dataset's rule for ``task``."""
        if budget is None:
            n = len(task.y_train)
            c = self.config
            return max(1, min(c.max_steps, math.ceil(c.epochs * n / min(c.batch_size, n))))
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be a positive int (steps of one full training) or None; got {budget!r}")
        return budget

    def propose_u(self, task: Task, k: int = 8, budget: Optional[int] = None,
                  batch_size: Optional[int] = None) -> Tensor:
        """The k members (k, d) float64 in ``u`` for ``task`` trained ``budget`` steps of ``batch_size``."""
        if not isinstance(task, Task):
            raise TypeError(f"task must be a Task; got {type(task).__name__}")
        _check_k(k, self.config.max_k)
        bs = self.config.batch_size if batch_size is None else batch_size
        steps = self.steps_for(task, budget)
        if not task.is_classification:
            warnings.warn(f"{task.name}: a regression task, but the portfolio was meta-trained on classification "
                          "tasks only; its proposal is an extrapolation", stacklevel=3)
        enc = encode(task, steps, bs, self.space.optimizer or "adamw").cpu().unsqueeze(0)
        with torch.no_grad():
            return self.to_u(self._z(enc, k))[0].double()

    def propose(self, task: Task, k: int = 8, budget: Optional[int] = None,
                batch_size: Optional[int] = None) -> dict[str, Tensor]:
        """The k members as natural values (name -> (k,) float64, fixed ones included, integers rounded)."""
        u = self.propose_u(task, k, budget, batch_size)
        return {n: v.double() for n, v in self.space.from_unconstrained(u, round_ints=True,
                                                                       include_fixed=True).items()}

    # ---------------------------------------------------------------- meta-training on a meta-dataset
    def fit(self, curves: Sequence[MetaDataset], steps: Sequence[Tensor], encodings: Tensor,
            progress: bool = False) -> "ConditionedPortfolio":
        """Meta-train on a meta-dataset's learning curve: ``curves[c]`` the losses at point c (one
        :class:`MetaDataset` each, same datasets and configurations), ``steps[c]`` (D, F) the steps trained by
        then per dataset and fold, ``encodings`` (D, F, len(FEATURES)) each fold's task encoding (budget entries
        are rewritten per point). The loss is the soft minimum over k of the surrogate's normalized validation
        loss, k drawn from 1..max_k each step."""
        if not curves or len(curves) != len(steps):
            raise ValueError("curves and steps must be non-empty lists of the same length")
        c0, cfg = curves[0], self.config
        if c0.space.dims != self.space.dims:
            raise ValueError(f"the meta-dataset tunes {list(c0.space.dims)}, this portfolio {list(self.space.dims)}")
        d_count, f_count = len(c0.datasets), c0.val.shape[1]
        if encodings.shape[:2] != (d_count, f_count) or encodings.shape[2] != len(FEATURES):
            raise ValueError(f"encodings must have shape ({d_count}, {f_count}, {len(FEATURES)}); "
                             f"got {tuple(encodings.shape)}")
        z = self.to_z(c0.u)
        rows_y, rows_enc, rows_of = [], [], []
        for c, (meta, st) in enumerate(zip(curves, steps)):
            rows_y.append(meta.normalized("val").float())
            for d in range(d_count):
                present = [f for f in range(f_count) if not torch.isnan(meta.val[d, f]).all()]
                for f in present:
                    rows_enc.append(with_budget(encodings[d, f], int(st[d, f]), cfg.batch_size))
                    rows_of.append(c * d_count + d)
        y = torch.cat(rows_y)  # (C * D, M)
        enc = torch.stack(rows_enc)
        rows = torch.tensor(rows_of)
        self.in_mean = enc.mean(0)
        std = enc.std(0, unbiased=False)
        self.in_std = torch.where(std > 1e-3, std, torch.ones(()))
        with torch.no_grad():  # start at the greedy portfolio of the final point: the static baseline
            order = greedy_portfolio(curves[-1].normalized("val"), min(cfg.max_k, z.shape[0]))
            order += order[:cfg.max_k - len(order)]
            self.base.copy_(torch.logit(z[order].clamp(1e-3, 1 - 1e-3)))
        if cfg.surrogate == "kernel":
            surrogate: Any = KernelSurrogate(z, y, cfg.bandwidth, cfg.prior)
        else:
            surrogate = MLPSurrogate(enc.shape[1], z.shape[1], seed=cfg.seed)
            mse = surrogate.fit((enc - self.in_mean) / self.in_std, z, y[rows], seed=cfg.seed)
            self.info["surrogate_mse"] = mse
            rows = torch.arange(len(rows))
        self.info["meta_steps"] = self.info.get("meta_steps", 0) + cfg.meta_steps
        params = list(self.net.parameters()) + [self.base]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        t0 = time.perf_counter()
        for step in range(cfg.meta_steps):
            i = torch.randint(len(rows), (cfg.batch,), generator=gen)
            k = int(torch.randint(1, cfg.max_k + 1, (1,), generator=gen))
            e = enc[i] + cfg.noise * self.in_std * torch.randn(enc[i].shape, generator=gen)
            zq = self._z(e, k)
            s_in = (enc[i] - self.in_mean) / self.in_std if cfg.surrogate == "mlp" else enc[i]
            loss = soft_min(surrogate(rows[i], s_in, zq), cfg.tau).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 50 == 0 or step == cfg.meta_steps - 1:
                self.history.append({"step": step, "k": k, "loss": float(loss.detach()),
                                     "seconds": time.perf_counter() - t0})
        return self

    # ---------------------------------------------------------------- fine-tuning with the ES hypergradient
    def fine_tune_es(self, tasks: Sequence[Task], k: int = 8, meta_steps: int = 4, sigma: float = 0.5,
                     n_pairs: int = 2, lr: float = 1e-3, hidden: Sequence[int] = (128,), seed: int = 0) -> list[dict]:
        """Fine-tune g on real tasks: per task and meta-step, every member's ES hypergradient (``n_pairs``
        antithetic pairs around each, all members and pairs trained as one population for the meta-dataset's
        budget) is weighted by the soft-min weights of the members' measured losses and chained into g by
        autograd. Returns, per meta-step, the mean soft-min of the measured validation losses (normalized by
        each task's median over the rows trained)."""
        _check_k(k, self.config.max_k)
        cfg = self.config
        encs, configs = [], []
        for t in tasks:
            st = self.steps_for(t, None)
            encs.append(encode(t, st, cfg.batch_size, self.space.optimizer or "adamw").cpu())
            configs.append(TrainConfig(hidden=tuple(hidden), steps=st, batch_size=cfg.batch_size,
                                       optimizer=self.space.optimizer or "adamw", backend="torch"))
        opt = torch.optim.Adam(list(self.net.parameters()) + [self.base], lr=lr)
        log = []
        for step in range(meta_steps):
            opt.zero_grad()
            measured = []
            for i, (t, e, tc) in enumerate(zip(tasks, encs, configs)):
                u = self.to_u(self._z(e.unsqueeze(0), k))[0]  # (k, d), differentiable
                s = derive_seed(seed, step, i)
                eps = antithetic_directions(n_pairs, u.shape[1], s)
                c = u.detach().double()
                plus = (c.unsqueeze(1) + sigma * eps).reshape(-1, u.shape[1])
                minus = (c.unsqueeze(1) - sigma * eps).reshape(-1, u.shape[1])
                lo, hi = self.low.double(), self.high.double()
                rows = torch.cat([c, plus, minus]).clamp(lo, hi)
                losses = validation_objective(t, self.space, rows, tc, s).double()
                finite = losses[torch.isfinite(losses)]
                scale = float(finite.median()) if len(finite) else 1.0
                cap = 3 * scale
                center = losses[:k].nan_to_num(cap, cap).clamp(max=cap) / scale
                weights = torch.softmax(-center / cfg.tau, 0)
                grads = []
                for j in range(k):
                    pm = torch.cat([losses[k:][j * n_pairs:(j + 1) * n_pairs],
                                    losses[k + k * n_pairs:][j * n_pairs:(j + 1) * n_pairs]])
                    grads.append(es_gradient(pm, eps, sigma, cap=cap)[0] / scale)
                g = weights.unsqueeze(1) * torch.stack(grads)
                (u * g.float()).sum().div(len(tasks)).backward()
                measured.append(float(soft_min(center.unsqueeze(0), cfg.tau)))
            nn.utils.clip_grad_norm_(list(self.net.parameters()) + [self.base], 1.0)
            opt.step()
            log.append({"step": step, "soft_min_val": sum(measured) / len(measured)})
        self.info.setdefault("es_fine_tune", []).extend(log)
        return log

    # ---------------------------------------------------------------- files
    def save(self, path: PathLike) -> None:
        """Write the portfolio atomically as a file that loads with ``torch.load(weights_only=True)``."""
        save_file(path, KIND, {"space": self.space.to_dict(), "config": asdict(self.config),
                               "features": list(FEATURES), "net": {k: v.detach().clone()
                                                                   for k, v in self.net.state_dict().items()},
                               "base": self.base.detach().clone(), "in_mean": self.in_mean.clone(),
                               "in_std": self.in_std.clone(), "history": list(self.history),
                               "info": _plain(self.info)})

    @classmethod
    def load(cls, path: PathLike) -> "ConditionedPortfolio":
        """A portfolio written by :meth:`save` (read with ``weights_only=True``: nothing in the file can run)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"path: no portfolio file at {str(path)!r}")
        data = load_file(path, KIND)
        if data.get("features") != list(FEATURES):
            raise ValueError(f"path: {str(path)!r} was made with other encoder features; retrain it")
        try:
            p = cls(SearchSpace.from_dict(data["space"]), PortfolioConfig(**data["config"]))
            p.net.load_state_dict(data["net"])
            with torch.no_grad():
                p.base.copy_(data["base"])
            p.in_mean, p.in_std = data["in_mean"].float(), data["in_std"].float()
            p.history, p.info = list(data["history"]), dict(data["info"])
            if p.in_mean.shape != (len(FEATURES),) or p.in_std.shape != (len(FEATURES),):
                raise ValueError("input statistics of the wrong length")
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"path: {str(path)!r} is a damaged or edited portfolio file ({type(e).__name__}: "
                             f"{e})") from None
        return p

    @classmethod
    def pretrained(cls, optimizer: str = "adamw") -> "ConditionedPortfolio":
        """The portfolio shipped inside the package (``pretrained_portfolio_<optimizer>.pt``)."""
        return cls.load(shipped_file("portfolio", optimizer, "conditioned portfolio"))


def _plain(obj: Any) -> Any:
    """JSON-compatible copy (floats for tensors of one value)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Tensor):
        return obj.tolist()
    return obj


def curve_metadatasets(parts: Sequence[dict], space: SearchSpace, u: Tensor) -> tuple[list[MetaDataset],
                                                                                         list[Tensor], list[str]]:
    """From loaded part records (``build_metadataset.py``'s), one :class:`MetaDataset` per learning-curve point,
    the steps (D, F) trained by each point, and the dataset names."""
    names = sorted({p["dataset"] for p in parts})
    n_folds = 1 + max(int(p["fold"]) for p in parts)
    n_points = len(parts[0]["checkpoints"])
    metas, steps = [], []
    for c in range(n_points):
        val = torch.full((len(names), n_folds, u.shape[0]), float("nan"), dtype=torch.float64)
        test, st = val.clone(), torch.zeros(len(names), n_folds, dtype=torch.long)
        for p in parts:
            d, f = names.index(p["dataset"]), int(p["fold"])
            val[d, f], test[d, f], st[d, f] = p["val_loss"][c], p["test_loss"][c], int(p["checkpoints"][c])
        metas.append(MetaDataset(space, u, names, val, test))
        steps.append(st)
    return metas, steps, names


__all__ = ["KIND", "PortfolioConfig", "ConditionedPortfolio", "KernelSurrogate", "MLPSurrogate", "soft_min",
           "with_budget", "curve_metadatasets"]
