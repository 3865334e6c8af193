"""Population behaviour: divergence isolation, export/import, persistence, evaluation, fit, selection."""
import copy
import math

import numpy as np
import pytest
import torch

from metahp_fast import Population
from metahp_fast.backends import resolve_name

from .util import full_state, random_batches, rel_err

BACKENDS = ["torch", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_diverging_candidate_is_isolated(backend, optimizer):
    """A candidate with lr=1e6 dies; the others hold no NaN and equal a run without it (fp64, < 1e-12).
    (AdamW's step is bounded by lr, so there it takes lr=1e200 to overflow float64.)"""
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()).item()))
    layers, K = [30, 41, 5], 4
    base = {"sgd": {"momentum": 0.9, "weight_decay": 1e-4}, "adamw": {"weight_decay": 1e-2}}[optimizer]
    lr_ok = {"sgd": [0.05, 0.1, 0.02], "adamw": [1e-3, 3e-3, 1e-2]}[optimizer]
    lrs = torch.tensor([lr_ok[0], 1e6 if optimizer == "sgd" else 1e200] + lr_ok[1:], dtype=torch.float64)
    batches = [(x * 3, y) for x, y in random_batches(layers, "cross_entropy", 23, 30, gen)]
    pop = Population(layers, K, optimizer, {**base, "lr": lrs}, seed=5, dtype=torch.float64, backend=backend)
    keep = [0, 2, 3]
    ref = Population(layers, 3, optimizer, {**base, "lr": lrs[keep]}, seed=5, dtype=torch.float64, backend=backend)
    saw_inf = False
    for x, y in batches:
        losses, ref_losses = pop.step(x, y), ref.step(x, y)
        assert torch.equal(losses[keep], ref_losses) or rel_err(losses[keep], ref_losses) < 1e-12
        saw_inf |= bool(torch.isinf(losses[1]))
    assert pop.alive.tolist() == [True, False, True, True]
    assert saw_inf
    for a, b in zip(full_state(pop), full_state(ref)):
        assert torch.isfinite(a[keep]).all()
        assert rel_err(a[keep], b) < 1e-12
    frozen = [p[1].clone() for p in pop.params]
    pop.step(*batches[0])
    for f, p in zip(frozen, pop.params):  # a dead candidate is frozen exactly: same values, NaNs where they were
        assert torch.equal(torch.isnan(f), torch.isnan(p[1])) and torch.equal(f.nan_to_num(), p[1].nan_to_num())
    m = pop.evaluate(*batches[0])
    assert math.isinf(m["loss"][1]) and math.isnan(m["accuracy"][1])
    assert torch.isfinite(m["loss"][keep]).all()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_to_module_and_from_modules_round_trip(activation):
    pop = Population([12, 20, 9, 4], 3, "adamw", {"lr": [1e-3, 1e-2, 3e-2]}, activation=activation,
                     init="independent", seed=1)
    x = torch.randn(50, 12)
    y = torch.randint(0, 4, (50,))
    for _ in range(3):
        pop.step(x, y)
    outs = pop.forward(x)
    mods = [pop.to_module(i) for i in range(3)]
    for i, m in enumerate(mods):
        assert isinstance(m, torch.nn.Sequential)
        assert torch.allclose(m(x), outs[i], rtol=1e-5, atol=1e-6)
    back = Population.from_modules(mods, "adamw", {"lr": [1e-3, 1e-2, 3e-2]})
    assert back.layers == (12, 20, 9, 4) and back.spec.activation == activation
    for p, q in zip(back.params, pop.params):
        assert torch.equal(p, q)
    mods[0][0].weight.data.zero_()  # exported modules are copies
    assert not torch.equal(pop.params[0][0], torch.zeros_like(pop.params[0][0]))


def test_exports_of_one_wide_layers_are_copies_too():
    """A candidate's (1, n) weight slice transposed counts as contiguous; the export still copies it."""
    pop = Population([1, 5, 1], 2, loss="mse", seed=3)
    m = pop.to_module(1)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    assert all(bool(p[1].abs().sum() > 0) for p in pop.params)
    x = torch.randn(7, 1)
    torch.testing.assert_close(Population.from_modules([pop.to_module(0), pop.to_module(1)], loss="mse").forward(x),
                               pop.forward(x))


