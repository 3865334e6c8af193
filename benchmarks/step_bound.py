"""How fast the batched step could be at best on this CPU: the matrix multiplies of one population step alone
(K candidates, forward and backward), against one plain ``nn.Sequential`` + ``torch.optim.SGD`` step per trial,
and a large square GEMM for the machine's peak. If everything but the multiplies were free, batching K trials
could run at most (K plain steps) / (the population's multiplies) times faster: the bound on the Optuna speed-up.

    OMP_NUM_THREADS=1 python benchmarks/step_bound.py            # digits shape 64-128-10, K = 64, batch 128
"""
from __future__ import annotations

import argparse
import time

import torch


def _median_time(f, reps: int = 50, rounds: int = 7) -> float:
    for _ in range(10):
        f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        times.append((time.perf_counter() - t) / reps)
    return sorted(times)[rounds // 2]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=64, help="candidates in the population (default 64)")
    ap.add_argument("--batch", type=int, default=128, help="minibatch rows (default 128)")
    ap.add_argument("--layers", default="64,128,10", help="input, hidden, output widths (default 64,128,10)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    d, h, c = (int(v) for v in args.layers.split(","))
    k, b = args.k, args.batch
    gen = torch.Generator().manual_seed(0)
    x, w1 = torch.randn(b, d, generator=gen), torch.randn(k, d, h, generator=gen)
    w2 = torch.randn(k, h, c, generator=gen)
    g = torch.randn(k, b, c, generator=gen)

    def population_matmuls() -> None:  # forward, then the weight and input gradients of both layers
        hid = torch.matmul(x, w1)
        torch.bmm(hid, w2)
        torch.bmm(hid.transpose(1, 2), g)
        torch.matmul(x.t(), torch.bmm(g, w2.transpose(1, 2)))

    net = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, c))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    y = torch.randint(0, c, (b,), generator=gen)

    def plain_step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    big = torch.randn(1024, 1024, generator=gen)
    t_pop, t_plain, t_big = _median_time(population_matmuls), _median_time(plain_step), _median_time(
        lambda: big @ big, reps=5)
    flops = 2 * k * b * (d * h + h * c) * 3
    print(f"peak: a 1024x1024 GEMM runs at {2 * 1024 ** 3 / t_big / 1e9:.1f} GFLOP/s (one thread)")
    print(f"population of {k}, layers {d}-{h}-{c}, batch {b}: its matmuls alone take {t_pop * 1e3:.2f} ms a step "
          f"({flops / t_pop / 1e9:.1f} GFLOP/s)")
    print(f"plain nn.Sequential + torch.optim.SGD: {t_plain * 1e3:.3f} ms a step ({flops / k / t_plain / 1e9:.1f} "
          f"GFLOP/s); {k} trials: {k * t_plain * 1e3:.2f} ms")
    print(f"bound on the batched speed-up per step, were everything but the matmuls free: {k * t_plain / t_pop:.1f}x")


if __name__ == "__main__":
    main()
