"""Per-candidate hidden widths: each candidate trains exactly as a separate nn.Linear MLP of its own width
(initialization included) trained with torch.optim, on every backend; exports, imports and copies keep them."""
import copy
import math
import os

import pytest
import torch
import torch.nn.functional as F

from metahp_fast import Population
from tests.util import random_batches, random_hparams, rel_err

BACKENDS = ["torch", "reference"]
try:  # the triton backend runs here under its interpreter (tests/conftest.py sets TRITON_INTERPRET=1)
    import triton  # noqa: F401
    if os.environ.get("TRITON_INTERPRET") == "1":
        BACKENDS.append("triton")
except ImportError:
    pass


def _by_hand(module, optimizer, hp, k, batches, loss):
    m = copy.deepcopy(module)
    if optimizer == "sgd":
        opt = torch.optim.SGD(m.parameters(), lr=float(hp["lr"][k]), momentum=float(hp["momentum"][k]),
                              weight_decay=float(hp["weight_decay"][k]))
    else:
        opt = torch.optim.AdamW(m.parameters(), lr=float(hp["lr"][k]), betas=(float(hp["beta1"][k]),
                                float(hp["beta2"][k])), eps=float(hp["eps"][k]), weight_decay=float(hp["weight_decay"][k]))
    for x, y in batches:
        opt.zero_grad()
        out = m(x.to(next(m.parameters()).dtype))
        (F.cross_entropy(out, y) if loss == "cross_entropy" else F.mse_loss(out, y.to(out.dtype))).backward()
        opt.step()
    return m


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer,activation,layers,loss", [
    ("sgd", "relu", [13, 23, 5], "cross_entropy"),
    ("adamw", "tanh", [9, 17, 11, 3], "cross_entropy"),
    ("adamw", "gelu", [7, 19, 4], "mse"),
])
def test_each_candidate_trains_as_a_separate_model_of_its_width(backend, optimizer, activation, layers, loss):
    dtype = torch.float32 if backend == "triton" else torch.float64
    gen = torch.Generator().manual_seed(hash((optimizer, activation, backend)) % 2**31)
    K = 5
    hidden = len(layers) - 2
    widths = torch.randint(1, min(layers[1:-1]) + 1, (K, hidden), generator=gen)
    widths[0] = torch.tensor(layers[1:-1])  # one candidate at full width
    hp = {k: v.to(dtype) for k, v in random_hparams(optimizer, K, gen).items()}
    pop = Population(layers, K, optimizer, hp, activation=activation, loss=loss, widths=widths, seed=3,
                     dtype=dtype, backend=backend, **({"precision": "ieee"} if backend == "triton" else {}))
    start = [pop.to_module(k) for k in range(K)]
    batches = random_batches(layers, loss, 29, 12, gen, dtype)
    for x, y in batches:
        pop.step(x, y)
    for k in range(K):
        assert [m.out_features for m in start[k][0::2][:-1]] == widths[k].tolist()
        ref = _by_hand(start[k], optimizer, hp, k, batches, loss)
        got = pop.to_module(k)
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        for (name, a), (_, b) in zip(got.named_parameters(), ref.named_parameters()):
            assert a.shape == b.shape and rel_err(a.detach(), b.detach()) < tol, (k, name)
        # the population's own outputs for candidate k equal the exported narrow model's
        x = batches[0][0]
        assert rel_err(pop.forward(x)[k], got(x)) < tol


def test_initialization_is_nn_linear_for_each_width():
    """W0 from U(+-1/sqrt(d_in)) shared by all; the next layer's draw scaled to the candidate's fan-in."""
    layers, widths = [10, 64, 3], torch.tensor([64, 16, 4, 1])
    pop = Population(layers, 4, widths=widths, seed=0, dtype=torch.float64)
    full = pop.to_module(0)
    for k, w in enumerate(widths.tolist()):
        m = pop.to_module(k)
        assert torch.equal(m[0].weight, full[0].weight[:w]) and torch.equal(m[0].bias, full[0].bias[:w])
        scale = math.sqrt(64 / w)
        assert torch.allclose(m[2].weight, full[2].weight[:, :w] * scale, rtol=1e-12, atol=0)
        assert torch.allclose(m[2].bias, full[2].bias * scale, rtol=1e-12, atol=0)
        assert float(m[2].weight.detach().abs().max()) <= 1 / math.sqrt(w) + 1e-12
    # units beyond a width are exactly zero in the stacked weights, and stay zero when training
    pop.fit(torch.randn(50, 10, dtype=torch.float64), torch.randint(0, 3, (50,)), steps=20, batch_size=16,
            progress=False)
    assert pop.params[0][1, :, 16:].abs().max() == 0 and pop.params[2][2, 4:, :].abs().max() == 0


def test_modules_of_different_widths_import_and_export_unchanged():
    mods = [torch.nn.Sequential(torch.nn.Linear(6, w), torch.nn.ReLU(), torch.nn.Linear(w, 2)) for w in (3, 8, 5)]
    pop = Population.from_modules(mods, optimizer="adamw")
    assert pop.layers == (6, 8, 2) and pop.widths.flatten().tolist() == [3, 8, 5]
    x = torch.randn(7, 6)
    for k, m in enumerate(mods):
        out = pop.to_module(k)
        assert all(torch.equal(a, b) for a, b in zip(out.parameters(), m.parameters()))
        assert torch.allclose(pop.forward(x)[k], m(x), atol=1e-6)


def test_select_state_dict_and_copies_keep_widths(tmp_path):
    pop = Population([5, 12, 9, 2], 4, widths=[[12, 9], [3, 2], [7, 9], [1, 1]], seed=1)
    x, y = torch.randn(30, 5), torch.randint(0, 2, (30,))
    pop.fit(x, y, steps=5, batch_size=8, progress=False)
    sub = pop.select([3, 1])
    assert sub.widths.tolist() == [[1, 1], [3, 2]]
    assert all(torch.equal(a, b) for a, b in zip(sub.to_module(1).parameters(), pop.to_module(1).parameters()))
    other = Population([5, 12, 9, 2], 4, seed=2)
    other.load_state_dict(pop.state_dict())
    assert torch.equal(other.widths, pop.widths)
    back = copy.deepcopy(pop)
    assert torch.equal(back.widths, pop.widths)
    pop.copy_candidates(torch.tensor([1]), torch.tensor([0]))  # PBT's exploit: candidate 0 becomes 1
    assert pop.widths[0].tolist() == [3, 2] and pop.to_module(0)[0].out_features == 3


@pytest.mark.parametrize("widths,match", [
    ([0, 3], "between 1"), ([9, 3], "between 1"), ([2.5, 3], "whole numbers"), ([1, 2, 3], "shape"),
    ([[1, 2, 3], [1, 2, 3]], "shape"),
])
def test_bad_widths_are_refused_naming_the_argument(widths, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Population([4, 8, 2], 2, widths=widths)


def test_sigmoid_refuses_narrowed_widths():
    with pytest.raises(ValueError, match="f\\(0\\) = 0"):
        Population([4, 8, 2], 2, activation="sigmoid", widths=[8, 3])
    Population([4, 8, 2], 2, activation="sigmoid", widths=[8, 8])  # full widths are fine


def test_a_linear_model_has_no_widths():
    pop = Population.from_modules([torch.nn.Sequential(torch.nn.Linear(5, 3)) for _ in range(2)])
    assert pop.widths.shape == (2, 0) and pop.to_module(1)[0].in_features == 5
    with pytest.raises(ValueError, match="hidden layer"):
        Population([5, 3], 2, widths=[1, 1])
