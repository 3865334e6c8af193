"""scikit-learn estimators that tune an MLP with one of the package's tuners: :class:`TunedMLPClassifier` and
:class:`TunedMLPRegressor`.

``fit`` encodes ``X`` as ``load_task`` encodes a CSV with ``missing="fill"`` (:func:`metahp_fast.tasks.from_table`:
numbers scaled as ``scaling`` says, standard scaling by default, strings and categories one-hot, missing numbers the
training median), holds out ``val_fraction`` of the rows as the tuner's validation split, runs the tuner and keeps
its best model; ``predict`` encodes new rows with the same columns (:func:`metahp_fast.tasks.apply_columns`; a
category not seen in ``fit`` encodes as all zeros, as in scikit-learn's ``OneHotEncoder(handle_unknown="ignore")``)
and scales them with the scaler fitted in ``fit``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_array, check_is_fitted, check_consistent_length, column_or_1d, \
        validate_data
except ImportError as e:  # validate_data is scikit-learn 1.6's
    raise ImportError("metahp_fast.sklearn needs scikit-learn >= 1.6: pip install 'metahp-fast[sklearn]'") from e

from .model_file import in_target_units
from .preprocessing import DEFAULT_SCALING, check_scaling
from .search_space import SearchSpace
from .tasks import Column, apply_columns, from_table
from .tuners import TUNERS, Tuner
from .tuners.base import DEFAULT_EPOCHS

#: Fewest rows ``fit`` takes: one validation row and at least two training rows.
MIN_ROWS = 3


class _TunedMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, encoding, tuning, outputs."""

    def __init__(self, method: str = "sh", budget: float = 64, steps: Optional[int] = None,
                 epochs: Optional[float] = DEFAULT_EPOCHS, batch_size: int = 128,
                 hidden: Sequence[int] = (128,), activation: str = "relu", optimizer: Optional[str] = None,
                 space: Optional[SearchSpace] = None, objective: str = "loss", val_fraction: float = 0.2,
                 folds: int = 1, tuner_params: Optional[dict[str, Any]] = None, device: str = "cpu",
                 backend: str = "auto", refit: bool = True, scaling: str = DEFAULT_SCALING,
                 random_state: Union[int, np.random.RandomState, None] = None, verbose: bool = False):
        self.method = method
        self.budget = budget
        self.steps = steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.space = space
        self.objective = objective
        self.val_fraction = val_fraction
        self.folds = folds
        self.tuner_params = tuner_params
        self.device = device
        self.backend = backend
        self.refit = refit
        self.scaling = scaling
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing numbers: the training median; missing strings: a category
        tags.input_tags.string = True  # string columns are one-hot encoded
        tags.input_tags.categorical = True  # as are pandas categorical columns
        return tags

    # ---------------------------------------------------------------- fit
    def _tuner(self) -> Tuner:
        """The tuner these parameters describe; a bad parameter raises here, before any work."""
        if not isinstance(self.method, str) or self.method not in TUNERS:
            raise ValueError(f"method must be one of {sorted(TUNERS)}; got {self.method!r}")
        if self.tuner_params is not None and not isinstance(self.tuner_params, dict):
            raise TypeError(f"tuner_params must be a dict of the tuner's own options or None; got "
                            f"{type(self.tuner_params).__name__}")
        if not isinstance(self.val_fraction, (int, float)) or isinstance(self.val_fraction, bool) or \
                not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1); got {self.val_fraction!r}")
        check_scaling(self.scaling)
        hidden = list(self.hidden) if isinstance(self.hidden, (list, tuple)) else self.hidden
        sized = self.steps is None  # the training sized to the data by epochs unless steps fixes it
        tuner = TUNERS[self.method](self.space, optimizer=self.optimizer, hidden=hidden, steps=self.steps,
                                    epochs=self.epochs if sized else None,
                                    batch_size=self.batch_size, activation=self.activation,
                                    objective=self.objective, folds=self.folds, backend=self.backend,
                                    device=self.device, progress=bool(self.verbose), **(self.tuner_params or {}))
        tuner.check_budget(self.budget)
        return tuner

    def _fit(self, tuner: Tuner, X: Any, y: np.ndarray, categorical_target: bool) -> "_TunedMLP":
        names, columns, categorical = self._columns(X, reset=True)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        task = from_table(names, columns, y, categorical=categorical, name=type(self).__name__, seed=seed,
                          val_fraction=float(self.val_fraction), test_fraction=0.0,
                          kind="classification" if categorical_target else "regression", source="X",
                          scaling=self.scaling)
        tuned = tuner.run(task, self.budget, seed=seed)
        result = tuned.refit("full") if self.refit else tuned  # refit: on every row of X, the same epochs
        self.model_ = in_target_units(result.best_model, task).double().eval()  # float64: rows don't mix
        self.encoding_ = task.meta["columns"]
        self.x_mean_ = task.mean.double().numpy()
        self.x_scale_ = task.std.double().numpy()
        self.scaler_ = task.preprocessor
        self.best_params_ = dict(result.best_hparams)
        self.best_score_ = (-result.best_val["loss"] if result.objective == "loss"
                            else result.best_val["accuracy"])
        self.tune_result_ = dataclasses.replace(tuned, data=None)  # the training rows stay out of the estimator
        self.seed_ = seed
        return self

    def _columns(self, X: Any, reset: bool) -> tuple[list[str], list[Column], list[str]]:
        """``X``'s raw columns (float arrays, or cells as stripped strings / None), their names and the columns
        pandas marks categorical; checks shape and feature names (sets them when ``reset``)."""
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        arr = check_array(X, dtype=None, ensure_all_finite="allow-nan", input_name="X", estimator=self)
        if reset and arr.shape[0] < MIN_ROWS:
            raise ValueError(f"X has {arr.shape[0]} sample(s); fit needs at least {MIN_ROWS} (training and "
                             "validation rows)")
        validate_data(self, X, reset=reset, skip_check_array=True)
        categorical: list[str] = []
        if hasattr(X, "columns") and hasattr(X, "iloc") and hasattr(X, "dtypes"):  # a pandas DataFrame
            names = [str(c) for c in X.columns]
            if len(set(names)) < len(names):
                raise ValueError(f"X: its column names {names} repeat; give every column its own name")
            columns: list[Column] = []
            for j, name in enumerate(names):
                s = X.iloc[:, j]
                if getattr(s.dtype, "name", "") == "category":
                    categorical.append(name)
                    columns.append(_cells(s.to_numpy(dtype=object)))
                elif getattr(s.dtype, "kind", "O") in "biuf":  # numpy or pandas' nullable numbers and booleans
                    columns.append(s.to_numpy(dtype=np.float64, na_value=np.nan))
                else:
                    columns.append(_cells(s.to_numpy(dtype=object)))
            return names, columns, categorical
        names = [f"x{j}" for j in range(arr.shape[1])]
        if arr.dtype.kind in "biuf":
            return names, [arr[:, j].astype(np.float64) for j in range(arr.shape[1])], categorical
        return names, [_cells(arr[:, j]) for j in range(arr.shape[1])], categorical

    # ---------------------------------------------------------------- predict
    def _outputs(self, X: Any) -> np.ndarray:
        """The best model's outputs (rows, outputs) for ``X``: logits, or values in the target's units."""
        check_is_fitted(self)
        _, columns, _ = self._columns(X, reset=False)
        try:
            x = apply_columns(self.encoding_, columns, unknown="ignore", name_rows=False)
        except ValueError as e:
            raise ValueError(f"X: {e}") from None
        with torch.no_grad():
            return self.model_(self.scaler_.transform(torch.from_numpy(x))).numpy()


