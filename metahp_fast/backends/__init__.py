"""Backends run one inner-loop step for a whole population; this module picks one by name.

``auto`` means ``$METAHP_BACKEND`` if set, else ``triton`` for CUDA tensors when Triton is importable, else
``torch``. An explicit ``backend=`` argument always wins over the environment variable."""
from __future__ import annotations

import importlib.util
import os

import torch

from ..model import ModelSpec
from .base import Backend, PopulationState

NAMES = ("torch", "reference", "triton")


def triton_available() -> bool:
    """Whether the optional ``triton`` package is installed."""
    return importlib.util.find_spec("triton") is not None


def resolve_name(name: str, device: torch.device) -> str:
    """The concrete backend name that ``name`` (possibly ``auto``) stands for on ``device``."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, one of {('auto',) + NAMES}; got {type(name).__name__}")
    if name == "auto":
        env = os.environ.get("METAHP_BACKEND", "").strip()
        if env:
            if env not in NAMES:
                raise ValueError(f"METAHP_BACKEND must be one of {NAMES}; got {env!r}")
            return env
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if name not in NAMES:
        raise ValueError(f"backend must be one of {('auto',) + NAMES}; got {name!r}")
    return name


def get_backend(name: str, spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> Backend:
    """The backend object for ``name``, after checking that it can run ``spec`` on ``device`` in ``dtype``."""
    name = resolve_name(name, device)
    if name == "torch":
        from .torch_backend import TorchBackend as cls
    elif name == "reference":
        from .reference_backend import ReferenceBackend as cls
    else:
        if not triton_available():
            raise ValueError("backend 'triton' needs the triton package: pip install 'metahp-fast[triton]'")
        from .triton_backend import TritonBackend as cls
    backend = cls()
    backend.check(spec, device, dtype)
    return backend


__all__ = ["NAMES", "Backend", "PopulationState", "get_backend", "resolve_name", "triton_available"]
