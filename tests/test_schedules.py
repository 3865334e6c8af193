"""Per-candidate warmup + cosine schedules: the multipliers, and a population trained with one against
torch.optim with a LambdaLR per candidate."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from metahp_fast import Population
from metahp_fast.schedules import warmup_cosine
from tests.util import random_hparams, rel_err


def _mult(t, steps, w, f):
    ws = math.floor(w * steps)
    if t < ws:
        return (t + 1) / ws
    p = min(1.0, max(0.0, (t - ws) / max(1, steps - ws - 1)))
    return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * p))


def test_multipliers_warm_up_then_decay_to_the_floor():
    steps, w, f = 40, [0.0, 0.25, 0.5], [0.0, 0.1, 1.0]
    s = warmup_cosine(steps, w, f, size=3)
    base = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    for t in range(steps):
        got = s(t, base)
        want = torch.tensor([b * _mult(t, steps, wi, fi) for b, wi, fi in zip(base.tolist(), w, f)], dtype=torch.float64)
        assert torch.allclose(got, want, rtol=1e-12, atol=0), t
    assert torch.allclose(s(steps - 1, base), base * torch.tensor(f, dtype=torch.float64))
    assert torch.allclose(s(0, base)[0], base[0])  # no warmup: starts at lr


def test_a_population_on_the_schedule_trains_as_torch_optim_with_lambdalr():
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()).item()))
    K, steps = 3, 20
    w, f = [0.0, 0.2, 0.5], [0.05, 0.3, 0.0]
    hp = random_hparams("sgd", K, gen)
    lrs = hp["lr"]
    start = [torch.nn.Sequential(torch.nn.Linear(23, 45), torch.nn.ReLU(), torch.nn.Linear(45, 6)).double()
             for _ in range(K)]
    pop = Population.from_modules(start, "sgd", hp)
    batches = [(torch.randn(31, 23, generator=gen, dtype=torch.float64), torch.randint(0, 6, (31,), generator=gen))
               for _ in range(steps)]
    schedule = warmup_cosine(steps, w, f, size=K)
    for t, (x, y) in enumerate(batches):  # as Population.fit(lr_schedule=schedule) calls it
        pop.step(x, y, lr=schedule(t, lrs))
    for k in range(K):
        m = copy.deepcopy(start[k])
        opt = torch.optim.SGD(m.parameters(), lr=float(lrs[k]), momentum=float(hp["momentum"][k]),
                              weight_decay=float(hp["weight_decay"][k]))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t, k=k: _mult(t, steps, w[k], f[k]))
        for x, y in batches:
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
            sched.step()
        for a, b in zip(pop.to_module(k).parameters(), m.parameters()):
            assert rel_err(a.detach(), b.detach()) < 1e-10


@pytest.mark.parametrize("kw,match", [(dict(warmup=1.0), "warmup"), (dict(floor=1.5), "floor"),
                                      (dict(warmup=[0.1, 0.2]), "warmup"), (dict(steps=0), "steps")])
def test_bad_shapes_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        warmup_cosine(**{"steps": 10, "size": 3, **kw})
