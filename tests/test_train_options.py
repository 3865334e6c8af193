"""Per-candidate label smoothing and batch sizes: every backend against torch.optim on a plain nn.Sequential,
each candidate trained by hand on its own rows with F.cross_entropy(label_smoothing=...)."""
import copy
import os

import pytest
import torch
import torch.nn.functional as F

from metahp_fast import Population
from tests.util import random_batches, random_hparams, rel_err

BACKENDS = ["torch", "reference"] + (["triton"] if os.environ.get("TRITON_INTERPRET") == "1" else [])


def _by_hand(module, hp, k, batches, loss, smoothing, rows):
    m = copy.deepcopy(module)
    opt = torch.optim.AdamW(m.parameters(), lr=float(hp["lr"][k]), betas=(float(hp["beta1"][k]), float(hp["beta2"][k])),
                            eps=float(hp["eps"][k]), weight_decay=float(hp["weight_decay"][k]))
    for x, y in batches:
        b = x.shape[0] if rows is None else min(rows[k], x.shape[0])
        opt.zero_grad()
        out = m(x[:b].to(next(m.parameters()).dtype))
        if loss == "cross_entropy":
            F.cross_entropy(out, y[:b], label_smoothing=0.0 if smoothing is None else float(smoothing[k])).backward()
        else:
            F.mse_loss(out, y[:b].to(out.dtype)).backward()
        opt.step()
    return m


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss,smooth,rows", [("cross_entropy", True, False), ("cross_entropy", False, True),
                                              ("cross_entropy", True, True), ("mse", False, True)])
def test_options_train_each_candidate_as_by_hand(backend, loss, smooth, rows):
    pytest.importorskip("triton") if backend == "triton" else None
    dtype = torch.float32 if backend == "triton" else torch.float64
    gen = torch.Generator().manual_seed(11)
    layers, K, B = [11, 21, 4], 5, 23
    hp = {k: v.to(dtype) for k, v in random_hparams("adamw", K, gen).items()}
    smoothing = torch.rand(K, generator=gen, dtype=torch.float64) * 0.3 if smooth else None
    sizes = torch.tensor([23, 1, 7, 16, 40]) if rows else None  # 40 > B: the whole batch
    pop = Population(layers, K, "adamw", hp, loss=loss, seed=5, dtype=dtype, backend=backend,
                     label_smoothing=smoothing, batch_sizes=sizes,
                     **({"precision": "ieee"} if backend == "triton" else {}))
    start = [pop.to_module(k) for k in range(K)]
    batches = random_batches(layers, loss, B, 10, gen, dtype)
    losses = [pop.step(x, y) for x, y in batches]
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for k in range(K):
        ref = _by_hand(start[k], hp, k, batches, loss, smoothing, None if sizes is None else sizes.tolist())
        for a, b in zip(pop.to_module(k).parameters(), ref.parameters()):
            assert rel_err(a.detach(), b.detach()) < tol, k
    # the first step's reported loss is candidate k's smoothed loss on its own rows, before the update
    x, y = batches[0]
    for k in range(K):
        b = B if sizes is None else min(int(sizes[k]), B)
        with torch.no_grad():
            out = start[k](x[:b].to(dtype))
        want = (F.cross_entropy(out, y[:b], label_smoothing=0.0 if smoothing is None else float(smoothing[k]))
                if loss == "cross_entropy" else F.mse_loss(out, y[:b].to(dtype)))
        assert abs(float(losses[0][k]) - float(want)) <= tol * max(1.0, abs(float(want)))


def test_options_survive_select_state_dict_and_copies():
    pop = Population([4, 6, 3], 3, label_smoothing=[0.0, 0.1, 0.2], batch_sizes=[2, 4, 8])
    sub = pop.select([2, 0])
    assert sub.options["batch_size"].tolist() == [8, 2]
    assert torch.allclose(sub.options["label_smoothing"], torch.tensor([0.2, 0.0]))
    other = Population([4, 6, 3], 3, label_smoothing=0.0, batch_sizes=[1, 1, 1])
    other.load_state_dict(pop.state_dict())
    assert other.options["batch_size"].tolist() == [2, 4, 8]
    with pytest.raises(ValueError, match="options"):
        Population([4, 6, 3], 3).load_state_dict(pop.state_dict())
    pop.copy_candidates(torch.tensor([2]), torch.tensor([0]))
    assert pop.options["batch_size"].tolist() == [8, 4, 8]


@pytest.mark.parametrize("kw,match", [
    (dict(label_smoothing=1.0), "label_smoothing"), (dict(label_smoothing=[0.1, 0.2]), "label_smoothing"),
    (dict(label_smoothing="x"), "label_smoothing"), (dict(batch_sizes=[0, 2, 3]), "batch_sizes"),
    (dict(batch_sizes=[1.5, 2, 3]), "batch_sizes"), (dict(loss="mse", label_smoothing=0.1), "cross_entropy"),
])
def test_bad_options_are_refused_naming_the_argument(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Population([4, 6, 3], 3, **kw)


def test_fit_batch_size_must_hold_every_candidates_rows():
    pop = Population([4, 6, 3], 2, batch_sizes=[8, 32])
    with pytest.raises(ValueError, match="batch_size"):
        pop.fit(torch.randn(40, 4), torch.randint(0, 3, (40,)), steps=2, batch_size=16, progress=False)
    pop.fit(torch.randn(40, 4), torch.randint(0, 3, (40,)), steps=2, batch_size=32, progress=False)
