"""Shared helpers for the tests: random populations and problems, and relative errors."""
from __future__ import annotations

import torch

from metahp_fast import Population


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (0 when both are zero)."""
    a, b = a.double(), b.double()
    den = b.norm().item()
    return (a - b).norm().item() / den if den > 0 else (a - b).norm().item()


def random_hparams(optimizer: str, K: int, gen: torch.Generator, dtype=torch.float64, momentum=True) -> dict:
    """Per-candidate hyperparameters drawn at random (each candidate different)."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(K, generator=gen, dtype=dtype)  # noqa: E731
    logu = lambda lo, hi: torch.exp(u(torch.log(torch.tensor(lo)).item(), torch.log(torch.tensor(hi)).item()))  # noqa: E731
    if optimizer == "sgd":
        return {"lr": logu(1e-3, 0.3), "momentum": u(0.1, 0.95) if momentum else torch.zeros(K, dtype=dtype),
                "weight_decay": logu(1e-5, 1e-2)}
    return {"lr": logu(1e-4, 3e-2), "beta1": u(0.5, 0.95), "beta2": u(0.9, 0.999), "eps": logu(1e-8, 1e-5),
            "weight_decay": logu(1e-4, 1e-1)}


def random_batches(layers, loss: str, B: int, steps: int, gen: torch.Generator, dtype=torch.float64):
    """``steps`` minibatches (x, y) for ``layers``: class labels for cross-entropy, targets for MSE."""
    out = []
    for _ in range(steps):
        x = torch.randn(B, layers[0], generator=gen, dtype=dtype)
        if loss == "cross_entropy":
            y = torch.randint(0, layers[-1], (B,), generator=gen)
        else:
            y = torch.randn(B, layers[-1], generator=gen, dtype=dtype)
        out.append((x, y))
    return out


def full_state(pop: Population) -> list[torch.Tensor]:
    """Every tensor a step updates: parameters, then optimizer state."""
    return list(pop.params) + [t for ts in pop.optimizer_state.values() for t in ts]


def twin(pop_kwargs: dict, backends=("torch", "reference")) -> list[Population]:
    """Populations that differ only in backend."""
    return [Population(**pop_kwargs, backend=b) for b in backends]


class Killed(Exception):
    """What :func:`killed_after` raises in place of a tuner's next round: the process dying mid-run."""


def dying_after(monkeypatch, tuner_cls, rounds: int, error=Killed):
    """Make ``tuner_cls`` raise ``error`` when it starts round ``rounds + 1``; returns what gives its rounds back."""
    advance, calls = tuner_cls._advance, []

    def dying(self, tuning_run):
        if len(calls) == rounds:
            raise error
        calls.append(1)
        advance(self, tuning_run)
    monkeypatch.setattr(tuner_cls, "_advance", dying)
    return lambda: monkeypatch.setattr(tuner_cls, "_advance", advance)


def killed_after(monkeypatch, tuner_cls, rounds: int, run) -> None:
    """Call ``run()`` with ``tuner_cls`` dying (raising :class:`Killed`) before its ``rounds + 1``-th round, as
    a killed process would, then give the class its rounds back; fails if the run was not killed."""
    import pytest

    heal = dying_after(monkeypatch, tuner_cls, rounds)
    try:
        with pytest.raises(Killed):
            run()
    finally:
        heal()
