"""The torch backend against the reference (nn.Sequential + torch.optim per candidate) and torch.optim itself."""
import copy

import pytest
import torch
import torch.nn.functional as F

from metahp_fast import Population

from .util import full_state, random_batches, random_hparams, rel_err

CASES = [  # id, optimizer, layers, extra Population kwargs, hparam tweaks
    ("sgd-plain-1h", "sgd", [37, 53, 7], {}, {"momentum": 0.0}),
    ("sgd-momentum-1h", "sgd", [37, 53, 7], {}, {}),
    ("sgd-nesterov-1h", "sgd", [37, 53, 7], {"nesterov": True}, {}),
    ("sgd-nowd-2h", "sgd", [21, 40, 19, 3], {}, {"weight_decay": 0.0}),
    ("sgd-mse-2h", "sgd", [21, 40, 19, 4], {"loss": "mse"}, {}),
    ("adamw-1h", "adamw", [37, 53, 7], {}, {}),
    ("adamw-mse-2h", "adamw", [21, 40, 19, 4], {"loss": "mse"}, {}),
    ("sgd-tanh-2h", "sgd", [13, 31, 17, 5], {"activation": "tanh"}, {}),
    ("adamw-gelu-1h", "adamw", [13, 31, 5], {"activation": "gelu"}, {}),
    ("sgd-sigmoid-1h", "sgd", [13, 31, 5], {"activation": "sigmoid"}, {}),
]
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_torch_backend_matches_reference(case, dtype):
    _, opt, layers, kw, tweaks = case
    seed = int(torch.randint(0, 2**31, ()).item())  # fresh every run, printed on failure
    gen = torch.Generator().manual_seed(seed)
    K, B, steps = 5, 29, 22
    hp = {**random_hparams(opt, K, gen, dtype), **tweaks}
    batches = random_batches(layers, kw.get("loss", "cross_entropy"), B, steps, gen, dtype)
    pops = [Population(layers, K, opt, hp, seed=seed, init="independent", dtype=dtype, backend=b, **kw)
            for b in ("torch", "reference")]
    for x, y in batches:
        lt, lr_ = (p.step(x, y) for p in pops)
        assert rel_err(lt, lr_) < TOL[dtype], f"losses differ (seed {seed})"
    for a, b in zip(full_state(pops[0]), full_state(pops[1])):
        assert rel_err(a, b) < TOL[dtype], f"state differs (seed {seed})"
    assert torch.equal(pops[0].step_count, pops[1].step_count)
    assert pops[0].step_count.tolist() == [steps] * K


def by_hand(modules, optimizer, hp, batches, nesterov=False, loss="cross_entropy"):
    """What a user would write: one torch.optim optimizer per module, a Python loop."""
    modules = copy.deepcopy(modules)
    for k, m in enumerate(modules):
        if optimizer == "sgd":
            o = torch.optim.SGD(m.parameters(), lr=float(hp["lr"][k]), momentum=float(hp["momentum"][k]),
                                weight_decay=float(hp["weight_decay"][k]), nesterov=nesterov)
        else:
            o = torch.optim.AdamW(m.parameters(), lr=float(hp["lr"][k]),
                                  betas=(float(hp["beta1"][k]), float(hp["beta2"][k])), eps=float(hp["eps"][k]),
                                  weight_decay=float(hp["weight_decay"][k]))
        for x, y in batches:
            o.zero_grad()
            out = m(x)
            (F.cross_entropy(out, y) if loss == "cross_entropy" else F.mse_loss(out, y)).backward()
            o.step()
    return modules


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_population_matches_torch_optim_loop(backend, optimizer):
    """Independent of the reference backend's own code: a plain torch.optim loop over from_modules' input."""
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()).item()))
    K, layers = 4, [23, 45, 6]
    mods = [torch.nn.Sequential(torch.nn.Linear(23, 45), torch.nn.ReLU(), torch.nn.Linear(45, 6)).double()
            for _ in range(K)]
    hp = random_hparams(optimizer, K, gen)
    batches = random_batches(layers, "cross_entropy", 31, 20, gen)
    pop = Population.from_modules(mods, optimizer, hp, backend=backend)
    for x, y in batches:
        pop.step(x, y)
    for k, m in enumerate(by_hand(mods, optimizer, hp, batches)):
        got = dict(pop.to_module(k).named_parameters())
        for name, p in m.named_parameters():
            assert rel_err(got[name].detach(), p.detach()) < 1e-10


def test_hyperparameters_are_per_candidate():
    """Each candidate must train with its own values: compare with K=1 populations run one at a time (this
    fails if a backend broadcast candidate 0's hyperparameters)."""
    gen = torch.Generator().manual_seed(7)
    layers, K = [11, 17, 3], 3
    hp = {"lr": torch.tensor([0.01, 0.1, 0.5], dtype=torch.float64), "momentum": torch.tensor([0.0, 0.5, 0.9]),
          "weight_decay": torch.tensor([0.0, 1e-3, 1e-1])}
    batches = random_batches(layers, "cross_entropy", 16, 10, gen)
    for backend in ("torch", "reference"):
        pop = Population(layers, K, "sgd", hp, dtype=torch.float64, backend=backend)
        singles = [Population(layers, 1, "sgd", {k: v[i:i + 1] for k, v in hp.items()}, dtype=torch.float64,
                              backend=backend) for i in range(K)]
        for x, y in batches:
            pop.step(x, y)
            for s in singles:
                s.step(x, y)
        for i, s in enumerate(singles):
            assert rel_err(pop.params[0][i], s.params[0][0]) < 1e-12
        assert rel_err(pop.params[0][0], pop.params[0][1]) > 1e-3  # they really did diverge from each other


