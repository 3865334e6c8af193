"""Every implementation of the optimizers against torch.optim, one candidate at a time.

Implementations: the pure and the in-place update of :mod:`metahp_fast.optimizers` (float64), and the Triton
device functions of ``metahp_fast.kernels.optim`` through a small kernel (float32; under the interpreter, or
on the GPU where there is one). Long runs are not run step by step: torch.optim's state (its ``step``, the
moving averages, the momentum buffer) is set to random values at step t-1 and one update is compared.
"""
from __future__ import annotations

import os

import pytest
import torch

from metahp_fast.optimizers import OPTIMIZERS, AdamW, AdamWCoefficients, get_optimizer, hparam_specs

try:
    import triton
    import triton.language as tl
except ImportError:  # the Triton case is skipped
    triton = None

#: beta1 = 0: the kernels' 1 - beta1**t takes log(0) = -inf (and gets 1, as it should); numpy warns.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")

K = 6
SHAPE = (K, 4, 5)
#: Per-candidate hyperparameters: momentum 0 and beta1 0, beta2 up to 0.9999 (bias correction still far from
#: 1 after 10^3 steps), weight decay from 0 to 1.
HPARAMS = {
    "sgd": {"lr": [0.1, 0.05, 0.3, 0.01, 0.2, 0.07], "momentum": [0.9, 0.0, 0.5, 0.99, 0.95, 0.3],
            "weight_decay": [1e-3, 0.0, 1e-2, 0.1, 1.0, 5e-4]},
    "adamw": {"lr": [1e-3, 3e-2, 0.1, 1e-2, 0.05, 3e-3], "beta1": [0.9, 0.0, 0.5, 0.99, 0.8, 0.95],
              "beta2": [0.999, 0.9, 0.99, 0.9999, 0.9999, 0.95], "eps": [1e-8, 1e-6, 1e-3, 1e-8, 1e-10, 1e-8],
              "weight_decay": [1e-2, 0.0, 0.1, 1.0, 0.0, 1e-3]},
}
OPTIMIZER_CASES = {"sgd": ("sgd", False), "sgd-nesterov": ("sgd", True), "adamw": ("adamw", False)}
#: Allowed error relative to each element's size plus this step's change of it: float64 implementations
#: against torch.optim's float64 arithmetic, the float32 kernel against torch.optim on the same float32 inputs.
TOL = {torch.float64: 1e-12, torch.float32: 16 * torch.finfo(torch.float32).eps}


def _problem(name: str, step: int, dtype: torch.dtype):
    """Hyperparameters, parameter, gradient and the optimizer state before update number ``step``."""
    gen = torch.Generator().manual_seed(step)
    hp = {k: torch.tensor(v, dtype=dtype) for k, v in HPARAMS[name].items()}
    p = torch.randn(SHAPE, generator=gen, dtype=dtype)
    g = torch.randn(SHAPE, generator=gen, dtype=dtype)
    if step == 1:  # both optimizers start from zero state
        state = tuple(torch.zeros(SHAPE, dtype=dtype) for _ in OPTIMIZERS[name].state_names)
    elif name == "sgd":
        state = (0.1 * torch.randn(SHAPE, generator=gen, dtype=dtype),)
    else:
        state = (0.1 * torch.randn(SHAPE, generator=gen, dtype=dtype),
                 0.01 * torch.rand(SHAPE, generator=gen, dtype=dtype))
    return hp, p, g, state


def _torch_optim_step(name: str, nesterov: bool, hp, p, g, state, step: int):
    """Candidate by candidate, torch.optim's update (float64) from the state at step ``step - 1``."""
    opt_rule = get_optimizer(name, nesterov)
    new_p, new_state = torch.empty_like(p, dtype=torch.float64), [torch.empty_like(s, dtype=torch.float64)
                                                                   for s in state]
    for k in range(K):
        q = torch.nn.Parameter(p[k].double().clone())
        q.grad = g[k].double().clone()
        opt = opt_rule.torch_optimizer([q], {n: float(v[k]) for n, v in hp.items()})
        if step > 1 and name == "adamw":
            opt.state[q] = {"step": torch.tensor(float(step - 1)), "exp_avg": state[0][k].double().clone(),
                            "exp_avg_sq": state[1][k].double().clone()}
        elif step > 1 and hp["momentum"][k] > 0:
            opt.state[q] = {"momentum_buffer": state[0][k].double().clone()}
        opt.step()
        new_p[k] = q.detach()
        for i, n in enumerate(opt_rule.state_names):
            # SGD with momentum 0 keeps no buffer in torch; the population's stays as it was
            new_state[i][k] = opt.state[q][n] if n in opt.state[q] else state[i][k]
        if name == "adamw":
            assert float(opt.state[q]["step"]) == step  # the state really was at step - 1
    return new_p, tuple(new_state)


