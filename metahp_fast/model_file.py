"""best.pt: the chosen model saved with the preprocessing it needs, and :func:`load_model` to use it on new raw data.

The file is a dict (``torch.load(path, weights_only=False)``) whose ``model`` is a plain ``nn.Sequential`` that
takes standardized features ``(x - mean) / std``. A model trained on a CSV also keeps its raw columns (names, and
the categories of one-hot encoded ones), so :class:`SavedModel` can turn new CSV rows into those features.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .tasks import MISSING, MISSING_CATEGORY, Task, csv_rows
from .files import atomic_save

PathLike = Union[str, os.PathLike]


def preprocessing(task: Task) -> dict[str, Any]:
    """What a saved model needs besides its weights to be used on raw data like ``task``'s (``y_mean``/``y_std``:
    already folded into a regression model's last layer, kept for the record)."""
    return {"mean": task.mean.cpu(), "std": task.std.cpu(), "class_names": task.class_names,
            "columns": task.meta.get("columns"), "target": task.meta.get("target"),
            "n_features": task.n_features, "kind": "classification" if task.is_classification else "regression",
            "y_mean": None if task.y_mean is None else task.y_mean.cpu(),
            "y_std": None if task.y_std is None else task.y_std.cpu()}


def save_model(path: PathLike, model: nn.Module, task: Task, /, **info: Any) -> None:
    """Write ``model`` (CPU), the preprocessing for ``task``'s data and ``info`` to ``path`` atomically; for a
    regression, with the target's scaling folded into its last layer (its outputs in the target's units)."""
    saved = in_target_units(model, task)
    if saved is model:  # a classifier comes back as is: copy it, so the caller's module keeps its device and mode
        saved = copy.deepcopy(model)
    atomic_save({"model": saved.cpu().eval(), **preprocessing(task), **info}, path)


def in_target_units(model: nn.Module, task: Task) -> nn.Module:
    """``model`` trained on ``task``'s standardized regression targets, as a copy whose outputs are in the
    target's units (last Linear layer: ``W * y_std``, ``b * y_std + y_mean``); a classifier is returned as is."""
    if task.y_std is None:
        return model
    model = copy.deepcopy(model)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        std, mean = task.y_std.to(last.weight), task.y_mean.to(last.weight)
        last.weight.mul_(std[:, None])
        last.bias.mul_(std).add_(mean)
    return model


