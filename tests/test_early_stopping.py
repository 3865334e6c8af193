"""Per-candidate early stopping in Population.fit (keep_best): each candidate ends with the weights of its best
validation evaluation, chosen on the device; a diverging candidate changes nothing for the others."""
import math
import os

import pytest
import torch

from metahp_fast import Population

BACKENDS = ["torch", "reference"] + (["triton"] if os.environ.get("TRITON_INTERPRET") == "1" else [])


def _data(gen, n, d=8, c=3):
    x = torch.randn(n, d, generator=gen)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_each_candidate_ends_at_its_best_evaluation(backend, metric):
    pytest.importorskip("triton") if backend == "triton" else None
    gen = torch.Generator().manual_seed(7)
    x, y = _data(gen, 120)
    xv, yv = _data(gen, 40)
    hp = {"lr": torch.tensor([0.01, 0.3, 3.0, 0.1]), "momentum": 0.9, "weight_decay": 0.0}
    pop = Population([8, 16, 3], 4, "sgd", hp, seed=0, backend=backend)
    hist = pop.fit(x, y, steps=60, batch_size=16, x_val=xv, y_val=yv, eval_every=6, keep_best=metric,
                   progress=False)
    curve = hist["val_loss"] if metric == "loss" else -hist["val_accuracy"]
    curve = torch.nan_to_num(curve.double(), nan=math.inf)
    best = curve.argmin(0)
    steps = torch.tensor(hist["eval_step"])
    assert torch.equal(hist["best_step"], steps[best])
    now = pop.evaluate(xv, yv)
    kept = now["loss"] if metric == "loss" else now["accuracy"]
    want = hist["val_loss" if metric == "loss" else "val_accuracy"].gather(0, best.view(1, -1))[0]
    assert torch.equal(kept, want) and torch.equal(hist["best_val"].to(kept.dtype), want)


def test_a_diverging_candidate_changes_nothing_for_the_others():
    gen = torch.Generator().manual_seed(3)
    x, y = _data(gen, 100)
    xv, yv = _data(gen, 30)
    x = x * 3

    def run(lrs):
        pop = Population([8, 12, 3], len(lrs), "sgd", {"lr": torch.tensor(lrs), "momentum": 0.9}, seed=1)
        hist = pop.fit(x, y, steps=40, batch_size=10, x_val=xv, y_val=yv, eval_every=5, keep_best="loss",
                       progress=False)
        return pop, hist
    with_bad, h1 = run([0.05, 1e6, 0.2])
    without, h2 = run([0.05, 0.2])
    assert with_bad.alive.tolist() == [True, False, True]
    for i, j in ((0, 0), (2, 1)):
        assert all(torch.equal(a[i], b[j]) for a, b in zip(with_bad.params, without.params))
        assert h1["best_step"][i] == h2["best_step"][j]
    assert math.isnan(h1["best_val"][1]) or h1["best_step"][1] > 0


def test_keep_best_is_refused_without_what_it_needs():
    pop = Population([4, 5, 2], 2)
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    with pytest.raises(ValueError, match="keep_best needs validation data"):
        pop.fit(x, y, steps=3, keep_best="loss", progress=False)
    with pytest.raises(ValueError, match="keep_best"):
        pop.fit(x, y, steps=3, x_val=x, y_val=y, keep_best="best", progress=False)
    reg = Population([4, 5, 2], 2, loss="mse")
    with pytest.raises(ValueError, match="classification"):
        reg.fit(x, torch.randn(10, 2), steps=3, x_val=x, y_val=torch.randn(10, 2), keep_best="accuracy",
                progress=False)