def _pure(name, nesterov, hp, p, g, state, step):
    opt = get_optimizer(name, nesterov)
    before = [t.clone() for t in (p, g, *state)]
    c = opt.coefficients(hp, torch.full((K,), step), torch.ones(K, dtype=torch.bool))
    out = opt.update(p, g, state, c)
    for a, b in zip(before, (p, g, *state)):
        assert torch.equal(a, b), "the pure update changed its inputs"
    return out


def _in_place(name, nesterov, hp, p, g, state, step):
    opt = get_optimizer(name, nesterov)
    c = opt.coefficients(hp, torch.full((K,), step), torch.ones(K, dtype=torch.bool))
    assert opt.update_(p, g, state, c) is None
    return p, state


if triton is not None:
    from metahp_fast.kernels.optim import coefficients, optimizer_args, update_tile

    @triton.jit
    def _update_kernel(p_ptr, g_ptr, s1_ptr, s2_ptr, lr_ptr, wd_ptr, momentum_ptr, beta1_ptr, beta2_ptr, eps_ptr,
                       step_ptr, N, BLOCK: tl.constexpr, ADAMW: tl.constexpr, NESTEROV: tl.constexpr):
        """Candidate k = program_id(0): its update number from ``step_ptr``, its N elements updated in place."""
        k = tl.program_id(0)
        c = coefficients(k, tl.load(step_ptr + k).to(tl.float32), lr_ptr, wd_ptr, momentum_ptr, beta1_ptr,
                         beta2_ptr, eps_ptr, ADAMW)
        offs = tl.arange(0, BLOCK)
        mask = offs < N
        at = k * N + offs
        g = tl.load(g_ptr + at, mask=mask, other=0.0)
        update_tile(p_ptr + at, s1_ptr + at, s2_ptr + at, g, mask, c, ADAMW, NESTEROV)


def _triton(name, nesterov, hp, p, g, state, step):
    if triton is None:
        pytest.skip("triton is not installed")
    if os.environ.get("TRITON_INTERPRET") == "1":
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        pytest.skip("the Triton case needs TRITON_INTERPRET=1 (set by conftest.py without a GPU) or a GPU")
    p, g, *state = (t.to(device) for t in (p, g, *state))
    s2 = state[1] if name == "adamw" else p.new_empty(1)  # SGD: never read nor written
    n = p[0].numel()
    _update_kernel[(K,)](p, g, state[0], s2, *optimizer_args({k: v.to(device) for k, v in hp.items()},
                                                             name == "adamw"),
                         torch.full((K,), step, device=device), n, BLOCK=triton.next_power_of_2(n),
                         ADAMW=name == "adamw", NESTEROV=nesterov)
    return p.cpu(), tuple(s.cpu() for s in state)


IMPLEMENTATIONS = {"pure": (_pure, torch.float64), "in-place": (_in_place, torch.float64),
                   "triton": (_triton, torch.float32)}


@pytest.mark.parametrize("step", [1, 1000, 100_000])
@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_update_matches_torch_optim(implementation, case, step):
    """Parameters and state after update number ``step`` equal torch.optim's, every candidate with its own
    hyperparameters, each element within TOL of its size plus this step's change of it."""
    run, dtype = IMPLEMENTATIONS[implementation]
    name, nesterov = OPTIMIZER_CASES[case]
    hp, p, g, state = _problem(name, step, dtype)
    old = (p.double(), *(s.double() for s in state))
    want_p, want_state = _torch_optim_step(name, nesterov, hp, p, g, state, step)
    got_p, got_state = run(name, nesterov, hp, p.clone(), g.clone(), tuple(s.clone() for s in state), step)
    assert len(got_state) == len(want_state)
    for what, got, want, before in zip(("param",) + OPTIMIZERS[name].state_names, (got_p, *got_state),
                                       (want_p, *want_state), old):
        assert got.dtype == dtype
        err = (got.double() - want).abs()
        bound = TOL[dtype] * (before.abs() + (want - before).abs())
        worst = (err / bound.clamp_min(1e-300)).max().item()
        assert (err <= bound).all(), f"{what}: error {worst:.2g} x the allowed one"


