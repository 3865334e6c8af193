"""best.pt: the chosen model saved with the preprocessing it needs, and :func:`load_model` to use it on new raw data.

The file (a :func:`metahp_fast.files.save_file` file of kind ``"model"``) holds only tensors and JSON-compatible
values, so ``torch.load(path, weights_only=True)`` reads it and loading one can never run code:

- ``network``: the ``nn.Sequential`` as its module list (``"linear"``, ``"relu"``, ..., ``"dropout"``), its
  ``state_dict``, its dtype's name and its dropout probabilities (module index -> p); :func:`load_model` rebuilds
  it. It takes the scaled features.
- ``preprocessing``: ``scaling``, the feature scaling fitted on the train split
  (:meth:`metahp_fast.preprocessing.Scaler.to_dict`: kind, centre, scale, clip, quantiles, rows; a file without it is
  standardized), ``mean``/``std`` (its centre and scale), the classes (``class_names`` to show, ``labels`` to
  return: the training labels in their own type), and for a model trained on a table (CSV file or DataFrame) its
  raw ``columns`` (names, categories of one-hot encoded ones, fill values), so :class:`SavedModel` encodes new
  rows the same way.
- ``info``: what was saved with it (hyperparameters, architecture, metrics, ...).
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .ensemble import Ensemble
from .model import ACTIVATION_MODULES
from .preprocessing import Scaler
from .files import FORMAT_VERSION, UnsafeFileError, load_file, save_file
from .tasks import Task, _is_pandas, _series_column, apply_columns, csv_rows

PathLike = Union[str, os.PathLike]
#: The kind of file :func:`save_model` writes (see :func:`metahp_fast.files.save_file`).
KIND = "model"
#: Module name in the file -> constructor; a GELU with the tanh approximation is "gelu_tanh".
_MODULES = {**ACTIVATION_MODULES, "gelu_tanh": lambda: nn.GELU(approximate="tanh")}
_NAMES = {cls: name for name, cls in ACTIVATION_MODULES.items()}


def preprocessing(task: Task) -> dict[str, Any]:
    """What a saved model needs besides its weights to be used on raw data like ``task``'s (``y_mean``/``y_std``:
    already folded into a regression model's last layer, kept for the record)."""
    labels = None
    if task.is_classification:
        labels = list(task.meta.get("labels") or task.class_names)
    return {"mean": task.mean.detach().cpu().clone(), "std": task.std.detach().cpu().clone(),
            "scaling": task.preprocessor.to_dict(),
            "class_names": None if task.class_names is None else list(task.class_names), "labels": labels,
            "columns": copy.deepcopy(task.meta.get("columns")), "target": task.meta.get("target"),
            "n_features": task.n_features, "kind": "classification" if task.is_classification else "regression",
            "y_mean": None if task.y_mean is None else task.y_mean.detach().cpu().clone(),
            "y_std": None if task.y_std is None else task.y_std.detach().cpu().clone()}


def save_model(path: PathLike, model: nn.Module, task: Task, /, **info: Any) -> None:
    """Write ``model`` (an ``nn.Sequential`` of Linear layers and activations), the preprocessing for ``task``'s
    data and ``info`` (JSON-compatible values and tensors) to ``path`` atomically; for a regression, with the
    target's scaling folded into its last layer (its outputs in the target's units)."""
    network = network_dict(in_target_units(model, task))
    save_file(path, KIND, {"network": network, "preprocessing": preprocessing(task), "info": _plain(info)})