def test_candidate_indices_take_numpy_ints_and_0_dim_integer_tensors():
    pop = Population([4, 6, 3], 3, "sgd", {"lr": [0.1, 0.2, 0.3]}, init="independent", seed=2)
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    best = pop.evaluate(x, y)["loss"].argmin()  # a 0-dim int64 tensor
    for i in (best, np.int64(int(best)), int(best), int(best) - 3, torch.tensor(int(best), dtype=torch.int32)):
        assert torch.equal(pop.to_module(i)[0].weight, pop.params[0][int(best)].t())
    for bad in (True, np.bool_(False), 1.0, torch.tensor(1.0), torch.tensor(True), torch.tensor([1]), "1", 3, -4):
        with pytest.raises(IndexError, match=r"candidate index must be an int"):
            pop.to_module(bad)


def test_from_modules_rejects_mixed_architectures():
    """Only hidden widths may differ (tests/test_widths.py): depth, activation, inputs and outputs may not."""
    a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    for b in (torch.nn.Sequential(torch.nn.Linear(4, 9), torch.nn.Tanh(), torch.nn.Linear(9, 2)),
              torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)),
              torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)),
              torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                                  torch.nn.Linear(8, 2))):
        with pytest.raises(ValueError, match="modules\\[1\\]"):
            Population.from_modules([a, b])
    with pytest.raises(ValueError, match="modules"):
        Population.from_modules([])
    with pytest.raises(ValueError, match="modules\\[0\\]"):
        Population.from_modules([torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout())])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_state_dict_resumes_bit_identically(backend, optimizer, tmp_path):
    layers = [10, 15, 3]
    hp = {"lr": torch.logspace(-3, 1, 4)}
    batches = random_batches(layers, "cross_entropy", 20, 12, torch.Generator().manual_seed(0), torch.float32)
    a = Population(layers, 4, optimizer, hp, backend=backend)
    for x, y in batches[:6]:
        a.step(x, y)
    torch.save(a.state_dict(), tmp_path / "pop.pt")
    b = Population(layers, 4, optimizer, {"lr": 0.5}, seed=99, backend=backend)
    b.load_state_dict(torch.load(tmp_path / "pop.pt"))
    assert b.steps_done == 6 and torch.equal(b.hparams["lr"], a.hparams["lr"])
    for x, y in batches[6:]:
        assert torch.equal(a.step(x, y), b.step(x, y))
    for p, q in zip(full_state(a), full_state(b)):
        assert torch.equal(p, q)
    assert torch.equal(a.alive, b.alive) and torch.equal(a.step_count, b.step_count)


def test_state_dict_is_a_copy_and_mismatches_are_refused():
    pop = Population([6, 8, 2], 2)
    sd = pop.state_dict()
    pop.step(torch.randn(5, 6), torch.randint(0, 2, (5,)))
    assert not torch.equal(sd["params"][0], pop.params[0])
    other = Population([6, 9, 2], 2)
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(ValueError, match="state"):
        other.load_state_dict(sd)
    with pytest.raises(ValueError, match="state"):
        Population([6, 8, 2], 3).load_state_dict(sd)
    for p, q in zip(before["params"], other.params):
        assert torch.equal(p, q)


def test_evaluate_matches_exported_modules():
    pop = Population([7, 11, 3], 4, "sgd", {"lr": torch.tensor([0.01, 0.1, 0.3, 1.0])}, init="independent")
    x, y = torch.randn(300, 7), torch.randint(0, 3, (300,))
    pop.fit(x, y, steps=15, batch_size=32, progress=False)
    m = pop.evaluate(x, y, batch_size=64)  # chunked on purpose
    for i in range(4):
        out = pop.to_module(i)(x)
        assert abs(m["loss"][i].item() - torch.nn.functional.cross_entropy(out, y).item()) < 1e-5
        assert abs(m["accuracy"][i].item() - (out.argmax(1) == y).float().mean().item()) < 1e-6


def test_fit_history_and_validation():
    pop = Population([5, 8, 2], 3, "sgd", {"lr": 0.1, "momentum": 0.9})
    x = torch.randn(100, 5)
    y = (x[:, 0] > 0).long()
    hist = pop.fit(x, y, steps=40, batch_size=16, x_val=x, y_val=y, eval_every=10, progress=False)
    assert hist["loss"].shape == (40, 3)
    assert hist["eval_step"] == [10, 20, 30, 40]
    assert hist["val_loss"].shape == (4, 3) and hist["val_accuracy"].shape == (4, 3)
    assert (hist["val_loss"][-1] < hist["val_loss"][0]).all()  # it learns a linearly separable rule
    assert pop.steps_done == 40


