"""The minibatches a population trains on: the one sampler that :meth:`Population.fit` and the exact
hypergradient's unroll both draw from, so an unroll differentiates the very training that fit runs."""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from .validation import check_int, check_positive_int


class Batches:
    """Row indices of minibatches of a dataset of ``n`` rows: epochs of a seeded permutation of range(n),
    ``min(batch_size, n)`` rows per step (an epoch's short tail is dropped), handed out any number of steps at
    a time (the same sequence however it is split) on ``device``.

    Each epoch's permutation is drawn on the CPU (the same batches on every device) and moved to the device
    once; on CUDA through pinned memory without blocking the host: a plain copy would wait for every queued
    step, and the GPU would idle while the next launches are prepared."""

    def __init__(self, n: int, batch_size: int, seed: int, device: Union[str, torch.device, None] = None):
        self.n = check_positive_int("n", n)
        self.batch_size = min(check_positive_int("batch_size", batch_size), self.n)
        self.device = torch.device("cpu" if device is None else device)
        self._gen = torch.Generator().manual_seed(check_int("seed", seed))
        self._order, self._pos = torch.empty(0, dtype=torch.int64), self.n

    def take(self, steps: int) -> Tensor:
        """The next ``steps`` minibatches as a (steps, batch_size) int64 tensor on the device."""
        steps = check_positive_int("steps", steps)
        rows = []
        for _ in range(steps):
            if self._pos + self.batch_size > self.n:
                perm = torch.randperm(self.n, generator=self._gen)
                cuda = self.device.type == "cuda"
                self._order = (perm.pin_memory() if cuda else perm).to(self.device, non_blocking=cuda)
                self._pos = 0
            rows.append(self._order[self._pos:self._pos + self.batch_size])
            self._pos += self.batch_size
        return rows[0].unsqueeze(0) if steps == 1 else torch.stack(rows)

    def __repr__(self) -> str:
        return f"Batches(n={self.n}, batch_size={self.batch_size}, device={self.device})"


__all__ = ["Batches"]
