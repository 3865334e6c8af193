"""Candidates of different depths as one pool: a :class:`PopulationGroup` holds one :class:`Population` per
number of hidden layers and answers as one population of K candidates.

Why a group and not one population: a population stacks the weights of one architecture, so candidates with 1
and 3 hidden layers cannot share its tensors. The group keeps a population per depth, steps all of them on the
same minibatch in one :meth:`~PopulationGroup.step` call (common random numbers across depths too), and maps
global candidate numbers ``0..K-1`` (the rows of ``u`` a tuner built it from) to (member, local number), so
tuners select, copy, score and export its candidates as they do a population's.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .optimizers import hparam_specs
from .population import LrSchedule, Population
from .validation import check_hparam, check_indices

GROUP_STATE_VERSION = 1


class GroupHParams(Mapping):
    """The group's hyperparameters as name -> (K,) tensor in global candidate order. Reading gives a new tensor
    (the members hold the live ones); assigning a name (or ``group.hparams = {...}``) writes every member's."""

    def __init__(self, group: "PopulationGroup"):
        self._group = group

    def __getitem__(self, name: str) -> Tensor:
        g = self._group
        return g._gather([m.hparams[name] for m in g.members])

    def __iter__(self) -> Iterator[str]:
        return iter(self._group.members[0].hparams)

    def __len__(self) -> int:
        return len(self._group.members[0].hparams)

    def __setitem__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def update(self, other: Mapping[str, Any] = (), **kw: Any) -> None:
        """Write name -> scalar or (K,) values into every member (all checked before any is written)."""
        g = self._group
        first = g.members[0]
        specs = hparam_specs(first.spec.optimizer)
        items = {**dict(other), **kw}
        split = {}
        for name, value in items.items():
            if name not in specs:
                raise ValueError(f"unknown hyperparameter {name!r}; this population takes {sorted(specs)}")
            full = check_hparam(name, value, specs[name], g.size, first.device, first.dtype)
            split[name] = g._split(full)
        for name, parts in split.items():
            for m, part in zip(g.members, parts):
                m.hparams[name] = part

    def __repr__(self) -> str:
        return f"GroupHParams({ {k: self[k] for k in self} })"