def test_lr_override_and_schedule_match_manual_steps():
    """fit's lr_schedule feeds per-candidate learning rates each step, same as step(x, y, lr=...)."""
    gen = torch.Generator().manual_seed(3)
    layers, K, steps = [9, 14, 4], 3, 12
    x = torch.randn(40, 9, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (40,), generator=gen)
    hp = {"lr": torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64), "momentum": 0.9}
    sched = torch.linspace(1.0, 0.1, steps, dtype=torch.float64)
    a = Population(layers, K, "sgd", hp, dtype=torch.float64)
    a.fit(x, y, steps=steps, batch_size=40, lr_schedule=sched, progress=False)
    b = Population(layers, K, "sgd", hp, dtype=torch.float64)
    for t in range(steps):  # batch_size == n: every step sees all rows, in a permuted order
        b.step(x, y, lr=hp["lr"] * sched[t])
    for p, q in zip(a.params, b.params):
        assert rel_err(p, q) < 1e-10
    assert torch.equal(a.hparams["lr"], hp["lr"])  # the schedule does not overwrite the base values


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_switched_off_and_on_mid_run_matches_torch_optim(nesterov):
    """torch.optim keeps a momentum buffer untouched while momentum is 0 and resumes from it later."""
    gen = torch.Generator().manual_seed(11)
    layers, K = [9, 13, 4], 3
    hp = {"lr": torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64), "momentum": 0.9}
    batches = random_batches(layers, "cross_entropy", 16, 12, gen)
    pops = [Population(layers, K, "sgd", hp, nesterov=nesterov, dtype=torch.float64, backend=b)
            for b in ("torch", "reference")]
    for t, (x, y) in enumerate(batches):
        if t == 4:
            for p in pops:
                p.hparams["momentum"] = torch.tensor([0.0, 0.9, 0.0])
        if t == 8:
            for p in pops:
                p.hparams["momentum"] = 0.5
        for p in pops:
            p.step(x, y)
    for a, b in zip(full_state(pops[0]), full_state(pops[1])):
        assert rel_err(a, b) < 1e-10


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("sgd-momentum-1h", "adamw-gelu-1h", "sgd-mse-2h")],
                         ids=lambda c: c[0])
def test_in_place_step_reuses_its_workspace_and_matches_the_pure_step(case):
    """The backend's in-place step writes every per-step tensor into buffers kept with the population (no
    allocation per step on CPU) and computes what the pure, differentiable ``functional_step`` computes, also
    with a dead candidate and after ``select`` shrinks the population (the buffers then change shape)."""
    from metahp_fast.backends.torch_backend import functional_step
    _, opt, layers, kw, tweaks = case
    seed = int(torch.randint(0, 2**31, ()).item())
    gen = torch.Generator().manual_seed(seed)
    K, B = 6, 29
    hp = {**random_hparams(opt, K, gen), **tweaks}
    batches = random_batches(layers, kw.get("loss", "cross_entropy"), B, 7, gen)
    pop = Population(layers, K, opt, hp, seed=seed, init="independent", dtype=torch.float64, backend="torch", **kw)
    pop.alive[2] = False
    s = pop._state
    want = ([p.clone() for p in s.params], {k: [t.clone() for t in v] for k, v in s.opt_state.items()},
            s.step_count.clone(), s.alive.clone())
    ptrs = None
    for t, (x, y) in enumerate(batches):
        if t == 4:  # a smaller population from here on: the pure step follows the same rows
            keep = torch.tensor([5, 0, 2, 3])
            pop = pop.select(keep)
            s = pop._state
            want = ([p[keep] for p in want[0]], {k: [v[keep] for v in vs] for k, vs in want[1].items()},
                    want[2][keep], want[3][keep])
            hp = {k: v[keep] for k, v in hp.items()}
            ptrs = None
        losses = pop.step(x, y)
        ref_losses, *want = functional_step(*want[:3], {k: torch.as_tensor(v, dtype=torch.float64).expand(
            want[3].shape[0]).clone() for k, v in hp.items()}, want[3], x, y, s.spec)
        assert torch.allclose(losses, ref_losses, rtol=1e-12, atol=0), f"losses differ (seed {seed}, step {t})"
        for a, b in zip(full_state(pop), want[0] + [u for us in want[1].values() for u in us]):
            assert rel_err(a, b) < 1e-12, f"state differs (seed {seed}, step {t})"
        assert torch.equal(s.alive, want[3]) and not bool(s.alive[2])  # the dead one: index 2 before and after
        now = {name: buf.data_ptr() for name, buf in s.cache["torch_workspace"]._buffers.items()}
        assert ptrs is None or now == ptrs, "the workspace was reallocated between steps of the same population"
        ptrs = now


def test_workspace_is_refused_by_the_differentiable_step():
    from metahp_fast.backends.torch_backend import Workspace, functional_step
    pop = Population([4, 5, 3], 2, "sgd", {"lr": 0.1}, dtype=torch.float64)
    s = pop._state
    with pytest.raises(ValueError, match="in_place"):
        functional_step(s.params, s.opt_state, s.step_count, s.hparams, s.alive, torch.randn(3, 4,
                        dtype=torch.float64), torch.tensor([0, 1, 2]), s.spec, ws=Workspace())
