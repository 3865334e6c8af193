"""Input checks: every bad argument gets a ValueError/TypeError naming it, before any work is done."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from .model import ACTIVATIONS, LOSSES, ModelSpec
from .optimizers import OPTIMIZERS, hparam_specs


def check_choice(name: str, value: Any, choices) -> str:
    """``value`` must be one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def check_spec(layers, activation: str, loss: str, optimizer: str, nesterov: bool) -> ModelSpec:
    """Validate the architecture and training rule shared by all candidates."""
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__") or len(layers) < 2:
        raise ValueError(f"layers must list at least [d_in, n_out], e.g. [64, 128, 10]; got {layers!r}")
    for i, n in enumerate(layers):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"layers[{i}] must be a positive int; got {n!r}")
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("loss", loss, LOSSES)
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be a bool; got {type(nesterov).__name__}")
    if nesterov and optimizer != "sgd":
        raise ValueError("nesterov=True only applies to optimizer='sgd'")
    return ModelSpec(tuple(int(n) for n in layers), activation, loss, optimizer, nesterov)


def check_int(name: str, value: Any) -> int:
    """``value`` as a Python int: ints and numpy integers pass; bools, floats and anything else are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1 (numpy integers too); a ValueError naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int (the number of candidates K); got {size!r}")
    return int(size)


def check_hparams(hparams: Mapping[str, Any] | None, optimizer: str, size: int, device: torch.device,
                  dtype: torch.dtype, fill_defaults: bool = True) -> dict[str, Tensor]:
    """Hyperparameters as (K,) tensors on ``device``: scalars are broadcast, missing ones take torch.optim's
    defaults (when ``fill_defaults``), unknown names and out-of-range values raise."""
    specs = hparam_specs(optimizer)
    hparams = {} if hparams is None else hparams
    if not isinstance(hparams, Mapping):
        raise TypeError(f"hparams must be a dict of name -> scalar or (K,) values; got {type(hparams).__name__}")
    unknown = sorted(set(hparams) - set(specs))
    if unknown:
        raise ValueError(f"hparams has unknown names {unknown} for optimizer={optimizer!r}; "
                         f"it takes {sorted(specs)}")
    out = {}
    for name, spec in specs.items():
        if name not in hparams:
            if fill_defaults:
                out[name] = torch.full((size,), spec.default, device=device, dtype=dtype)
                if not bool(spec.valid(out[name]).all()):  # e.g. eps=1e-8 is 0 in float16, beta2=0.999 is 1 in bf16
                    raise ValueError(f"hparams: the default {name}={spec.default:g} is "
                                     f"{out[name][0].item():g} in {dtype}, which is not {spec.rule}; pass "
                                     f"hparams={{{name!r}: ...}} with a value {dtype} holds, or use float32")
            continue
        out[name] = check_hparam(name, hparams[name], spec, size, device, dtype)
    return out


def check_hparam(name: str, value: Any, spec, size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """One hyperparameter as a (K,) tensor, checked against its valid range."""
    if isinstance(value, bool) or isinstance(value, str):
        raise TypeError(f"hparams[{name!r}] must be a number or a (K,) tensor; got {value!r}")
    try:
        t = torch.as_tensor(value).detach()
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"hparams[{name!r}] must be a number or a (K,) tensor; got {type(value).__name__}") from e
    if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8)):
        raise TypeError(f"hparams[{name!r}] must be real numbers; got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.expand(size)
    if t.dim() != 1 or t.shape[0] != size:
        raise ValueError(f"hparams[{name!r}] must be a scalar or have shape ({size},), one value per candidate; "
                         f"got shape {tuple(t.shape)}")
    t = t.to(device=device, dtype=dtype).clone()
    if not torch.isfinite(t).all():
        raise ValueError(f"hparams[{name!r}] holds non-finite values")
    ok = spec.valid(t)
    if not ok.all():
        i = int((~ok).nonzero()[0])
        raise ValueError(f"hparams[{name!r}] must be {spec.rule}; candidate {i} has {t[i].item():g}")
    return t


def as_tensor(name: str, value: Any, device: torch.device, dtype: torch.dtype | None) -> Tensor:
    """Tensors pass as they are (checked later); numpy arrays and lists become tensors on ``device``
    (floating ones in ``dtype``)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"{name} must hold numbers; got an array of Python objects")
        if arr.dtype.kind in "US":
            raise TypeError(f"{name} must hold numbers; got strings (dtype {arr.dtype}): encode class labels as "
                            "0..C-1, or build a Task with metahp_fast.from_arrays, which does")
        t = torch.as_tensor(arr, device=device)
        return t.to(dtype) if (dtype is not None and t.dtype.is_floating_point) else t
    raise TypeError(f"{name} must be a torch.Tensor or numpy array; got {type(value).__name__}")