class PopulationGroup:
    """K candidates of several depths trained as one pool: ``members[m]`` is a :class:`Population` of the
    candidates whose global numbers are ``rows(m)`` (in its local order). Every member has the same inputs,
    outputs, loss, optimizer, device, dtype and step count; their depths differ.

    Args:
        members: one population per depth (distinct numbers of hidden layers).
        member_of: (K,) for each global candidate k, the member that holds it; within a member, candidates
            keep the order of their global numbers.

    Tuners use it like a population: ``size``, ``steps_done``, ``alive``, ``hparams`` and ``options`` (global view),
    :meth:`step`, :meth:`fit`, :meth:`evaluate`, :meth:`forward`, :meth:`select`, :meth:`copy_candidates`,
    :meth:`to_module`, :meth:`state_dict` and :meth:`load_state_dict`, all in global candidate numbers.
    """

    def __init__(self, members: Sequence[Population], member_of: Union[Sequence[int], Tensor]):
        members = list(members)
        if not members or not all(isinstance(m, Population) for m in members):
            raise TypeError("members must be a non-empty list of Population")
        first = members[0]
        depths = [len(m.layers) - 2 for m in members]
        if len(set(depths)) != len(depths):
            raise ValueError(f"members must have distinct depths (one population per depth); got depths {depths}")
        for m in members[1:]:
            same = (m.layers[0], m.layers[-1], m.spec.loss, m.spec.optimizer, m.spec.nesterov, m.spec.activation,
                    m.device, m.dtype, m.steps_done)
            want = (first.layers[0], first.layers[-1], first.spec.loss, first.spec.optimizer, first.spec.nesterov,
                    first.spec.activation, first.device, first.dtype, first.steps_done)
            if same != want:
                raise ValueError("members must share inputs, outputs, loss, optimizer, nesterov, activation, device, "
                                 f"dtype and steps done; got {want} and {same}")
        of = torch.as_tensor(member_of).cpu()
        if of.dtype.is_floating_point or of.dtype == torch.bool or of.dim() != 1:
            raise ValueError(f"member_of must be a 1-D list of member numbers; got {of.tolist()}")
        of = of.long()
        counts = torch.bincount(of, minlength=len(members)) if of.numel() and int(of.min()) >= 0 else None
        if counts is None or len(counts) != len(members) or counts.tolist() != [m.size for m in members]:
            raise ValueError(f"member_of must name each member as many times as it has candidates "
                             f"{[m.size for m in members]}; got {of.tolist()}")
        self.members = members
        self._member_of = of
        self._rows = [(of == j).nonzero().flatten() for j in range(len(members))]
        local = torch.empty_like(of)
        for rows in self._rows:
            local[rows] = torch.arange(len(rows))
        self._local = local
        # position of global candidate k in the members' candidates concatenated in member order
        self._inv = torch.argsort(torch.cat(self._rows)).to(first.device)

    @classmethod
    def by_depth(cls, depths: Union[Sequence[int], Tensor],
                 build: Callable[[int, Tensor], Population]) -> "PopulationGroup":
        """A group with candidate k of depth ``depths[k]``: ``build(depth, rows)`` makes the population of the
        candidates ``rows`` (global numbers, ascending) of that depth; members come in increasing depth."""
        d = torch.as_tensor(depths).cpu()
        if d.dim() != 1 or d.numel() == 0 or d.dtype.is_floating_point or d.dtype == torch.bool:
            raise ValueError(f"depth must be a 1-D list of whole numbers, one per candidate; got {d.tolist()}")
        if bool((d < 1).any()):
            raise ValueError(f"depth must be at least 1 hidden layer; got {d.tolist()}")
        levels = sorted(set(d.tolist()))
        members = []
        for depth in levels:
            pop = build(int(depth), (d == depth).nonzero().flatten())
            if len(pop.layers) - 2 != depth:
                raise ValueError(f"build({depth}, ...) made a population with {len(pop.layers) - 2} hidden layers")
            members.append(pop)
        return cls(members, torch.tensor([levels.index(v) for v in d.tolist()]))

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Sequential], optimizer: str = "sgd",
                     hparams: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> "PopulationGroup":
        """A group whose candidate k starts from ``modules[k]`` (MLPs of any depths; the inverse of
        :meth:`to_module`): :meth:`Population.from_modules` per depth, ``hparams`` values scalars or (K,) in the
        modules' order; the other arguments as there."""
        modules = list(modules)
        if not modules:
            raise ValueError("modules must hold at least one nn.Sequential")
        depths = []
        for i, m in enumerate(modules):
            if not isinstance(m, nn.Sequential):
                raise TypeError(f"modules[{i}] must be an nn.Sequential (what to_module gives); got {type(m).__name__}")
            depths.append(sum(isinstance(layer, nn.Linear) for layer in m) - 1)
        k = len(modules)
        hp = {}
        for name, v in dict(hparams or {}).items():
            t = v if isinstance(v, Tensor) else torch.as_tensor(v)
            hp[name] = t if t.dim() == 0 or t.shape[0] != k else None  # None: cut per member below

        def build(depth: int, rows: Tensor) -> Population:
            mine = {n: (t if t is not None else torch.as_tensor(hparams[n])[rows]) for n, t in hp.items()}
            return Population.from_modules([modules[int(r)] for r in rows], optimizer, mine, **kwargs)
        return cls.by_depth(torch.tensor(depths), build)

    # ---------------------------------------------------------------- index maps
    def rows(self, member: int) -> Tensor:
        """The global numbers (ascending) of member ``member``'s candidates, in its local order."""
        return self._rows[member].clone()

    def locate(self, k: Any) -> tuple[int, int]:
        """(member, local number) of global candidate ``k`` (an int or 0-dim integer tensor; negative from the
        end)."""
        k = self._check_index(k)
        return int(self._member_of[k]), int(self._local[k])

    def _check_index(self, k: Any) -> int:
        if isinstance(k, Tensor) and k.dim() == 0 and not (k.dtype.is_floating_point or k.dtype == torch.bool):
            k = int(k)
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not -self.size <= k < self.size:
            raise IndexError(f"candidate index must be an int in [0, {self.size}); got {k!r}")
        return int(k) % self.size

    def _gather(self, parts: Sequence[Tensor]) -> Tensor:
        """Per-member tensors (n_m, ...) -> one (K, ...) in global order."""
        cat = torch.cat(list(parts))
        return cat.index_select(0, self._inv.to(cat.device))

    def _split(self, full: Tensor) -> list[Tensor]:
        """A (K, ...) tensor in global order -> its members' parts (n_m, ...)."""
        return [full.index_select(0, rows.to(full.device)) for rows in self._rows]

    # ---------------------------------------------------------------- properties
    @property
    def size(self) -> int:
        """The number of candidates K, over all members."""
        return len(self._member_of)

    @property
    def depths(self) -> Tensor:
        """(K,) int64: each candidate's number of hidden layers."""
        d = torch.tensor([len(m.layers) - 2 for m in self.members])
        return d[self._member_of]

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.members[0].dtype

    @property
    def backend(self) -> str:
        return self.members[0].backend

    @property
    def loss(self) -> str:
        return self.members[0].spec.loss

    @property
    def steps_done(self) -> int:
        return self.members[0].steps_done

    @property
    def alive(self) -> Tensor:
        """(K,) bool: False for candidates that diverged (a copy)."""
        return self._gather([m.alive for m in self.members])

    @property
    def step_count(self) -> Tensor:
        return self._gather([m.step_count for m in self.members])

    @property
    def hparams(self) -> GroupHParams:
        """name -> (K,) tensor in global order (read: a copy); assign a key or the whole dict to change them."""
        return GroupHParams(self)

    @hparams.setter
    def hparams(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise TypeError(f"hparams must be a dict; got {type(values).__name__}")
        GroupHParams(self).update(values)

    @property
    def widths(self) -> Tensor:
        """(K, deepest member's hidden layers) int64: each candidate's hidden widths, 0 past its depth."""
        top = max(len(m.layers) - 2 for m in self.members)
        parts = [torch.nn.functional.pad(m.widths, (0, top - m.widths.shape[1])) for m in self.members]
        return self._gather(parts)

    @property
    def options(self) -> dict[str, Tensor]:
        """The members' per-candidate training options (``dropout``, ...; see :attr:`Population.options`), name ->
        (K,) in global order (copies); a member built without ``dropout`` or ``label_smoothing`` has them off
        (0)."""
        names = {k for m in self.members for k in m.options}
        out = {}
        for name in sorted(names):
            if name == "batch_size" and not all(name in m.options for m in self.members):
                continue  # a member without it trains on the whole minibatch: no per-candidate value to show
            out[name] = self._gather([m.options[name] if name in m.options
                                      else torch.zeros(m.size, device=m.device, dtype=m.dtype) for m in self.members])
        return out

    def __repr__(self) -> str:
        first = self.members[0]
        return (f"PopulationGroup(depths={[len(m.layers) - 2 for m in self.members]}, sizes="
                f"{[m.size for m in self.members]}, inputs={first.layers[0]}, outputs={first.layers[-1]}, "
                f"optimizer={first.spec.optimizer!r}, backend={self.backend!r}, steps_done={self.steps_done})")

    # ---------------------------------------------------------------- training
    def check_data(self, x: Any, y: Any) -> tuple[Tensor, Tensor]:
        """Check a whole dataset once, as :meth:`step` would (the members share inputs and outputs)."""
        return self.members[0].check_data(x, y)

    def step(self, x: Tensor, y: Tensor, lr: Optional[Tensor] = None, check: bool = True) -> Tensor:
        """One step of every live candidate of every member on the same minibatch (x, y); returns the (K,)
        losses before the update. ``lr`` (K,), in global order, overrides the learning rates for this step."""
        first = self.members[0]
        x, y = first.check_data(x, y) if check else (x, y)
        parts: list[Optional[Tensor]] = [None] * len(self.members)
        if lr is not None:
            lr = check_hparam("lr", lr, hparam_specs(first.spec.optimizer)["lr"], self.size, self.device, self.dtype)
            parts = self._split(lr)
        return self._gather([m.step(x, y, p, check=False) for m, p in zip(self.members, parts)])

    def fit(self, x: Any, y: Any, steps: int, batch_size: int = 128, seed: int = 0,
            lr_schedule: Optional[LrSchedule] = None, progress: bool = True, x_val: Any = None,
            y_val: Any = None, eval_every: Optional[int] = None, keep_best: Optional[str] = None) -> dict[str, Any]:
        """:meth:`Population.fit` for every member, on the same minibatches: the sampler is seeded and hands out
        the same sequence however it is split, so each member sees exactly the batches the others do (members
        run one after the other: the same work as interleaving them, each member's weights staying hot).
        ``lr_schedule`` is in global order ((steps, K) tensors, callables returning (K,)). The history's
        per-candidate entries are (..., K) in global order."""
        first = self.members[0]
        first.check_data(x, y)  # bad data fails here, before any member trains
        caps = [int(m.options["batch_size"].max()) for m in self.members if "batch_size" in m.options]
        if caps:  # a member's own check would come after the members before it trained
            cap = max(caps)
            if isinstance(batch_size, int) and batch_size < cap:
                raise ValueError(f"batch_size ({batch_size}) must be at least the largest of the candidates' "
                                 f"batch_sizes ({cap}): each minibatch is shared")
        schedules = self._split_schedule(lr_schedule, steps)
        hists = [m.fit(x, y, steps=steps, batch_size=batch_size, seed=seed, lr_schedule=s, progress=progress,
                       x_val=x_val, y_val=y_val, eval_every=eval_every, keep_best=keep_best)
                 for m, s in zip(self.members, schedules)]
        out: dict[str, Any] = {}
        for key, v in hists[0].items():
            if key == "eval_step":
                out[key] = v
            else:  # (..., n_m) per member -> (..., K)
                out[key] = self._gather([h[key].movedim(-1, 0) for h in hists]).movedim(0, -1)
        return out

    def _split_schedule(self, schedule: Optional[LrSchedule], steps: int) -> list[Optional[LrSchedule]]:
        """A global ``lr_schedule`` as one per member: (steps, K) tensors cut by column, callables asked with the
        global base rates and their (K,) answer cut (a scalar multiplier passes through)."""
        if schedule is None:
            return [None] * len(self.members)
        if isinstance(schedule, Tensor):
            if schedule.dim() == 2:
                if schedule.shape != (steps, self.size):
                    raise ValueError(f"lr_schedule tensor must have shape ({steps},) or ({steps}, {self.size}); "
                                     f"got {tuple(schedule.shape)}")
                return [schedule.index_select(1, rows.to(schedule.device)) for rows in self._rows]
            return [schedule] * len(self.members)
        if not callable(schedule):
            raise TypeError("lr_schedule must be a callable (step, base_lr) -> lr or a tensor")
        base = self.hparams["lr"].clone()

        def cut(j: int) -> Callable[[int, Tensor], Union[Tensor, float]]:
            def member_schedule(t: int, _base: Tensor) -> Union[Tensor, float]:
                lr = schedule(t, base)
                if not isinstance(lr, Tensor) or lr.dim() == 0:
                    return lr
                if lr.shape != (self.size,):
                    raise ValueError(f"lr_schedule returned shape {tuple(lr.shape)}; expected ({self.size},)")
                return lr.index_select(0, self._rows[j].to(lr.device))
            return member_schedule
        return [cut(j) for j in range(len(self.members))]

    # ---------------------------------------------------------------- evaluation and export
    @torch.no_grad()
    def forward(self, x: Any) -> Tensor:
        """Outputs (K, B, n_out) of every candidate on x (B, d_in)."""
        return self._gather([m.forward(x) for m in self.members])

    @torch.no_grad()
    def evaluate(self, x: Any, y: Any, batch_size: int = 0) -> dict[str, Tensor]:
        """Mean loss (K,) and, for cross-entropy, accuracy (K,) of every candidate on (x, y) (see
        :meth:`Population.evaluate`)."""
        self.members[0].check_data(x, y)
        res = [m.evaluate(x, y, batch_size) for m in self.members]
        return {k: self._gather([r[k] for r in res]) for k in res[0]}

    def to_module(self, k: Any) -> nn.Sequential:
        """Candidate ``k`` as a plain ``nn.Sequential`` of its own depth and widths (a copy)."""
        j, i = self.locate(k)
        return self.members[j].to_module(i)

    def select(self, indices: Union[Sequence[int], Sequence[bool], Tensor]) -> "PopulationGroup":
        """A new group of the chosen candidates (global numbers, repeats allowed, or a (K,) bool mask), new
        candidate j being old candidate ``indices[j]``; members left without candidates are dropped."""
        idx = check_indices(indices, self.size).cpu() % self.size
        of = self._member_of[idx]
        kept = sorted(set(of.tolist()))
        members = [self.members[j].select(self._local[idx[of == j]]) for j in kept]
        return PopulationGroup(members, torch.tensor([kept.index(j) for j in of.tolist()]))

    def copy_candidates(self, src: Tensor, dst: Tensor) -> None:
        """Candidates ``dst`` become copies of candidates ``src`` (weights, optimizer state, step counts, alive
        flags, widths, depth and training options such as dropout), in place; their hyperparameters stay as they
        were (PBT's exploit step). A copy across depths moves the candidate to the member of its new depth: the
        members are rebuilt, so tensors taken from them earlier no longer belong to the group."""
        src, dst = torch.as_tensor(src).long().flatten().cpu(), torch.as_tensor(dst).long().flatten().cpu()
        if src.shape != dst.shape:
            raise ValueError(f"src and dst must have one length; got {tuple(src.shape)} and {tuple(dst.shape)}")
        if len(set(dst.tolist())) != len(dst) or bool(((torch.cat([src, dst]) < 0)
                                                       | (torch.cat([src, dst]) >= self.size)).any()):
            raise ValueError(f"dst must be distinct indices and all indices in [0, {self.size})")
        if src.numel() == 0:
            return
        if bool((self._member_of[src] == self._member_of[dst]).all()):  # within depths: in place
            for j, m in enumerate(self.members):
                at = self._member_of[dst] == j
                if bool(at.any()):
                    m.copy_candidates(self._local[src[at]], self._local[dst[at]])
            return
        hparams = {k: v.clone() for k, v in self.hparams.items()}
        source = torch.arange(self.size)
        source[dst] = src
        new = self.select(source)
        new.hparams = hparams
        self.__dict__.update(new.__dict__)

    # ---------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Every member's :meth:`Population.state_dict` and the global order (``member_of``): tensors and plain
        values only, so tuner checkpoints can hold it."""
        return {"version": GROUP_STATE_VERSION, "group": True, "member_of": self._member_of.tolist(),
                "members": [m.state_dict() for m in self.members]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a group of the same depths, sizes and order (checked first)."""
        if not is_group_state(state):
            raise ValueError("state must be a dict made by PopulationGroup.state_dict()")
        if state.get("version") != GROUP_STATE_VERSION:
            raise ValueError(f"state has group version {state.get('version')!r}; this library reads "
                             f"{GROUP_STATE_VERSION}")
        if list(state["member_of"]) != self._member_of.tolist() or len(state["members"]) != len(self.members):
            raise ValueError("state is for a group of another layout (member_of or number of members differ)")
        saved = [m.state_dict() for m in self.members]
        try:
            for m, s in zip(self.members, state["members"]):
                m.load_state_dict(s)
        except ValueError:
            for m, s in zip(self.members, saved):  # nothing changes unless every member fits
                m.load_state_dict(s)
            raise

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any],
                        member: Callable[[Mapping[str, Any]], Population]) -> "PopulationGroup":
        """A group rebuilt from :meth:`state_dict`, ``member(state)`` rebuilding each member's population."""
        if not is_group_state(state):
            raise ValueError("state must be a dict made by PopulationGroup.state_dict()")
        if state.get("version") != GROUP_STATE_VERSION:
            raise ValueError(f"state has group version {state.get('version')!r}; this library reads "
                             f"{GROUP_STATE_VERSION}")
        return cls([member(s) for s in state["members"]], state["member_of"])


def is_group_state(state: Any) -> bool:
    """Whether ``state`` is a :meth:`PopulationGroup.state_dict` (and not a population's)."""
    return isinstance(state, Mapping) and state.get("group") is True and "members" in state


__all__ = ["GroupHParams", "PopulationGroup", "is_group_state", "GROUP_STATE_VERSION"]
