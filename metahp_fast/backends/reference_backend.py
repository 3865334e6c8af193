"""The ``reference`` backend: one ``nn.Sequential`` and one ``torch.optim`` optimizer per candidate, Python loop.

Slow and obviously right: it is what the other backends are tested against. The modules' parameters and the
optimizers' state tensors are views into the population's stacked storage, so torch.optim updates the
population in place and nothing is copied per step. With the ``dropout`` option, each hidden activation's output
is multiplied by the step's dropout scale (the population's shared draw) on its way through the modules.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import ModelSpec, sequential_view
from ..optimizers import get_optimizer
from .base import Backend, PopulationState


def run_with_dropout(net: nn.Sequential, x: Tensor, scales: Optional[list[Tensor]]) -> Tensor:
    """``net(x)``, each hidden activation's output multiplied by its (rows, width) scale in ``scales``."""
    if scales is None:
        return net(x)
    h, layer = x, 0
    for m in net:
        h = m(h)
        if not isinstance(m, nn.Linear):
            h = h * scales[layer]
            layer += 1
    return h


class ReferenceBackend(Backend):
    """Per-candidate ``nn.Sequential`` + ``torch.optim``, one after the other."""

    name = "reference"

    def check(self, spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> None:
        pass

    def _bind(self, state: PopulationState):
        """Modules and optimizers viewing the population's storage, rebuilt only when the storage moved."""
        key = tuple(t.data_ptr() for t in state.params) + tuple(
            t.data_ptr() for ts in state.opt_state.values() for t in ts)
        cached = state.cache.get("reference")
        if cached is not None and cached[0] == key:
            return cached[1]
        bound = []
        optimizer = get_optimizer(state.spec.optimizer, state.spec.nesterov)
        for k in range(state.size):
            net = sequential_view(state.spec, state.params, k)
            hp = {name: float(v[k]) for name, v in state.hparams.items()}
            opt = optimizer.torch_optimizer(net.parameters(), hp)
            for j, p in enumerate(net.parameters()):
                views = {name: ts[j][k].t() if ts[j].dim() == 3 else ts[j][k] for name, ts in state.opt_state.items()}
                opt.state[p].update(views)
            bound.append((net, opt))
        state.cache["reference"] = (key, bound)
        return bound

    def step(self, state: PopulationState, x: Tensor, y: Tensor, lr: Optional[Tensor] = None) -> Tensor:
        bound = self._bind(state)
        hp = {name: v.tolist() for name, v in state.hparams.items()}
        if lr is not None:
            hp["lr"] = lr.tolist()
        alive = state.alive.tolist()
        steps = state.step_count.tolist()
        smoothing = state.options["label_smoothing"].tolist() if "label_smoothing" in state.options else None
        rows = state.options["batch_size"].tolist() if "batch_size" in state.options else None
        dropout = state.dropout(x.shape[0])
        losses = []
        for k, (net, opt) in enumerate(bound):
            if not alive[k]:
                losses.append(math.inf)
                continue
            group = opt.param_groups[0]
            group["lr"], group["weight_decay"] = hp["lr"][k], hp["weight_decay"][k]
            if state.spec.optimizer == "sgd":
                group["momentum"] = hp["momentum"][k]
                group["nesterov"] = state.spec.nesterov and group["momentum"] > 0
            else:
                group["betas"], group["eps"] = (hp["beta1"][k], hp["beta2"][k]), hp["eps"][k]
                for p in net.parameters():
                    opt.state[p]["step"] = torch.tensor(float(steps[k]))
            opt.zero_grad()
            xk, yk = (x, y) if rows is None else (x[:rows[k]], y[:rows[k]])  # candidate k's first rows
            out = run_with_dropout(net, xk, None if dropout is None else [d[k, :xk.shape[0]] for d in dropout])
            loss = (F.cross_entropy(out, yk, label_smoothing=0.0 if smoothing is None else smoothing[k])
                    if state.spec.loss == "cross_entropy" else F.mse_loss(out, yk))
            if not torch.isfinite(loss):
                alive[k] = False
                losses.append(math.inf)
                continue
            loss.backward()
            opt.step()
            steps[k] += 1
            losses.append(loss.item())
        state.alive.copy_(torch.tensor(alive))
        state.step_count.copy_(torch.tensor(steps))
        state.steps_done += 1
        return torch.tensor(losses, dtype=state.params[0].dtype, device=state.params[0].device)