def test_fit_accepts_numpy_and_is_seeded():
    x = np.random.default_rng(0).normal(size=(64, 4))
    y = np.arange(64) % 3
    a, b = (Population([4, 6, 3], 2) for _ in range(2))
    ha = a.fit(x, y, steps=5, batch_size=8, seed=3, progress=False)
    hb = b.fit(x, y, steps=5, batch_size=8, seed=3, progress=False)
    assert torch.equal(ha["loss"], hb["loss"])


def test_init_shared_scaled_and_independent():
    shared = Population([5, 7, 2], 3, "sgd", {"init_scale": torch.tensor([1.0, 2.0, 0.5])}, seed=4)
    W = shared.params[0]
    assert torch.allclose(W[1], 2 * W[0]) and torch.allclose(W[2], 0.5 * W[0])
    again = Population([5, 7, 2], 3, "sgd", {"init_scale": torch.tensor([1.0, 2.0, 0.5])}, seed=4)
    assert torch.equal(again.params[0], W)
    indep = Population([5, 7, 2], 3, init="independent", seed=4)
    assert not torch.equal(indep.params[0][0], indep.params[0][1])
    bound = 1 / math.sqrt(5)
    assert indep.params[0].abs().max() <= bound


def test_select_keeps_chosen_candidates_training_identically():
    layers = [8, 12, 3]
    batches = random_batches(layers, "cross_entropy", 16, 8, torch.Generator().manual_seed(1), torch.float64)
    pop = Population(layers, 5, "adamw", {"lr": torch.logspace(-3, -1, 5)}, dtype=torch.float64, init="independent")
    for x, y in batches[:4]:
        pop.step(x, y)
    sub = pop.select([4, 1])
    assert sub.size == 2 and torch.equal(sub.hparams["lr"], pop.hparams["lr"][[4, 1]])
    for x, y in batches[4:]:
        pop.step(x, y)
        sub.step(x, y)
    for p, q in zip(full_state(sub), full_state(pop)):
        assert torch.equal(p, q[[4, 1]])