@pytest.mark.parametrize("in_place", [False, True], ids=["pure", "in-place"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_dead_candidates_keep_parameters_and_state(name, in_place):
    """A candidate not alive, with a zero gradient (what the backends give it), is left exactly as it was;
    the others update as if it were not there."""
    hp, p, g, state = _problem(name, 1000, torch.float64)
    opt = get_optimizer(name)
    alive = torch.ones(K, dtype=torch.bool)
    alive[2] = False
    g[2] = 0.0
    step = torch.full((K,), 1000)
    want_p, want_state = opt.update(p, g, state, opt.coefficients(hp, step, torch.ones(K, dtype=torch.bool)))
    c = opt.coefficients(hp, step, alive)
    if in_place:
        got_p, got_state = p.clone(), tuple(s.clone() for s in state)
        opt.update_(got_p, g.clone(), got_state, c)
    else:
        got_p, got_state = opt.update(p, g, state, c)
    for got, want, before in zip((got_p, *got_state), (want_p, *want_state), (p, *state)):
        assert torch.equal(got[2], before[2])
        assert torch.allclose(got[alive], want[alive], rtol=1e-12, atol=0)


def test_registry_specs_and_bad_arguments():
    """The registry's specs and state names are torch.optim's; wrong names and records are refused."""
    assert sorted(OPTIMIZERS) == ["adamw", "sgd"]
    assert OPTIMIZERS["adamw"].state_names == ("exp_avg", "exp_avg_sq")
    assert set(hparam_specs("sgd")) == {"lr", "momentum", "weight_decay", "init_scale"}
    with pytest.raises(ValueError, match="optimizer must be one of"):
        get_optimizer("adam")
    with pytest.raises(ValueError, match="nesterov"):
        get_optimizer("adamw", nesterov=True)
    hp, p, g, state = _problem("sgd", 1, torch.float64)
    sgd = get_optimizer("sgd")
    with pytest.raises(ValueError, match="momentum"):
        sgd.coefficients({"lr": hp["lr"], "weight_decay": hp["weight_decay"]}, torch.ones(K), torch.ones(K) > 0)
    c = sgd.coefficients(hp, torch.ones(K), torch.ones(K) > 0)
    with pytest.raises(TypeError, match="SGDCoefficients"):
        sgd.update(p, g, state, AdamWCoefficients(*[hp["lr"]] * 7))
    with pytest.raises(ValueError, match="state"):
        AdamW().update_(p, g, state, AdamW().coefficients(_problem("adamw", 1, torch.float64)[0], torch.ones(K),
                                                          torch.ones(K) > 0))
    assert sgd.update(p, g, state, c)[0].shape == SHAPE


def test_kernel_arguments_name_each_hyperparameter():
    """The launchers' one helper: SGD's momentum in the momentum slot, AdamW's betas and eps in theirs."""
    pytest.importorskip("triton")
    from metahp_fast.kernels.optim import OPTIMIZER_ARGS, optimizer_args
    sgd = {n: torch.tensor([float(i)]) for i, n in enumerate(HPARAMS["sgd"])}
    adamw = {n: torch.tensor([float(i)]) for i, n in enumerate(HPARAMS["adamw"])}
    args = dict(zip(OPTIMIZER_ARGS, optimizer_args(sgd, adamw=False)))
    assert args["momentum_ptr"] is sgd["momentum"] and args["wd_ptr"] is sgd["weight_decay"]
    args = dict(zip(OPTIMIZER_ARGS, optimizer_args(adamw, adamw=True)))
    assert all(args[f"{n}_ptr"] is adamw[n] for n in ("beta1", "beta2", "eps", "lr"))
    with pytest.raises(ValueError, match="momentum"):
        optimizer_args(adamw, adamw=False)