def network_dict(model: nn.Module) -> dict[str, Any]:
    """``model`` as plain data: its module names, its state tensors (CPU copies) and its dtype's name; an
    :class:`~metahp_fast.ensemble.Ensemble` as its members' and their weights."""
    if isinstance(model, Ensemble):
        return {"ensemble": [network_dict(m) for m in model.members], "weights": model.weights.detach().cpu().clone(),
                "classification": model.classification}
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential (what Population.to_module gives); got "
                        f"{type(model).__name__}")
    names, dropout = [], {}
    for i, m in enumerate(model):
        if isinstance(m, nn.Linear):
            names.append("linear")
        elif isinstance(m, nn.Dropout):
            names.append("dropout")
            dropout[str(i)] = float(m.p)
        elif isinstance(m, nn.GELU) and m.approximate == "tanh":
            names.append("gelu_tanh")
        elif type(m) in _NAMES:
            names.append(_NAMES[type(m)])
        else:
            raise TypeError(f"model[{i}] is a {type(m).__name__}; a saved model is a sequence of nn.Linear layers "
                            f"and {', '.join(ACTIVATION_MODULES)} activations (and nn.Dropout)")
    params = list(model.parameters())
    if not params:
        raise ValueError("model has no Linear layer")
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1:
        raise TypeError(f"model's parameters must share one dtype; got {sorted(map(str, dtypes))}")
    return {"modules": names, "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "dtype": str(params[0].dtype).removeprefix("torch."), "dropout": dropout}


def build_network(network: Mapping[str, Any]) -> nn.Module:
    """The ``nn.Sequential`` (or ``Ensemble`` of them; CPU, eval mode) that :func:`network_dict` describes."""
    if "ensemble" in network:
        return Ensemble([build_network(m) for m in network["ensemble"]], network["weights"].tolist(),
                        bool(network["classification"])).eval()
    dtype = getattr(torch, str(network["dtype"]), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype {network['dtype']!r} is not a floating torch dtype")
    state, mods = network["state"], []
    for i, name in enumerate(network["modules"]):
        if name == "linear":
            out_features, in_features = state[f"{i}.weight"].shape
            mods.append(nn.Linear(in_features, out_features, bias=f"{i}.bias" in state, dtype=dtype))
        elif name == "dropout":
            mods.append(nn.Dropout(float(network.get("dropout", {}).get(str(i), 0.0))))
        elif name in _MODULES:
            mods.append(_MODULES[name]())
        else:
            raise ValueError(f"module {i} is {name!r}, not one of {['linear', 'dropout', *_MODULES]}")
    model = nn.Sequential(*mods)
    model.load_state_dict(state)
    return model.eval()


def in_target_units(model: nn.Module, task: Task) -> nn.Module:
    """``model`` trained on ``task``'s standardized regression targets, as a copy whose outputs are in the
    target's units (last Linear layer: ``W * y_std``, ``b * y_std + y_mean``); a classifier is returned as is."""
    if task.y_std is None:
        return model
    model = copy.deepcopy(model)
    for member in (model.members if isinstance(model, Ensemble) else [model]):  # an average of scaled outputs
        last = [m for m in member.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            std, mean = task.y_std.to(last.weight), task.y_mean.to(last.weight)
            last.weight.mul_(std[:, None])
            last.bias.mul_(std).add_(mean)
    return model


def _plain(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays as Python values and tensors, which a safe file holds."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.as_tensor(obj)
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


@dataclass
class SavedModel:
    """A model read from a best.pt: ``predict`` takes raw features (an array with the training columns' numbers,
    a CSV file, a pandas DataFrame, or rows as dicts of column -> value) and returns the training labels (in
    their own type: ints, strings, ...) or regression values."""

    model: nn.Module
    mean: Tensor
    std: Tensor
    class_names: Optional[list[str]]
    columns: Optional[list[dict[str, Any]]]
    info: dict[str, Any]
    labels: Optional[list[Any]] = field(default=None)
    #: The feature scaling fitted in training; None: ``(x - mean) / std``.
    scaler: Optional[Scaler] = field(default=None)

    def features(self, data: Any) -> Tensor:
        """Scaled features (rows, n_features) for ``data``, as the training rows were scaled, in the model's
        dtype."""
        if isinstance(data, (str, os.PathLike)):
            data = _read_rows(os.fspath(data))
        if _is_pandas(data, "DataFrame") and self.columns:
            x = encode_frame(self.columns, data)
        elif isinstance(data, Sequence) and data and isinstance(data[0], dict):
            x = encode_rows(self.columns, data)
        else:
            x = torch.as_tensor(_numbers(data))
            if x.dim() == 1:  # one row, or for a one-feature model one value per row
                x = x[:, None] if self.mean.numel() == 1 else x[None]
            if x.dim() != 2 or x.shape[1] != self.mean.numel():
                raise ValueError(f"data must have {self.mean.numel()} feature columns (the encoded training "
                                 f"features); got shape {tuple(x.shape)}")
        dtype = next(self.model.parameters()).dtype  # float32, or what the tuner trained in (float64, ...)
        scaler = self.scaler if self.scaler is not None else Scaler.standard(self.mean, self.std)
        return scaler.transform(x.double()).to(dtype)

    def outputs(self, data: Any) -> Tensor:
        """The model's raw outputs (logits, or regression values) for ``data``."""
        with torch.no_grad():
            return self.model(self.features(data))

    def predict(self, data: Any) -> Union[list[Any], np.ndarray]:
        """The label (as trained: an int, a string, ...) of each row of ``data`` (classification), or an array of
        values (regression)."""
        out = self.outputs(data)
        if self.class_names is None:
            return out.squeeze(1).numpy() if out.shape[1] == 1 else out.numpy()
        labels = self.labels if self.labels is not None else self.class_names
        return [labels[int(i)] for i in out.argmax(1)]

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities (rows, classes), columns in the order of ``class_names``."""
        if self.class_names is None:
            raise ValueError("predict_proba needs a classification model; this one is a regression")
        return torch.softmax(self.outputs(data), 1).numpy()


def read_model_file(path: PathLike) -> dict[str, Any]:
    """A best.pt's contents as one dict: ``model`` (the rebuilt ``nn.Sequential``), the preprocessing (``scaler``,
    a :class:`~metahp_fast.preprocessing.Scaler`; ``mean``, ``std``, ``class_names``, ``labels``, ``columns``,
    ``kind``, ...) and what was saved with it (``hparams``, ``layers``, ...). Refuses files that need pickle
    (:class:`~metahp_fast.files.UnsafeFileError`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"path: no model file at {str(path)!r}")
    try:
        data = load_file(path, KIND)
    except UnsafeFileError:
        raise
    except ValueError as e:
        why = str(e).removeprefix(f"{Path(path)} ")
        raise ValueError(f"path: {str(path)!r} is not a model file of format {FORMAT_VERSION} from metahp-fast "
                         f"(a best.pt written by `metahp-fast tune`/`train` or save_model): it {why}") from None
    try:
        pre, info = dict(data["preprocessing"]), dict(data["info"])
        model = build_network(data["network"])
        first = next(m for m in model.modules() if isinstance(m, nn.Linear))
        for k in ("mean", "std"):
            if not isinstance(pre[k], Tensor) or pre[k].shape != (first.in_features,):
                raise ValueError(f"{k} does not match the model's {first.in_features} inputs")
        scaling = pre.pop("scaling", None)  # files from before scalers: standardized
        pre["scaler"] = Scaler.from_dict(scaling) if scaling is not None else Scaler.standard(pre["mean"], pre["std"])
        if pre["scaler"].n_features != first.in_features:
            raise ValueError(f"scaling does not match the model's {first.in_features} inputs")
        classes, labels = pre.get("class_names"), pre.get("labels")
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        if classes is not None and len(classes) != last.out_features:
            raise ValueError(f"{len(classes)} class names for {last.out_features} outputs")
        if labels is not None and (classes is None or len(labels) != len(classes)):
            raise ValueError("labels do not match class_names")
    except (KeyError, TypeError, ValueError, RuntimeError, StopIteration) as e:
        raise ValueError(f"path: {str(path)!r} is a damaged or edited model file ({type(e).__name__}: {e})") from None
    return {"model": model, **info, **pre}


def load_model(path: PathLike) -> SavedModel:
    """A best.pt written by ``metahp-fast tune``/``train`` (or :func:`save_model`), ready for raw data."""
    data = read_model_file(path)
    known = ("model", "mean", "std", "class_names", "columns", "labels", "scaler")
    return SavedModel(data["model"], data["mean"], data["std"], data.get("class_names"), data.get("columns"),
                      {k: v for k, v in data.items() if k not in known}, data.get("labels"), data["scaler"])


def upgrade_payload(old: Mapping[str, Any]) -> dict[str, Any]:
    """The format-2 payload of a best.pt of the earlier, pickled format (its ``model`` an ``nn.Sequential``); its
    labels are its class names (strings), as that format predicted them."""
    pre_keys = ("mean", "std", "class_names", "columns", "target", "n_features", "kind", "y_mean", "y_std")
    pre = {k: _plain(old.get(k)) for k in pre_keys}
    pre["labels"] = None if pre["class_names"] is None else list(pre["class_names"])
    info = _plain({k: v for k, v in old.items() if k != "model" and k not in pre_keys})
    return {"network": network_dict(old["model"]), "preprocessing": pre, "info": info}


def _numbers(data: Any) -> np.ndarray:
    """``data`` (array, tensor, DataFrame of numbers) as a float64 array, or a ValueError saying what to pass."""
    if isinstance(data, Tensor):
        return data.detach().cpu().double().numpy()
    try:
        return np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"data: this model was trained without named columns, so it takes its encoded numeric "
                         f"features only (an array, tensor or numeric DataFrame); got non-numbers ({e})") from None


def encode_rows(columns: Optional[list[dict[str, Any]]], rows: Sequence[dict[str, Any]]) -> Tensor:
    """Rows (dicts of column name -> raw value) as the float64 features a table-trained model was trained on
    (:func:`metahp_fast.tasks.apply_columns`: numbers, categories one-hot in the training categories' order)."""
    _need_columns(columns)
    for i, row in enumerate(rows):
        for col in columns:
            if col["name"] not in row:
                raise ValueError(f"row {i} has no column {col['name']!r}; the model needs "
                                 f"{[c['name'] for c in columns]}")
    return torch.as_tensor(apply_columns(columns, [[str(row[c["name"]]).strip() for row in rows] for c in columns]))


def encode_frame(columns: Optional[list[dict[str, Any]]], frame: Any) -> Tensor:
    """A pandas DataFrame's rows as the float64 features a table-trained model was trained on, its columns found
    by name (others ignored), read as training read them (NaN/None and a CSV's missing spellings are missing)."""
    _need_columns(columns)
    by_name = {str(c).strip(): c for c in frame.columns}
    absent = [c["name"] for c in columns if c["name"] not in by_name]
    if absent:
        raise ValueError(f"data has no column {absent[0]!r}; the model needs {[c['name'] for c in columns]}")
    cells = []
    for col in columns:
        s = frame[by_name[col["name"]]]
        if getattr(s, "ndim", 1) != 1:
            raise ValueError(f"data has the column {col['name']!r} more than once; the model finds its columns "
                             "by name")
        cells.append(_series_column(col["name"], s))
    return torch.as_tensor(apply_columns(columns, cells))


def _need_columns(columns: Optional[list[dict[str, Any]]]) -> None:
    if not columns:
        raise ValueError("rows as dicts or DataFrames need the model's columns, which only a model trained on a "
                         "CSV file or a DataFrame keeps; pass the encoded features as an array instead")


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


__all__ = ["KIND", "SavedModel", "build_network", "encode_frame", "encode_rows", "in_target_units", "load_model",
           "network_dict", "preprocessing", "read_model_file", "save_model", "upgrade_payload"]