def check_batch(x: Any, y: Any, spec: ModelSpec, device: torch.device, dtype: torch.dtype,
                values: bool = True, names: tuple[str, str] = ("x", "y")) -> tuple[Tensor, Tensor]:
    """Check a batch (x, y) against the architecture; returns the tensors to train on.

    Tensors must already be on the population's device and in its dtype (no hidden copies on the hot path);
    numpy arrays are converted. ``values=False`` skips the checks that read the data (NaN/inf, label range:
    one host sync on a GPU). ``names``: what the caller calls x and y (``x_val``, ...), for the messages."""
    xn, yn = names
    # detached: the population trains on the data, it does not carry gradients back into the caller's tensors
    x = as_tensor(xn, x, device, dtype).detach()
    y = as_tensor(yn, y, device, dtype if spec.loss == "mse" else None).detach()
    d_in, n_out = spec.layers[0], spec.layers[-1]
    if x.dim() != 2 or x.shape[1] != d_in:
        raise ValueError(f"{xn} must have shape (batch, {d_in}) to match layers[0]={d_in}; got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{xn} is empty: a batch needs at least one row")
    if not x.dtype.is_floating_point or x.dtype != dtype:
        raise TypeError(f"{xn} must have dtype {dtype} like the population; got {x.dtype} (use {xn}.to({dtype}))")
    if x.device != device:
        raise ValueError(f"{xn} is on {x.device} but the population is on {device}; move it with "
                         f"{xn}.to('{device}')")
    if y.device != device:
        raise ValueError(f"{yn} is on {y.device} but the population is on {device}; move it with "
                         f"{yn}.to('{device}')")
    B = x.shape[0]
    if spec.loss == "cross_entropy":
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
            raise TypeError(f"{yn} must hold integer class labels for loss='cross_entropy'; got dtype {y.dtype}")
        if y.dim() != 1 or y.shape[0] != B:
            raise ValueError(f"{yn} must have shape ({B},), one label per row of {xn}; got {tuple(y.shape)}")
        y = y.long()
    else:
        if y.dim() == 1 and n_out == 1:
            y = y.unsqueeze(1)
        if y.dim() != 2 or y.shape != (B, n_out):
            raise ValueError(f"{yn} must have shape ({B}, {n_out}) for loss='mse'; got {tuple(y.shape)}")
        if y.dtype != dtype:
            raise TypeError(f"{yn} must have dtype {dtype} like the population for loss='mse'; got {y.dtype}")
    if not values:
        return x, y
    # one host sync for all the value checks (on CUDA each .item() would wait for the device)
    if spec.loss == "cross_entropy":
        flags = [torch.isfinite(x).all(), y.min(), y.max()]
    else:
        flags = [torch.isfinite(x).all(), torch.isfinite(y).all()]
    flags = torch.stack([f.to(torch.float64) for f in flags]).tolist()
    if not flags[0]:
        raise ValueError(f"{xn} holds NaN or inf; clean or impute the data first")
    if spec.loss == "cross_entropy" and (flags[1] < 0 or flags[2] >= n_out):
        raise ValueError(f"{yn} holds labels in [{int(flags[1])}, {int(flags[2])}] but layers[-1]={n_out} "
                         f"allows 0..{n_out - 1}")
    if spec.loss == "mse" and not flags[1]:
        raise ValueError(f"{yn} holds NaN or inf")
    return x, y


def check_device(device: Any) -> torch.device:
    """``device`` as a torch.device (None: the CPU), with CUDA's current index made explicit; a ValueError
    naming the argument if it is not a device or is CUDA where CUDA is not available."""
    try:
        d = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda'; got {device!r}") from e
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but CUDA is not available here")
        d = torch.device("cuda", torch.cuda.current_device() if d.index is None else d.index)
    elif d.type != "cpu":
        try:  # mps, xpu, ...: this torch build or machine may lack them
            torch.empty(0, device=d)
        except (RuntimeError, AssertionError) as e:
            raise ValueError(f"device={str(d)!r} is not usable here ({str(e).splitlines()[0].split('. ')[0]}); "
                             "use 'cpu'"
                             + (" or 'cuda'" if torch.cuda.is_available() else "")) from None
    return d


def check_indices(indices: Any, size: int) -> Tensor:
    """Candidate numbers (ints in [-size, size), repeats allowed) or a (size,) bool mask, as a 1-d long tensor on
    its device; at least one candidate, else a ValueError/TypeError/IndexError naming ``indices``."""
    idx = torch.as_tensor(indices)
    if idx.numel() == 0:  # before the dtype: an empty list reads as floats
        raise ValueError("indices must choose at least one candidate")
    if idx.dtype == torch.bool:
        if idx.shape != (size,):
            raise ValueError(f"a bool mask for indices must have shape ({size},), one flag per candidate; "
                             f"got {tuple(idx.shape)}")
        idx = idx.nonzero().flatten()
    elif idx.dtype.is_floating_point or idx.dtype.is_complex:
        raise TypeError(f"indices must be candidate numbers (ints) or a bool mask; got dtype {idx.dtype}")
    idx = idx.long().flatten()
    if idx.numel() == 0:
        raise ValueError("indices must choose at least one candidate")
    if int(idx.min()) < -size or int(idx.max()) >= size:
        raise IndexError(f"indices must lie in [0, {size}); got {idx.tolist()}")
    return idx