def _cells(values: np.ndarray) -> list[Optional[str]]:
    """Object cells as stripped strings, None where missing (None, NaN, pandas' NA/NaT)."""
    return [None if _is_na(v) else str(v).strip() for v in values]


def _is_na(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return bool(np.isnan(v))
    return type(v).__name__ in ("NAType", "NaTType")  # pandas' missing markers, without importing pandas


class TunedMLPClassifier(ClassifierMixin, _TunedMLP):
    """An MLP classifier whose hyperparameters (learning rate, momentum, weight decay, ...) are tuned in ``fit``
    by training a population of candidates at once (``method``: one of ``metahp_fast.tuners.TUNERS``).

    Args:
        method: the tuner: ``"sh"`` (successive halving), ``"random"``, ``"hyperband"``, ``"pbt"``, ``"es"``,
            ``"tpe"`` (needs optuna).
        budget: full trainings' worth of candidate-steps the tuner may spend.
        steps: one full training's steps; None (default): sized to the data by ``epochs`` instead.
        epochs: one full training's passes over the training rows (at most the tuner's ``max_steps``), when
            ``steps`` is None; batch_size: the minibatch size.
        hidden, activation: the architecture (hidden widths, ``"relu"``/``"tanh"``/``"sigmoid"``/``"gelu"``).
        optimizer: ``"sgd"`` or ``"adamw"`` (default: the space's, else sgd); space: a
            :class:`~metahp_fast.SearchSpace` (default: the optimizer's default space).
        objective: what the tuner minimises on the validation rows: ``"loss"`` or ``"error"``.
        val_fraction: the fraction of ``fit``'s rows held out (stratified) to choose between candidates.
        folds: score candidates over this many cuts of the rows (steadier on small data, ``folds`` times the cost).
        tuner_params: the tuner's own options (e.g. ``{"eta": 3}`` for successive halving).
        device, backend: where the population trains (``"cuda"`` with the ``triton`` backend on a GPU).
        scaling: how numeric features are scaled, fitted on the training rows: ``"standard"`` (the default:
            mean/std), ``"quantile"`` (normal scores, clipped) or ``"robust"`` (median/IQR, smooth clip); see
            :mod:`metahp_fast.preprocessing`.
        refit: after tuning, train one network with the chosen hyperparameters on all of ``fit``'s rows (the
            validation rows too), as ``GridSearchCV(refit=True)`` does; False keeps the tuner's own model. (For
            ``"pbt"``, whose candidates change hyperparameters while training, the refit holds the final ones.)
        random_state: an int for reproducible fits; None or a RandomState draws the seed.
        verbose: show a progress bar.

    Fitted attributes: ``classes_``, ``n_features_in_`` (``feature_names_in_`` for a DataFrame), ``model_`` (the
    network predict uses, a ``torch.nn.Sequential`` on scaled encoded features), ``best_params_``,
    ``best_score_`` (the chosen candidate's validation score, higher is better: minus the cross-entropy, or the
    accuracy with ``objective="error"``), ``tune_result_`` (the tuner's :class:`~metahp_fast.tuners.TuneResult`:
    trials, curves, cost; without the training rows), ``encoding_``, ``scaler_``, ``x_mean_``, ``x_scale_`` (how
    raw columns become the model's inputs: the encoding, then the fitted scaling, whose centre and scale the last
    two are) and ``seed_`` (the seed the tuner ran with)."""

    def fit(self, X: Any, y: Any) -> "TunedMLPClassifier":
        """Tune on ``X`` (rows, columns: numbers, strings or categories, NaN/None where missing; an array or a
        DataFrame) and labels ``y``; keeps the best candidate."""
        tuner = self._tuner()
        if y is None:
            validate_data(self, X, y, reset=True, skip_check_array=True)  # its "requires y" error
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=None, input_name="y", estimator=self), warn=True)
        check_consistent_length(X, y)
        check_classification_targets(y)
        classes, ids = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has {len(classes)} class ({classes.tolist()}); a classifier needs at least 2 "
                             "classes")
        self._fit(tuner, X, ids.astype(np.int64), categorical_target=True)
        self.classes_ = classes
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (rows, classes), columns in the order of ``classes_``."""
        return torch.softmax(torch.from_numpy(self._outputs(X)), 1).numpy()

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log class probabilities (rows, classes)."""
        return torch.log_softmax(torch.from_numpy(self._outputs(X)), 1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, as in ``classes_``."""
        out = self._outputs(X)  # checks that it is fitted
        return self.classes_[out.argmax(1)]


class TunedMLPRegressor(RegressorMixin, _TunedMLP):
    """An MLP regressor whose hyperparameters are tuned in ``fit`` by training a population of candidates at
    once; targets are standardized for training and predictions come back in the target's units.

    Takes the parameters of :class:`TunedMLPClassifier` (``objective`` must be ``"loss"``, the MSE) and has
    its fitted attributes except ``classes_``; ``best_score_`` is minus the validation MSE of standardized
    targets (-1 is as good as predicting the mean). ``y`` may be (rows,) or (rows, outputs)."""

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> "TunedMLPRegressor":
        """Tune on ``X`` (as :meth:`TunedMLPClassifier.fit` takes it) and numeric targets ``y``."""
        tuner = self._tuner()
        if y is None:
            validate_data(self, X, y, reset=True, skip_check_array=True)
        y = np.array(check_array(y, ensure_2d=False, dtype=np.float64, input_name="y", estimator=self))  # a copy
        if y.ndim not in (1, 2):
            raise ValueError(f"y must have shape (rows,) or (rows, outputs); got {y.shape}")
        check_consistent_length(X, y)
        self._fit(tuner, X, y, categorical_target=False)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self._y_1d = y.ndim == 1
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets in their own units: (rows,) if ``y`` was (rows,) in ``fit``, else (rows, outputs)."""
        out = self._outputs(X)
        return out[:, 0] if self._y_1d else out


__all__ = ["TunedMLPClassifier", "TunedMLPRegressor"]