def test_select_takes_a_bool_mask_and_refuses_what_is_neither():
    pop = Population([8, 4, 2], 4, "sgd", {"lr": torch.tensor([0.8, 0.1, 0.02, 0.5])})
    assert torch.equal(pop.select(pop.alive).hparams["lr"], pop.hparams["lr"])  # all alive: all of them, in order
    assert torch.equal(pop.select([True, False, True, False]).hparams["lr"], pop.hparams["lr"][[0, 2]])
    assert torch.equal(pop.select(np.array([0, 3])).hparams["lr"], pop.hparams["lr"][[0, 3]])
    with pytest.raises(ValueError, match=r"bool mask for indices must have shape \(4,\)"):
        pop.select([True, False])
    with pytest.raises(TypeError, match="indices must be candidate numbers"):
        pop.select(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="at least one candidate"):
        pop.select(torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one candidate"):
        pop.select([])  # an empty list: torch reads it as float32, still the same error


def test_fit_and_step_name_the_argument_that_is_wrong():
    pop = Population([8, 4, 2], 2, "sgd")
    x, y = np.zeros((6, 8), np.float32), np.zeros(6, np.int64)
    with pytest.raises(TypeError, match="y_val must be a torch.Tensor or numpy array; got NoneType"):
        pop.fit(x, y, steps=2, x_val=x)
    with pytest.raises(ValueError, match=r"x_val must have shape \(batch, 8\)"):
        pop.fit(x, y, steps=2, x_val=x[:, :5], y_val=y)
    with pytest.raises(TypeError, match="y must hold numbers; got strings .*from_arrays"):
        pop.step(x, np.array(["a"] * 6))


def test_hparams_settable_between_steps_and_validated():
    pop = Population([4, 6, 2], 3, "sgd", {"lr": 0.1})
    t = pop.hparams["lr"]
    pop.hparams["lr"] = torch.tensor([0.0, 0.2, 0.3])
    assert pop.hparams["lr"] is t and t.tolist() == pytest.approx([0.0, 0.2, 0.3])
    pop.hparams = {"momentum": 0.5}
    assert pop.hparams["momentum"].tolist() == [0.5] * 3
    W0 = pop.params[0][0].clone()
    pop.step(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    assert torch.equal(pop.params[0][0], W0)  # lr 0 leaves candidate 0 unchanged
    with pytest.raises(ValueError, match="lr"):
        pop.hparams["lr"] = -1.0
    with pytest.raises(ValueError, match="beta1"):
        pop.hparams["beta1"] = 0.9
    with pytest.raises(ValueError, match="momentum"):
        pop.hparams = {"lr": 0.1, "momentum": 1.5}
    assert pop.hparams["lr"][1].item() == pytest.approx(0.2)  # the failed update wrote nothing


def test_hparams_cannot_lose_a_name_the_optimizer_reads():
    pop = Population([4, 6, 2], 2, "sgd", {"lr": 0.1, "momentum": 0.9})
    with pytest.raises(TypeError, match="cannot remove hyperparameter 'momentum'.*pop.hparams\\['momentum'\\]"):
        pop.hparams.pop("momentum")
    with pytest.raises(TypeError, match="cannot remove hyperparameter 'lr'"):
        del pop.hparams["lr"]
    with pytest.raises(TypeError, match="cannot remove hyperparameter 'init_scale'"):
        pop.hparams.popitem()
    with pytest.raises(TypeError, match="cannot remove hyperparameters"):
        pop.hparams.clear()
    with pytest.raises(KeyError):
        pop.hparams.pop("beta1")  # not there: dict's own answer
    assert pop.hparams.pop("beta1", None) is None
    with pytest.raises(ValueError, match="unknown hyperparameter 'beta1'"):
        pop.hparams.setdefault("beta1", 0.9)
    with pytest.raises(ValueError, match="momentum"):
        pop.hparams |= {"momentum": 2.0}  # |= validates like update()
    pop.hparams |= {"momentum": 0.5}
    assert pop.hparams.setdefault("momentum", 0.1).tolist() == [0.5, 0.5]
    assert sorted(pop.hparams) == ["init_scale", "lr", "momentum", "weight_decay"]
    pop.step(torch.randn(8, 4), torch.randint(0, 2, (8,)))  # still trains
    snap = copy.deepcopy(pop.hparams)  # a snapshot of its own tensors, still checked on assignment
    assert type(snap) is type(pop.hparams) and snap.keys() == pop.hparams.keys()
    assert all(torch.equal(snap[k], v) and snap[k] is not v for k, v in pop.hparams.items())
    assert copy.copy(pop.hparams)["lr"] is pop.hparams["lr"]
    with pytest.raises(ValueError, match="momentum"):
        snap["momentum"] = 1.5


def test_seed_takes_numpy_integers_but_not_bools_or_floats():
    a = Population([3, 4, 2], 2, seed=np.int64(7), init="independent")
    b = Population([3, 4, 2], 2, seed=7, init="independent")
    assert torch.equal(a.params[0], b.params[0])
    for bad in (True, np.bool_(True), 7.0, np.float64(7), "7", None):
        with pytest.raises(TypeError, match="seed must be an int"):
            Population([3, 4, 2], 2, seed=bad)
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    assert torch.equal(a.fit(x, y, steps=3, batch_size=4, seed=np.int32(1), progress=False)["loss"],
                       b.fit(x, y, steps=3, batch_size=4, seed=1, progress=False)["loss"])
    with pytest.raises(TypeError, match="seed must be an int"):
        a.fit(x, y, steps=3, seed=1.5)


def test_backend_resolution(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("METAHP_BACKEND", raising=False)
    assert resolve_name("auto", cpu) == "torch"
    monkeypatch.setenv("METAHP_BACKEND", "reference")
    assert resolve_name("auto", cpu) == "reference"
    assert Population([3, 4, 2], 2).backend == "reference"
    assert Population([3, 4, 2], 2, backend="torch").backend == "torch"  # explicit wins
    monkeypatch.setenv("METAHP_BACKEND", "fast-please")
    with pytest.raises(ValueError, match="METAHP_BACKEND"):
        Population([3, 4, 2], 2)


def test_mse_single_output_accepts_flat_targets():
    pop = Population([3, 5, 1], 2, "sgd", {"lr": 0.05}, loss="mse")
    x = torch.randn(16, 3)
    losses = pop.step(x, x.sum(1))
    assert losses.shape == (2,) and torch.isfinite(losses).all()
    assert "accuracy" not in pop.evaluate(x, x.sum(1))


def test_missing_hyperparameters_take_torch_optims_own_defaults():
    """What the docstring promises, checked against torch.optim's signatures rather than copied numbers."""
    import inspect
    for name, cls in (("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)):
        sig = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
        want = {"lr": sig["lr"], "weight_decay": sig["weight_decay"]}
        want.update({"momentum": sig["momentum"]} if name == "sgd" else
                    {"beta1": sig["betas"][0], "beta2": sig["betas"][1], "eps": sig["eps"]})
        pop = Population([4, 5, 3], 2, name, {}, dtype=torch.float64)
        assert {k: float(v[0]) for k, v in pop.hparams.items() if k != "init_scale"} == pytest.approx(want), name


def test_a_pickled_population_resumes_identically_without_its_scratch_buffers(tmp_path):
    """torch.save(pop) / torch.load round trip: the same state and the same next steps; the torch backend's
    workspace (megabytes of per-step buffers) is not in the file."""
    import pickle
    layers = [16, 40, 5]
    batches = random_batches(layers, "cross_entropy", 24, 6, torch.Generator().manual_seed(4), torch.float32)
    pop = Population(layers, 7, "adamw", {"lr": torch.logspace(-3, -1, 7)}, init="independent", backend="torch")
    pop.alive[3] = False
    empty = len(pickle.dumps(pop))
    for x, y in batches[:3]:
        pop.step(x, y)
    assert "torch_workspace" in pop._state.cache
    torch.save(pop, tmp_path / "pop.pt")
    assert abs((tmp_path / "pop.pt").stat().st_size - empty) < 0.1 * empty  # the state only, no buffers
    back = torch.load(tmp_path / "pop.pt", weights_only=False)
    assert back.backend == "torch" and back.steps_done == pop.steps_done and not bool(back.alive[3])
    for x, y in batches[3:]:
        assert torch.equal(pop.step(x, y), back.step(x, y))
    for a, b in zip(full_state(pop), full_state(back)):
        assert torch.equal(a, b)
    back.hparams["lr"] = 0.5  # the hyperparameters are still validated on assignment
    with pytest.raises(ValueError, match="lr"):
        back.hparams["lr"] = -1.0


def test_unpickling_where_the_saved_backend_cannot_run_falls_back_to_auto(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    pop = Population([4, 6, 3], 2, "sgd", {"lr": 0.1})
    state = pop.__getstate__()
    state["backend"] = "no-such-backend"  # as a triton population loaded onto a machine without CUDA
    back = Population.__new__(Population)
    with pytest.warns(UserWarning, match="cannot run this population where it was loaded"):
        back.__setstate__(state)
    assert back.backend == "torch" and torch.equal(back.params[0], pop.params[0])


def test_precision_is_checked_and_the_cpu_backends_compute_in_their_dtype():
    from metahp_fast.training import TrainConfig
    from metahp_fast.tuners import SuccessiveHalving
    with pytest.raises(ValueError, match="precision"):
        Population([4, 5, 3], 2, precision="fp8")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="half")
    # a checkpoint header written before the option existed had no "precision": the default still matches it
    assert "precision" not in TrainConfig().to_dict() and TrainConfig(precision="bf16").to_dict()["precision"] == "bf16"
    assert SuccessiveHalving(precision="bf16").config.precision == "bf16"
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    a = Population([4, 5, 3], 3, "sgd", {"lr": 0.1}, precision="bf16", backend="torch")
    b = Population([4, 5, 3], 3, "sgd", {"lr": 0.1}, backend="torch")
    assert a.precision == "ieee" and torch.equal(a.step(x, y), b.step(x, y))  # a GPU option, a no-op here


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_backend_seam_defaults(backend):
    """What Population calls on every backend: the CPU backends take steps one at a time through the default
    ``steps`` (the same as calling ``step`` per row of idx), and accept a precision they ignore."""
    from metahp_fast.backends import Backend, get_backend
    from metahp_fast.model import ModelSpec

    spec = ModelSpec((4, 6, 3))
    be = get_backend(backend, spec, torch.device("cpu"), torch.float64)
    assert isinstance(be, Backend) and be.name == backend and be.steps_per_launch(spec, 8) == 1
    be.precision = "bf16"
    assert be.precision == "ieee"
    with pytest.raises(ValueError, match="precision must be one of"):
        be.precision = "fp8"
    a, b = (Population([4, 6, 3], 3, "sgd", {"lr": [0.1, 0.2, 0.3], "momentum": 0.9}, dtype=torch.float64,
                       backend=backend) for _ in range(2))
    x, y = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    idx = torch.randint(0, 30, (4, 8))
    lr = torch.rand(4, 3, dtype=torch.float64)
    got = a._backend.steps(a._state, x, y, idx, lr)
    want = torch.stack([b.step(x[i], y[i], lr=lr[s]) for s, i in enumerate(idx)])
    assert torch.equal(got, want) and all(torch.equal(p, q) for p, q in zip(a.params, b.params))

    class Incomplete(Backend):
        name = "incomplete"

        def check(self, spec, device, dtype):
            pass
    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