@dataclass
class SavedModel:
    """A model read from a best.pt: ``predict`` takes raw features (an array with the training columns' numbers,
    a CSV file, or rows as dicts of column -> value) and returns class names or regression values."""

    model: nn.Module
    mean: Tensor
    std: Tensor
    class_names: Optional[list[str]]
    columns: Optional[list[dict[str, Any]]]
    info: dict[str, Any]

    def features(self, data: Any) -> Tensor:
        """Standardized features (rows, n_features) for ``data``, in the model's dtype."""
        if isinstance(data, (str, os.PathLike)):
            data = _read_rows(os.fspath(data))
        if isinstance(data, Sequence) and data and isinstance(data[0], dict):
            x = encode_rows(self.columns, data)
        else:
            x = torch.as_tensor(np.asarray(data.detach().cpu() if isinstance(data, Tensor) else data,
                                           dtype=np.float64))
            if x.dim() == 1:  # one row, or for a one-feature model one value per row
                x = x[:, None] if self.mean.numel() == 1 else x[None]
            if x.dim() != 2 or x.shape[1] != self.mean.numel():
                raise ValueError(f"data must have {self.mean.numel()} feature columns (the encoded training "
                                 f"features); got shape {tuple(x.shape)}")
        dtype = next(self.model.parameters()).dtype  # float32, or what the tuner trained in (float64, ...)
        return ((x.double() - self.mean.double()) / self.std.double()).to(dtype)

    def outputs(self, data: Any) -> Tensor:
        """The model's raw outputs (logits, or regression values) for ``data``."""
        with torch.no_grad():
            return self.model(self.features(data))

    def predict(self, data: Any) -> Union[list[str], np.ndarray]:
        """Class names (classification) or an array of values (regression) for each row of ``data``."""
        out = self.outputs(data)
        if self.class_names is None:
            return out.squeeze(1).numpy() if out.shape[1] == 1 else out.numpy()
        return [self.class_names[int(i)] for i in out.argmax(1)]

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities (rows, classes), columns in the order of ``class_names``."""
        if self.class_names is None:
            raise ValueError("predict_proba needs a classification model; this one is a regression")
        return torch.softmax(self.outputs(data), 1).numpy()


def load_model(path: PathLike) -> SavedModel:
    """A best.pt written by ``metahp-fast tune``/``train`` (or :func:`save_model`), ready for raw data."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"path: no model file at {str(path)!r}")
    try:
        data = torch.load(path, weights_only=False)
    except Exception as e:
        raise ValueError(f"path: {str(path)!r} is not a model file from metahp-fast (torch.load failed with "
                         f"{type(e).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), nn.Module) or "mean" not in data:
        raise ValueError(f"path: {str(path)!r} is not a model file from metahp-fast (no model and mean/std)")
    known = ("model", "mean", "std", "class_names", "columns")
    return SavedModel(data["model"].eval(), data["mean"], data["std"], data.get("class_names"),
                      data.get("columns"), {k: v for k, v in data.items() if k not in known})


def encode_rows(columns: Optional[list[dict[str, Any]]], rows: Sequence[dict[str, Any]]) -> Tensor:
    """Rows (dicts of column name -> raw value) as the float64 features a CSV-trained model was trained on:
    numeric columns as numbers, categorical ones one-hot in the training categories' order."""
    if not columns:
        raise ValueError("rows as dicts need the model's columns, which only a model trained on a CSV file "
                         "keeps; pass the encoded features as an array instead")
    out = np.zeros((len(rows), sum(len(c["categories"] or [None]) for c in columns)))
    for i, row in enumerate(rows):
        j = 0
        for col in columns:
            name, cats = col["name"], col["categories"]
            if name not in row:
                raise ValueError(f"row {i} has no column {name!r}; the model needs {[c['name'] for c in columns]}")
            v = str(row[name]).strip()
            if v.lower() in MISSING:  # filled as in training (missing="fill"), or refused
                if cats is None and "fill" in col:
                    v = str(col["fill"])
                elif cats is not None and MISSING_CATEGORY in cats:
                    v = MISSING_CATEGORY
                else:
                    raise ValueError(f"row {i}, column {name!r}: a missing value; the model was trained without "
                                     "them (tune with --missing fill to train one that takes them)")
            if cats is None:
                try:
                    out[i, j] = float(v)
                except ValueError:
                    raise ValueError(f"row {i}, column {name!r}: {v!r} is not a number") from None
                j += 1
            else:
                if v not in cats:
                    raise ValueError(f"row {i}, column {name!r}: {v!r} is not one of the categories the model "
                                     f"was trained on {cats}")
                out[i, j + cats.index(v)] = 1.0
                j += len(cats)
    return torch.as_tensor(out)


def _read_rows(path: str) -> list[dict[str, str]]:
    """A CSV file with a header row as a list of dicts."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such data file: {path!r}")
    rows = csv_rows(path)  # the same reader, separators included, as training's
    if len(rows) < 2:
        raise ValueError(f"{path!r} has no data rows")
    header = [h.strip() for h in rows[0]]
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:  # a dict keeps one of them: the model would read the wrong column
        raise ValueError(f"{path!r}: the header names {twice} more than once; the model finds its columns by name")
    return [dict(zip(header, r)) for r in rows[1:]]


__all__ = ["SavedModel", "encode_rows", "in_target_units", "load_model", "preprocessing", "save_model"]
