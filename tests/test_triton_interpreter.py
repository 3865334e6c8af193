"""The ``triton`` backend and its kernels under Triton's CPU interpreter (``TRITON_INTERPRET=1``, set by
conftest.py where there is no GPU), against the ``reference`` backend and plain torch maths.

Small, non-round sizes (none a multiple of the kernels' blocks), exact fp32 products ("ieee"), float32
relative error below 1e-4 per candidate and tensor.
"""
import math
import os

import pytest
import torch

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("interpreter tests run with TRITON_INTERPRET=1 (test_triton_cuda.py covers the GPU)",
                allow_module_level=True)

import triton  # noqa: E402

from metahp_fast import Population  # noqa: E402
from metahp_fast.model import ModelSpec  # noqa: E402
from metahp_fast.backends.torch_backend import functional_step  # noqa: E402
from metahp_fast.backends.triton_backend import TritonBackend  # noqa: E402
from metahp_fast.kernels import fused_fits, fused_mlp_step, fused_mlp_steps, steps_fit, update_layer  # noqa: E402
from metahp_fast.kernels.fused_mlp import tma_allowed  # noqa: E402
from metahp_fast.optimizers import OPTIMIZERS, get_optimizer  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # numpy overflow in the diverging candidate
    # Triton 3.6's interpreter on numpy < 2.4 (it fails on numpy >= 2.4, where this deprecation became an error)
    pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning"),
]

RTOL = 1e-4
K = 5
DIVERGING, DEAD = 2, 4  # candidate with lr 1e6, candidate marked dead before training


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| over one candidate's tensor."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def assert_close_per_candidate(got: list, want: list, live: torch.Tensor, what: str) -> None:
    for j, (a, b) in enumerate(zip(got, want)):
        for k in torch.nonzero(live).flatten().tolist():
            err = rel_err(a[k], b[k])
            assert err < RTOL, f"{what}[{j}] of candidate {k}: relative error {err:.2e}"


def assert_losses_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert torch.equal(torch.isinf(got), torch.isinf(want)), (got, want)
    fin = torch.isfinite(want)
    err = ((got[fin] - want[fin]).abs() / want[fin].abs().clamp_min(1e-30)).max().item()
    assert err < RTOL, f"losses {got} vs {want}"


def assert_same_state(pop: Population, ref: Population) -> None:
    live = ref.alive
    assert torch.equal(pop.alive, ref.alive)
    assert torch.equal(pop.step_count, ref.step_count)
    assert_close_per_candidate(pop.params, ref.params, live, "params")
    for name in ref.optimizer_state:
        assert_close_per_candidate(pop.optimizer_state[name], ref.optimizer_state[name], live, name)


def hparams_for(optimizer: str) -> dict:
    """Mixed per-candidate hyperparameters: zero and non-zero momentum, one diverging learning rate."""
    if optimizer == "sgd":
        hp = {"lr": torch.tensor([0.1, 0.05, 1e6, 0.2, 0.1]), "momentum": torch.tensor([0.9, 0.0, 0.5, 0.95, 0.9]),
              "weight_decay": torch.tensor([1e-3, 0.0, 1e-2, 1e-4, 0.0])}
    else:
        hp = {"lr": torch.tensor([1e-3, 3e-3, 1e6, 1e-2, 1e-3]), "beta1": torch.tensor([0.9, 0.0, 0.5, 0.8, 0.9]),
              "beta2": torch.tensor([0.999, 0.99, 0.9, 0.9999, 0.999]),
              "eps": torch.tensor([1e-8, 1e-6, 1e-8, 1e-8, 1e-8]),
              "weight_decay": torch.tensor([1e-2, 0.0, 1e-2, 0.1, 0.0])}
    return hp


def batch(layers, loss: str, n: int):
    x = torch.randn(n, layers[0])
    y = torch.randint(0, layers[-1], (n,)) if loss == "cross_entropy" else torch.randn(n, layers[-1])
    return x, y


