"""Tuner checkpoints: the typed state of a run (:class:`RunState`), its header (what run it belongs to), and the
file that holds both between rounds.

A checkpoint is a safe file (:func:`metahp_fast.files.save_file`, kind ``"tuner-checkpoint"``): tensors and
JSON-compatible values only, read back with ``torch.load(weights_only=True)``, so resuming can never run code.
A layout change bumps :data:`CHECKPOINT_VERSION`; a checkpoint of another version is refused (delete it to
start over) rather than read through compatibility shims.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..files import UnsafeFileError, load_file, save_file
from ..tasks import Task

#: Version of the checkpoint layout (header and state). 4: best validation evaluations (early stopping);
#: 2: safe files, typed state; 1 was a pickle.
CHECKPOINT_VERSION = 4
KIND = "tuner-checkpoint"


class TunerState:
    """Base of a tuner's own part of the run state (a dataclass per tuner): saved field by field, so every
    field must hold tensors or JSON-compatible values (a population as its ``state_dict()``)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TunerState":
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) != names:
            raise ValueError(f"holds {sorted(data)} for {cls.__name__}, which has {sorted(names)}")
        return cls(**data)


@dataclass
class NoState(TunerState):
    """The own state of a tuner that keeps none beyond :class:`RunState`'s fields."""


@dataclass
class Best:
    """The best candidate trained the full steps so far: its id, objective, hyperparameters, validation metrics
    and its population of one (``Population.state_dict()``)."""

    id: int
    objective: float
    hparams: dict[str, float]
    val: dict[str, float]
    pop: dict[str, Any]


@dataclass
class RunState:
    """Everything a run needs to resume after its last finished round. ``pop`` and ``ids`` are the live
    population (as ``state_dict()``) and its candidates' ids, for the tuners that keep one between rounds;
    ``own`` is the tuner's own part (its ``State`` dataclass)."""

    own: TunerState
    done: bool = False
    round: int = 0
    cost: int = 0
    seconds: float = 0.0
    next_id: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    trials: dict[int, dict[str, Any]] = field(default_factory=dict)
    curves: dict[int, list[list[float]]] = field(default_factory=dict)
    best: Optional[Best] = None
    pop: Optional[dict[str, Any]] = None
    ids: Optional[list[int]] = None
    pool: list[dict[str, Any]] = field(default_factory=list)  # the best candidates trained the full steps
    #: candidate id -> its best validation evaluation so far (objective, step, metrics), with early stopping
    best_seen: dict[int, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what the checkpoint file holds)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["own"] = self.own.to_dict()
        d["best"] = None if self.best is None else dataclasses.asdict(self.best)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], own: type[TunerState]) -> "RunState":
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ValueError(f"a run state has the fields {sorted(names)}")
        best = data["best"]
        return cls(**{**data, "own": own.from_dict(data["own"]), "best": None if best is None else Best(**best)})


def fingerprint(task: Task) -> dict[str, Any]:
    """Enough of a task to tell whether a checkpoint was made on it: its sizes and a digest of its train and
    validation rows, labels and standardization."""
    digest = hashlib.blake2b(digest_size=16)
    for t in (task.x_train, task.y_train, task.x_val, task.y_val, task.mean, task.std):
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"name": task.name, "rows": [len(task.x_train), len(task.x_val), len(task.x_test)],
            "features": task.n_features, "outputs": task.n_outputs, "digest": digest.hexdigest()}


def write_checkpoint(path: Union[str, os.PathLike], header: dict[str, Any], state: RunState) -> None:
    """Atomically replace the checkpoint at ``path`` with ``header`` and ``state`` (a TypeError naming the
    field if something in them is not a tensor or a JSON-compatible value)."""
    save_file(path, KIND, {"header": header, "state": state.to_dict()})


def read_checkpoint(path: Union[str, os.PathLike], header: dict[str, Any], own: type[TunerState]) -> RunState:
    """The state saved at ``path`` if its header is ``header`` (the same tuner, settings, space, task, seed and
    budget), else a ValueError saying why it cannot resume: another run, another version, or not readable."""
    path = Path(path)
    try:
        saved = load_file(path, KIND)
    except UnsafeFileError:
        raise  # its message says what it is and what to do
    except ValueError as e:
        version = _old_version(path)
        if version is not None:
            raise ValueError(f"checkpoint {str(path)!r} was written by an earlier metahp_fast (checkpoint version "
                             f"{version!r}; this one resumes version {CHECKPOINT_VERSION}); delete it to start "
                             "over") from None
        raise ValueError(f"checkpoint {str(path)!r} cannot be read ({e}); delete it to start over") from None
    old = saved.get("header")
    if not isinstance(old, dict) or old.get("version") != CHECKPOINT_VERSION:
        version = old.get("version") if isinstance(old, dict) else None
        raise ValueError(f"checkpoint {str(path)!r} has checkpoint version {version!r}; this metahp_fast resumes "
                         f"version {CHECKPOINT_VERSION}: delete it to start over")
    if old != header:
        diff = sorted(k for k in header.keys() | old.keys() if old.get(k) != header.get(k))
        raise ValueError(f"checkpoint {str(path)!r} belongs to a different run (differs in {diff}); "
                         f"use another path or delete it")
    try:
        return RunState.from_dict(saved.get("state"), own)
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {str(path)!r} cannot be read (its state: {e}); delete it to start "
                         "over") from None


def _old_version(path: Path) -> Any:
    """The version in the header of a checkpoint from before safe files (a plain dict ``{"header", "state"}``
    that loads with weights_only=True), or None if ``path`` is not one."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable: not an old checkpoint either
        return None
    header = obj.get("header") if isinstance(obj, dict) and "format" not in obj else None
    return header.get("version") if isinstance(header, dict) else None


__all__ = ["CHECKPOINT_VERSION", "Best", "NoState", "RunState", "TunerState", "fingerprint", "read_checkpoint",
           "write_checkpoint"]
