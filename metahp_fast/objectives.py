"""What the tuners minimise and report: validation objectives, the prior predictor's baseline, test metrics."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .tasks import Task

OBJECTIVES = ("loss", "error")


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