CASES = [  # id, layers, activation, loss, optimizer, nesterov, batch
    ("fused-37-53-7-sgd", (37, 53, 7), "relu", "cross_entropy", "sgd", False, 29),
    ("fused-37-53-7-nesterov", (37, 53, 7), "relu", "cross_entropy", "sgd", True, 29),
    ("fused-37-53-7-adamw", (37, 53, 7), "relu", "cross_entropy", "adamw", False, 29),
    ("layers-13-24-19-3-mse-tanh-nesterov", (13, 24, 19, 3), "tanh", "mse", "sgd", True, 29),
    ("layers-13-24-19-3-mse-gelu-adamw", (13, 24, 19, 3), "gelu", "mse", "adamw", False, 29),
    ("layers-seed-model-large-batch-sgd", (21, 100, 5), "relu", "cross_entropy", "sgd", False, 150),
    ("layers-linear-11-5-adamw", (11, 5), "relu", "cross_entropy", "adamw", False, 17),
]


@pytest.mark.parametrize("layers,activation,loss,optimizer,nesterov,n", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_backend_matches_reference(layers, activation, loss, optimizer, nesterov, n):
    """Several steps from independent random weights: parameters, optimizer state, step counts, alive mask
    and losses equal the reference; the diverging candidate dies alone, the dead one never moves."""
    hp = hparams_for(optimizer)
    kw = dict(nesterov=nesterov, activation=activation, loss=loss, seed=7, init="independent")
    pop = Population(layers, K, optimizer, hp, backend="triton", **kw)
    ref = Population(layers, K, optimizer, hp, backend="reference", **kw)
    assert pop.backend == "triton"
    fused = TritonBackend().uses_fused_kernel(pop.spec, n)
    assert fused == (layers == (37, 53, 7)), "this case is meant for the other path"
    for p in (pop, ref):
        p.alive[DEAD] = False
    dead_before = [t[DEAD].clone() for t in pop.params]
    for _ in range(6):
        x, y = batch(layers, loss, n)
        assert_losses_close(pop.step(x, y), ref.step(x, y))
        assert_same_state(pop, ref)
    if len(layers) > 2:  # a linear softmax model stays finite for a while even at lr 1e6
        assert not pop.alive[DIVERGING], "the lr=1e6 candidate should have diverged by now"
    assert not pop.alive[DEAD] and pop.step_count[DEAD] == 0
    assert all(torch.equal(a[DEAD], b) for a, b in zip(pop.params, dead_before))
    assert pop.alive[[0, 1, 3]].all()


def test_diverging_candidate_leaves_the_others_untouched():
    """A population with a 1e6 learning rate in it trains the others bit for bit as without it."""
    layers, hp = (37, 53, 7), hparams_for("sgd")
    calm = {**hp, "lr": hp["lr"].clone()}
    calm["lr"][DIVERGING] = 0.1
    pops = [Population(layers, K, "sgd", h, seed=3, init="independent", backend="triton") for h in (hp, calm)]
    for _ in range(5):
        x, y = batch(layers, "cross_entropy", 29)
        losses = [p.step(x, y) for p in pops]
    others = [k for k in range(K) if k != DIVERGING]
    assert torch.equal(losses[0][others], losses[1][others])
    for a, b in zip(pops[0].params, pops[1].params):
        assert torch.equal(a[others], b[others])
    assert not pops[0].alive[DIVERGING] and math.isinf(losses[0][DIVERGING])


@pytest.mark.parametrize("layers", [(37, 53, 7), (13, 24, 3)], ids=["fused", "layers"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_hyperparameter_changes_take_effect(layers, optimizer):
    """New hyperparameters between steps, and the per-step ``lr`` override, act at once (no recompile)."""
    hp = hparams_for(optimizer)
    hp["lr"][DIVERGING] = hp["lr"][0]
    pop, ref = (Population(layers, K, optimizer, hp, seed=5, backend=b) for b in ("triton", "reference"))
    new = {"lr": hp["lr"] * 2, "weight_decay": hp["weight_decay"] + 0.01}
    new["momentum" if optimizer == "sgd" else "beta1"] = torch.tensor([0.0, 0.9, 0.3, 0.5, 0.7])
    for t in range(3):
        x, y = batch(layers, "cross_entropy", 19)
        if t == 1:
            pop.hparams = new
            ref.hparams = new
        lr = hp["lr"] * torch.tensor([1.0, 0.5, 0.1, 2.0, 0.0]) if t == 2 else None
        assert_losses_close(pop.step(x, y, lr=lr), ref.step(x, y, lr=lr))
        assert_same_state(pop, ref)
    assert pop.alive.all()


# ------------------------------------------------------------------ the launchers, against torch maths


def _random_state(shapes, optimizer):
    names = list(OPTIMIZERS[optimizer].state_names)
    state = {n: [torch.rand(K, *s) * 0.1 for s in shapes] for n in names}
    if optimizer == "sgd":
        for t in state["momentum_buffer"]:
            t[1] = 0.0  # candidate 1 has momentum 0: its buffer is zero, as torch keeps none
    return names, state


def _launcher_inputs(layers, optimizer, nesterov, diverging_lr):
    """What the launcher tests start from: the spec, random weights, non-zero optimizer state, mixed
    hyperparameters (candidate DIVERGING at ``diverging_lr``), non-zero step counts, candidate DEAD dead."""
    spec = ModelSpec(layers, optimizer=optimizer, nesterov=nesterov)
    params = [torch.randn(K, *s) * 0.2 for s in spec.shapes()]
    names, state = _random_state(spec.shapes(), optimizer)
    hp = hparams_for(optimizer)
    hp["lr"][DIVERGING] = diverging_lr
    steps = torch.tensor([0, 3, 10, 1, 5])
    alive = torch.ones(K, dtype=torch.bool)
    alive[DEAD] = False
    return spec, params, names, state, hp, steps, alive


#: Pass 2 through tensor descriptors (TMA on Hopper, emulated by the interpreter), 3 tiles of 16 rows over
#: D = 37 (the last one partly outside W1: the copy engine zero-fills and clips it). H = 48: rows of 192 bytes
#: (Triton 3.5's interpreter wrongly wants strides that are multiples of 16 elements).
TMA_CONFIG = triton.Config({"BLOCK_D": 16, "TMA": True, "STAGES2": 2}, num_warps=4, num_stages=1)
#: Each pass-2 path also walking its tiles backwards (BACKWARD2: the partial last tile first, and the pointer
#: path's prefetch running below the first tile at the end, where it must be masked out).
PATH_CONFIGS = {"pointers": None, "tma": TMA_CONFIG,
                "pointers-backward": triton.Config({"BLOCK_D": 16, "TMA": False, "STAGES2": 1, "BACKWARD2": True},
                                                num_warps=4, num_stages=1),
                "tma-backward": triton.Config({**TMA_CONFIG.kwargs, "BACKWARD2": True}, num_warps=4, num_stages=1)}


@pytest.mark.parametrize("path", list(PATH_CONFIGS))
@pytest.mark.parametrize("optimizer,nesterov", [("sgd", False), ("sgd", True), ("adamw", False)])
def test_fused_launcher_matches_torch(optimizer, nesterov, path):
    """``fused_mlp_step`` against ``functional_step`` of the torch backend, from non-zero optimizer state
    and step counts, with a dead candidate; pass 2 with pointer loads (H = 53: rows not 16-byte aligned, so
    descriptors are refused) and with tensor descriptors (H = 48, padded to 64), each forwards and backwards."""
    D, H, C, B = 37, (48 if path.startswith("tma") else 53), 7, 29
    assert fused_fits(B, D, H, C) and not fused_fits(1024, D, 200, C)
    assert tma_allowed(torch.empty(1), H) == path.startswith("tma")
    assert not tma_allowed(torch.empty(1), 48, (torch.empty(9)[1:],))  # a W1 starting off a 16-byte boundary
    spec, params, names, state, hp, steps, alive = _launcher_inputs((D, H, C), optimizer, nesterov, 0.01)
    x, y = batch((D, H, C), "cross_entropy", B)
    want = functional_step(params, state, steps, hp, alive, x, y, spec)
    got_state = {n: [t.clone() for t in v] for n, v in state.items()}
    got_params = [p.clone() for p in params]
    got_steps, got_alive = steps.clone(), alive.clone()
    losses = fused_mlp_step(x, y, got_params, got_state[names[0]], got_state.get("exp_avg_sq"), hp, got_steps,
                            got_alive, adamw=optimizer == "adamw", nesterov=nesterov, precision="ieee",
                            config=PATH_CONFIGS[path])
    assert_losses_close(losses, want[0])
    assert torch.equal(got_steps, want[3]) and torch.equal(got_alive, want[4])
    live = want[4]
    assert_close_per_candidate(got_params, want[1], live, "params")
    for n in names:
        assert_close_per_candidate(got_state[n], want[2][n], live, n)
    assert all(torch.equal(a[~live], b[~live]) for a, b in zip(got_params, params))


@pytest.mark.parametrize("optimizer,nesterov,schedule", [("sgd", False, False), ("sgd", True, True),
                                                         ("adamw", False, True)])
def test_multistep_launcher_matches_torch(optimizer, nesterov, schedule):
    """``fused_mlp_steps``: 5 steps in one launch, each on 29 rows gathered from a 61-row X with padded rows
    (2 chunks of 16 under the interpreter), against 5 ``functional_step`` calls of the torch backend; from
    non-zero optimizer state and step counts, a dead candidate, one that diverges within the span, and
    (``schedule``) a different learning rate per step and candidate."""
    D, H, C, B, N, S = 37, 53, 7, 29, 61, 5
    assert steps_fit(B, D, H, C) and steps_fit(1000, 64, 128, 10) and not steps_fit(B, 65, 128, C)
    spec, params, names, state, hp, steps, alive = _launcher_inputs((D, H, C), optimizer, nesterov, 1e12)
    x = torch.randn(N, D + 3)[:, :D]  # rows 40 floats apart
    y = torch.randint(0, C, (N,))
    idx = torch.stack([torch.randperm(N)[:B] for _ in range(S)])
    lrs = hp["lr"] * torch.rand(S, K) if schedule else None
    want = (None, params, state, steps, alive)
    want_losses = []
    for s in range(S):
        want = functional_step(want[1], want[2], want[3], hp, want[4], x[idx[s]], y[idx[s]], spec,
                               lr=None if lrs is None else lrs[s])
        want_losses.append(want[0].masked_fill(~want[4], math.inf))
    assert not want[4][DIVERGING] and want[3][DIVERGING] > steps[DIVERGING], "meant to diverge within the span"
    got_state = {n: [t.clone() for t in v] for n, v in state.items()}
    got_params = [p.clone() for p in params]
    got_steps, got_alive = steps.clone(), alive.clone()
    losses = fused_mlp_steps(x, y, idx, got_params, got_state[names[0]], got_state.get("exp_avg_sq"), hp,
                             got_steps, got_alive, adamw=optimizer == "adamw", nesterov=nesterov,
                             precision="ieee", lr_table=lrs)
    assert losses.shape == (S, K)
    for s in range(S):
        assert_losses_close(losses[s], want_losses[s])
    assert torch.equal(got_steps, want[3]) and torch.equal(got_alive, want[4])
    live = want[4]
    assert_close_per_candidate(got_params, want[1], live, "params")
    for n in names:
        assert_close_per_candidate(got_state[n], want[2][n], live, n)
    assert all(torch.equal(a[DEAD], b[DEAD]) for a, b in zip(got_params, params))


def test_multistep_launcher_rejects_bad_input():
    spec = ModelSpec((37, 53, 7))
    params = [torch.zeros(K, *s) for s in spec.shapes()]
    state1 = [torch.zeros_like(p) for p in params]
    hp = hparams_for("sgd")
    x, y = torch.randn(61, 37), torch.randint(0, 7, (61,))
    steps, alive = torch.zeros(K, dtype=torch.int64), torch.ones(K, dtype=torch.bool)

    def run(idx=torch.zeros(3, 29, dtype=torch.int64), **kw):
        return fused_mlp_steps(x, y, idx, params, state1, None, hp, steps, alive, adamw=False, **kw)
    with pytest.raises(ValueError, match="idx"):
        run(torch.zeros(29, dtype=torch.int64))
    with pytest.raises(ValueError, match="idx"):
        run(torch.zeros(3, 29))
    with pytest.raises(ValueError, match="lr_table"):
        run(lr_table=torch.ones(2, K))
    with pytest.raises(ValueError, match="precision"):
        run(precision="fp8")
    wide = [torch.zeros(K, *s) for s in ModelSpec((100, 128, 7)).shapes()]
    with pytest.raises(ValueError, match="steps_fit"):
        fused_mlp_steps(torch.randn(61, 100), y, torch.zeros(3, 29, dtype=torch.int64), wide,
                        [torch.zeros_like(p) for p in wide], None, hp, steps, alive, adamw=False)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_fit_through_the_multistep_kernel_matches_reference(optimizer):
    """``Population.fit`` on the triton backend trains spans of steps in single launches (between the
    evaluations); its loss history, evaluations and final state equal the reference backend's, stepped one
    step at a time, with a learning-rate schedule and a diverging and a dead candidate."""
    layers, hp = (37, 53, 7), hparams_for(optimizer)
    kw = dict(seed=3, init="independent")
    pop = Population(layers, K, optimizer, hp, backend="triton", **kw)
    ref = Population(layers, K, optimizer, hp, backend="reference", **kw)
    assert TritonBackend().steps_per_launch(pop.spec, 29) > 1
    for p in (pop, ref):
        p.alive[DEAD] = False
    x, y = batch(layers, "cross_entropy", 100)
    xv, yv = batch(layers, "cross_entropy", 23)
    sched = lambda t, base: base * (1.0 - t / 10)  # noqa: E731
    got, want = (p.fit(x, y, steps=7, batch_size=29, seed=5, lr_schedule=sched, x_val=xv, y_val=yv,
                       eval_every=3, progress=False) for p in (pop, ref))
    assert got["eval_step"] == want["eval_step"] == [3, 6, 7]
    for s in range(7):
        assert_losses_close(got["loss"][s], want["loss"][s])
    fin = torch.isfinite(want["val_loss"])
    assert torch.equal(fin, torch.isfinite(got["val_loss"]))
    assert torch.allclose(got["val_loss"][fin], want["val_loss"][fin], rtol=RTOL)
    assert_same_state(pop, ref)
    assert pop.steps_done == ref.steps_done == 7


@pytest.mark.parametrize("shared_input", [True, False], ids=["shared-input", "per-candidate-input"])
@pytest.mark.parametrize("optimizer,nesterov", [("sgd", True), ("adamw", False)])
def test_layer_launcher_matches_torch(optimizer, nesterov, shared_input):
    """``update_layer`` against ``dW = h^T g``, ``db = sum_b g`` and the torch optimizer maths, with a
    transposed (non-contiguous) gradient and a dead candidate."""
    B, IN, OUT = 23, 45, 19
    w, b = torch.randn(K, IN, OUT), torch.randn(K, OUT)
    names, state = _random_state([(IN, OUT), (OUT,)], optimizer)
    hp = hparams_for(optimizer)
    hp["lr"][DIVERGING] = 0.01
    h = torch.randn(B, IN) if shared_input else torch.randn(K, B, IN)
    g = torch.randn(K, OUT, B).mT  # strides (OUT*B, 1, B)
    step = torch.tensor([1, 4, 2, 7, 3])
    alive = torch.tensor([True, True, True, True, False])
    hk = h.expand(K, B, IN) if shared_input else h
    grads = [hk.mT @ g, g.sum(1)]
    opt = get_optimizer(optimizer, nesterov)
    coef = opt.coefficients(hp, step, alive)
    want_p, want_s = [], {n: [] for n in names}
    for p, gr, j in zip([w, b], grads, range(2)):
        p2, s2 = opt.update(p, gr, tuple(state[n][j] for n in names), coef)
        want_p.append(p2)
        for n, s in zip(names, s2):
            want_s[n].append(s)
    got_p = [w.clone(), b.clone()]
    got_s = {n: [t.clone() for t in v] for n, v in state.items()}
    update_layer(h, g, got_p[0], got_p[1], got_s[names[0]], got_s.get("exp_avg_sq"), hp, step, alive,
                 adamw=optimizer == "adamw", nesterov=nesterov, precision="ieee")
    assert_close_per_candidate(got_p, want_p, alive, "params")
    for n in names:
        assert_close_per_candidate(got_s[n], want_s[n], alive, n)
    assert torch.equal(got_p[0][DEAD], w[DEAD]) and torch.equal(got_p[1][DEAD], b[DEAD])


# ------------------------------------------------------------------ options and checks


def test_precision_option(monkeypatch):
    monkeypatch.delenv("METAHP_TRITON_PRECISION", raising=False)
    assert TritonBackend().requested_precision == "tf32"
    monkeypatch.setenv("METAHP_TRITON_PRECISION", "bf16")
    assert TritonBackend().requested_precision == "bf16"
    assert TritonBackend("ieee").requested_precision == "ieee"  # the argument wins
    assert TritonBackend().precision == "ieee"  # the interpreter computes exact fp32 products
    backend = TritonBackend()
    backend.precision = "tf32"
    assert backend.requested_precision == "tf32"
    with pytest.raises(ValueError, match="precision"):
        backend.precision = "fp16"
    monkeypatch.setenv("METAHP_TRITON_PRECISION", "fp8")
    with pytest.raises(ValueError, match="METAHP_TRITON_PRECISION"):
        TritonBackend()


def test_check_rejects_what_it_cannot_run(monkeypatch):
    spec = ModelSpec((4, 8, 3))
    with pytest.raises(TypeError, match="float32"):
        TritonBackend().check(spec, torch.device("cpu"), torch.float64)
    with pytest.raises(TypeError, match="float32"):
        Population([4, 8, 3], 2, dtype=torch.float64, backend="triton")
    TritonBackend().check(spec, torch.device("cpu"), torch.float32)  # fine under the interpreter
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="CUDA"):
        TritonBackend().check(spec, torch.device("cpu"), torch.float32)


def test_configs_stay_within_the_kernels_pipeline_rule():
    """The kernel folds min(STAGES2, PIPE_BYTES // stage) for STAGES2 up to MAX_STAGES2 only."""
    from benchmarks.kernel_configs import EXTRA
    from metahp_fast.kernels.fused_mlp import CONFIGS, MAX_STAGES2
    assert all(1 <= c.kwargs["STAGES2"] <= MAX_STAGES2.value for c in CONFIGS + EXTRA)


def test_block_matches_triton_next_power_of_2():
    """The launchers' plain-Python ``block`` (no constexpr-function call per step) agrees with Triton's."""
    from metahp_fast.kernels.common import block
    for n in [*range(1, 300), 511, 512, 513, 4095, 4096, 4097, 100_000]:
        assert block(n) == max(16, triton.next_power_of_2(n))
        assert block(n, lo=1, hi=256) == min(triton.next_power_of_2(n), 256)


def test_descriptor_scratch_allocator_is_set_once_and_never_over_a_users(monkeypatch):
    """Device-side descriptors need Triton's scratch allocator: the launcher sets a torch one where none is set
    (Triton 3.4 keeps the allocator in a plain global, later versions in a context variable), and leaves a
    user's alone."""
    import contextvars

    from triton.runtime import _allocation

    from metahp_fast.kernels.fused_mlp import _ensure_allocator
    real_set_allocator = triton.set_allocator
    calls = []
    monkeypatch.setattr(triton, "set_allocator", calls.append)
    _ensure_allocator()
    assert len(calls) == 1 and callable(calls[0])
    users = lambda size, alignment, stream: None  # noqa: E731
    if hasattr(_allocation._allocator, "get"):  # a context variable: set it in a copy of this context only
        contextvars.copy_context().run(lambda: (real_set_allocator(users), _ensure_allocator()))
    else:
        monkeypatch.setattr(_allocation, "_allocator", users)
        _ensure_allocator()
    assert len(calls) == 1


def test_population_precision_reaches_the_kernels_and_survives_select_copy_and_pickle(monkeypatch):
    import copy
    import pickle

    from metahp_fast.backends.base import PRECISIONS
    from metahp_fast.kernels import PRECISIONS as KERNEL_PRECISIONS
    assert PRECISIONS == KERNEL_PRECISIONS  # what Population accepts is what the kernels take
    monkeypatch.delenv("METAHP_TRITON_PRECISION", raising=False)
    pop = Population([5, 7, 3], 3, "sgd", {"lr": 0.1}, backend="triton", precision="bf16")
    assert pop._backend.requested_precision == "bf16" and pop.precision == "ieee"  # the interpreter: exact products
    for other in (pop.select([2, 0]), copy.deepcopy(pop), pickle.loads(pickle.dumps(pop))):
        assert other._backend.requested_precision == "bf16"
    assert Population([5, 7, 3], 3, backend="triton")._backend.requested_precision == "tf32"
