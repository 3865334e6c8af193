"""What a tuner returns, :class:`TuneResult`, and what it says about itself: the report (``report.json``, the
same from Python and from ``metahp-fast tune``), the leaderboard and notes on the pick."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..files import json_safe
from ..model import layer_sizes
from ..search_space import LogUniform, SearchSpace
from ..tasks import Task


@dataclass
class TuneResult:
    """What a tuner found: the best candidate (by the validation objective) among those trained to the full
    ``steps``, as hyperparameters and as a plain model, with everything that was measured on the way. With
    ``folds``, ``best_val`` and the trials' validation metrics are means over the cuts, and ``best_model`` is
    the pick trained on the task's own train split. On a regression task the model predicts standardized
    targets, as it was trained: ``metahp_fast.model_file.in_target_units(model, task)`` answers in the
    target's units. ``init_hparams``: the warm start's center in natural values (None without one)."""

    method: str
    task: str
    seed: int
    budget: float
    objective: str
    best_hparams: dict[str, float]
    best_model: nn.Sequential
    best_val: dict[str, float]
    best_id: int
    history: list[dict[str, Any]]
    trials: list[dict[str, Any]]
    curves: dict[int, list[list[float]]]
    cost_steps: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    data: Optional[Task] = field(default=None, repr=False, compare=False)  # the task tuned on (CPU)
    init_hparams: Optional[dict[str, float]] = None
    pool: list[nn.Module] = field(default_factory=list, repr=False, compare=False)  # the best POOL_SIZE models
    pool_ids: list[int] = field(default_factory=list)
    _test: Optional[dict[str, float]] = field(default=None, init=False, repr=False, compare=False)

    def save(self, path: Union[str, os.PathLike], **info: Any) -> None:
        """Write the best model with the preprocessing its task's data needs (the best.pt ``metahp-fast tune``
        writes, through this method), its hyperparameters, architecture and training rule, its test metrics
        and ``info``: ``metahp_fast.load_model(path).predict(new_rows)`` then takes raw data."""
        from ..model_file import save_model
        task = self._task()
        c = self.config
        info.setdefault("test", self.test_metrics())
        save_model(path, self.best_model, task, hparams=self.best_hparams, method=self.method,
                   task=self.task, seed=self.seed, val=self.best_val, steps=c.get("steps"),
                   optimizer=c.get("optimizer"), activation=c.get("activation"), loss=task.loss,
                   layers=layer_sizes(self.best_model) or (task.layers(c["hidden"]) if "hidden" in c else None), **info)

    def refit(self, length: str = "best") -> "TuneResult":
        """This result with its pick retrained on the train and validation rows together, as
        ``GridSearchCV(refit=True)`` does: the chosen hyperparameters, the run's initial weights, and the chosen
        length: the step of the pick's best validation evaluation (``"best"``, early stopping) or the full
        ``steps`` (``"full"``), times (train + validation rows) / train rows, so the epochs stay the same.
        ``config["refit"]`` records it; the test metrics are those of the new model. If the retraining
        diverges, this result is returned as it is, with a warning."""
        from ..population import Population
        from ..seeds import derive_seed
        from ..training import TrainConfig, depths_of, hidden_for, split_structural
        if length not in ("best", "full"):
            raise ValueError(f"length must be 'best' or 'full'; got {length!r}")
        task, c = self._task(), self.config
        chosen = int(c["steps"])
        curve = [(s, v) for s, v in self.curves.get(self.best_id, []) if v is not None and math.isfinite(v)]
        stopped = [t["best_step"] for t in self.trials if t.get("id") == self.best_id and "best_step" in t]
        if length == "best" and stopped:  # early stopping chose it by the tuner's objective
            chosen = int(stopped[-1])
        elif length == "best" and curve:
            chosen = int(min(curve, key=lambda sv: sv[1])[0])
        rows = len(task.y_train) + len(task.y_val)
        steps = max(1, round(chosen * rows / len(task.y_train)))
        dtype = getattr(torch, str(c.get("dtype", "float32")))
        values = {k: torch.tensor([v]) for k, v in self.best_hparams.items()}
        hp, kwargs = split_structural(values)
        depth = depths_of(values)
        # the run's layer sizes for the pick's depth and its initial draw, cut to the pick's width
        hidden = hidden_for(SearchSpace.from_dict(c["space"]), TrainConfig(hidden=tuple(c["hidden"])),
                            None if depth is None else int(depth[0]))
        pop = Population(task.layers(hidden), 1, c["optimizer"], hp, nesterov=c.get("nesterov", False),
                         activation=c.get("activation", "relu"), loss=task.loss, seed=self.seed, dtype=dtype,
                         device=c.get("device", "cpu"), backend=c.get("backend", "auto"), precision=c.get("precision"),
                         **kwargs)
        x = torch.cat([task.x_train, task.x_val]).to(pop.device, dtype)
        y = torch.cat([task.y_train, task.y_val]).to(pop.device)
        pop.fit(x, y if task.is_classification else y.to(dtype), steps=steps, batch_size=int(c["batch_size"]),
                seed=derive_seed(self.seed, 0x5EF17), progress=False)
        if not bool(pop.alive[0]):
            warnings.warn("refit: the chosen hyperparameters diverged on the train and validation rows; keeping "
                          "the model trained on the train rows", RuntimeWarning, stacklevel=2)
            return self
        return dataclasses.replace(self, best_model=pop.to_module(0).cpu().eval(),
                                   config={**c, "refit": {"length": length, "steps": steps, "chosen_step": chosen,
                                                          "rows": rows}})

    def ensemble(self, size: int = 8) -> "TuneResult":
        """This result with its model replaced by an ensemble of the run's best models (its ``pool``: the best
        candidates trained the full steps), chosen by greedy ensemble selection on the validation split
        (:func:`metahp_fast.ensemble.greedy_selection`, ``size`` additions with replacement): never worse there
        than the single pick. ``config["ensemble"]`` records the members, weights and validation losses."""
        from ..ensemble import Ensemble, ensemble_loss, greedy_selection
        task = self._task()
        if not self.pool:
            raise ValueError("this result has no pool of models to ensemble (built by hand, or no candidate "
                             "finished training)")
        with torch.no_grad():
            dtype = next(self.pool[0].parameters()).dtype
            outs = torch.stack([m(task.x_val.to(dtype)) for m in self.pool]).double()
        y = task.y_val if task.is_classification else task.y_val.double()
        w = greedy_selection(outs, y, size, task.is_classification)
        chosen = w.nonzero().flatten().tolist()
        model = Ensemble([self.pool[i] for i in chosen], w[chosen].tolist(), task.is_classification).eval()
        single = ensemble_loss(outs[:1], torch.ones(1, dtype=torch.float64), y, task.is_classification)
        info = {"size": size, "members": [self.pool_ids[i] for i in chosen], "weights": w[chosen].tolist(),
                "val_loss": ensemble_loss(outs, w, y, task.is_classification), "single_val_loss": single}
        return dataclasses.replace(self, best_model=model, config={**self.config, "ensemble": info})

    def test_metrics(self) -> dict[str, float]:
        """The best model's loss and accuracy (classification) or RMSE (regression, in the target's units) on
        the task's test split; computed once."""
        if self._test is None:
            from ..objectives import model_metrics
            with torch.no_grad():
                self._test = model_metrics(self.best_model, self._task())
        return dict(self._test)

    def init_trial(self) -> Optional[dict[str, Any]]:
        """The trial that trained exactly the warm start's center (its first candidate), if the tuner trained
        one as a candidate (ES trains pairs around it instead); None without a warm start."""
        if not self.init_hparams:
            return None
        for t in sorted(self.trials, key=lambda t: t["id"]):
            if all(math.isclose(t["hparams"].get(k, math.nan), v, rel_tol=1e-5) for k, v in self.init_hparams.items()):
                return t
        return None

    def report(self, **extra: Any) -> dict[str, Any]:
        """The run as strict-JSON-ready data (non-finite numbers as None): the pick, its validation and test
        metrics, the cost, the data's classes and rows dropped, the network, every trial and round, and
        ``extra`` (what the caller adds, e.g. the command line's data argument)."""
        task, c = self._task(), self.config
        steps = c.get("steps") or 1
        report = {"method": self.method, "task": self.task, "seed": self.seed, "budget": self.budget,
                  "folds": c.get("folds", 1), "objective": self.objective, "best_hparams": self.best_hparams,
                  "validation": self.best_val, "test": self.test_metrics(),
                  "cost": {"candidate_steps": self.cost_steps, "full_trainings": self.cost_steps / steps,
                           "seconds": self.seconds},
                  "class_names": task.class_names, "n_rows_dropped": task.meta.get("n_rows_dropped", 0),
                  "layers": layer_sizes(self.best_model) or (task.layers(c["hidden"]) if "hidden" in c else None),
                  "activation": c.get("activation"), "optimizer": c.get("optimizer"), "config": c,
                  "history": self.history, "trials": self.trials,
                  "init_hparams": self.init_hparams, "init_trial": self.init_trial(), **extra}
        return json_safe(report)

    def save_report(self, path: Union[str, os.PathLike], **extra: Any) -> None:
        """Write :meth:`report` to ``path`` as strict JSON, replaced whole or not at all."""
        path = Path(path)
        text = json.dumps(self.report(**extra), indent=1, allow_nan=False)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def leaderboard(self, top: int = 5) -> str:
        """The best ``top`` of the candidates trained the full steps by validation loss, then diverged ones."""
        steps = self.config["steps"]
        full = [t for t in self.trials if t["steps"] >= steps]
        val = {"loss": torch.tensor([_num(t["val_loss"]) for t in full], dtype=torch.float64)}
        if full and "val_accuracy" in full[0]:
            val["accuracy"] = torch.tensor([_num(t["val_accuracy"]) for t in full], dtype=torch.float64)
        usable = torch.isfinite(val["loss"])
        hps = {k: torch.tensor([t["hparams"][k] for t in full], dtype=torch.float64) for k in self.best_hparams}
        diverged = sum(1 for t in self.trials if not math.isfinite(_num(t["val_loss"])))
        title = (f"leaderboard of the {int(usable.sum())} candidates trained the full {steps} steps "
                 f"({len(self.trials)} trained in all, {diverged} diverged)")
        return leaderboard(val, usable, hps, top, ids=[t["id"] for t in full], title=title)

    def notes(self) -> list[str]:
        """Notes on the pick worth a user's attention (a hyperparameter at an end of its range)."""
        space = self.config.get("space")
        return edge_notes(self.best_hparams, SearchSpace.from_dict(space)) if space else []

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, JSON-ready."""
        return {"method": self.method, "task": self.task, "seed": self.seed, "budget": self.budget,
                "objective": self.objective, "best_hparams": self.best_hparams, "best_val": self.best_val,
                "best_id": self.best_id,
                "cost_steps": self.cost_steps, "seconds": self.seconds, "config": self.config,
                "history": self.history, "trials": self.trials,
                "curves": {str(k): v for k, v in self.curves.items()}, "init_hparams": self.init_hparams}

    def _task(self) -> Task:
        if self.data is None:
            raise ValueError("this result does not carry its task (it was built by hand), which its test metrics, "
                             "report and model file need; save the model with "
                             "metahp_fast.model_file.save_model(path, result.best_model, task)")
        return self.data

    def __repr__(self) -> str:  # the trials and curves stay out: thousands of numbers
        hp = ", ".join(f"{k}={v:.3g}" for k, v in self.best_hparams.items())
        val = ", ".join(f"{k}={v:.4g}" for k, v in self.best_val.items())
        return (f"TuneResult({self.method} on {self.task!r}, seed {self.seed}: best candidate {self.best_id} "
                f"({hp}), val {val}; {len(self.trials)} trials, {self.cost_steps} candidate-steps, "
                f"{self.seconds:.1f} s)")


def _num(v: Any) -> float:
    """A metric as a float; None (a non-finite value after a JSON round trip) as NaN."""
    return math.nan if v is None else float(v)


def fmt_hparams(hp: dict[str, float]) -> str:
    """``lr=0.05, momentum=0.9``: hyperparameters in three significant digits."""
    return ", ".join(f"{k}={v:.3g}" for k, v in hp.items())


def leaderboard(val: dict[str, Tensor], usable: Tensor, hps: dict[str, Tensor], top: int,
                ids: Optional[Sequence[int]] = None, title: Optional[str] = None) -> str:
    """The best ``top`` candidates by validation loss, then the diverged ones (shown by ``ids[i]`` if given)."""
    name = (lambda i: str(ids[i])) if ids is not None else str
    order = [int(i) for i in torch.argsort(torch.where(usable, val["loss"], torch.inf)) if usable[i]]
    dead = [int(i) for i in torch.nonzero(~usable).flatten()]
    headers = ["rank", "id", *hps, "val_loss"] + (["val_acc"] if "accuracy" in val else [])
    rows = []
    for r, i in enumerate(order[:top], 1):
        row = [str(r), name(i), *(f"{float(v[i]):.3g}" for v in hps.values()), f"{float(val['loss'][i]):.4f}"]
        if "accuracy" in val:
            row.append(f"{float(val['accuracy'][i]):.4f}")
        rows.append(row)
    for i in dead[:top]:
        rows.append(["-", name(i), *(f"{float(v[i]):.3g}" for v in hps.values()), "diverged"]
                    + (["-"] if "accuracy" in val else []))
    widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    note = []
    if len(order) > top:
        note.append(f"{len(order) - top} more trained")
    if len(dead) > top:
        note.append(f"{len(dead) - top} more diverged")
    title = title or f"leaderboard ({len(order)} of {len(order) + len(dead)} candidates trained, {len(dead)} diverged)"
    return "\n".join([title, *lines] + ([f"({', '.join(note)} not shown)"] if note else []))


def edge_notes(hp: dict[str, float], space: SearchSpace) -> list[str]:
    """A line for each log-scaled hyperparameter the pick has at an end of its range (within 2% of the range on
    the log scale): the best value may lie beyond it."""
    out = []
    for name in space.dims:
        d = space[name]
        if isinstance(d, LogUniform) and name in hp and hp[name] > 0:
            pos = math.log(hp[name] / d.low) / math.log(d.high / d.low)
            if pos < 0.02 or pos > 0.98:
                end = "lower" if pos < 0.02 else "upper"
                out.append(f"the pick's {name}={hp[name]:.3g} is at the {end} end of the search space "
                           f"[{d.low:g}, {d.high:g}]; a better value may lie beyond it (widen the range: "
                           f"--space {name}=LOW:HIGH)")
    return out


__all__ = ["TuneResult", "edge_notes", "fmt_hparams", "leaderboard"]
