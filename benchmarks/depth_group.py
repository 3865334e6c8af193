"""What training candidates of several depths as one PopulationGroup costs, side by side in one run.

    OMP_NUM_THREADS=1 python benchmarks/depth_group.py

Digits-shaped data (64 features, 10 classes, random rows), width 128, batch 128, SGD, torch backend, one torch
thread; K = 48 candidates, 16 each of 1, 2 and 3 hidden layers. Rows, in candidate-steps per second (best of 7
rounds, the methods alternating within each round so the machine's noise hits all alike):

- ``separate step``: the three populations of one depth each, stepped one after the other (what a user would
  write by hand);
- ``group step``: the same candidates as one ``PopulationGroup``, ``group.step(x, y)``;
- ``separate fit`` / ``group fit``: 100 steps of ``fit`` on 1,000 rows, each population alone vs the group;
- ``depth 1 only``: a 48-candidate population of one hidden layer (what the same K costs without depth);
- ``make_population, no depth``: the population a space without ``depth`` builds (the unchanged path),
  stepped as ``depth 1 only`` is, to show that path kept its speed.
Results: ``benchmarks/results/depth_group.md``.
"""
import statistics
import time

import torch

from metahp_fast import Population, PopulationGroup, SearchSpace
from metahp_fast.tasks import from_arrays
from metahp_fast.training import TrainConfig, make_population

K_PER, DEPTHS, WIDTH, B, D_IN, C = 16, (1, 2, 3), 128, 128, 64, 10


def _pop(depth: int, k: int) -> Population:
    return Population([D_IN] + [WIDTH] * depth + [C], k, "sgd", {"lr": torch.logspace(-3, -1, k), "momentum": 0.9},
                      seed=0, backend="torch")


def main() -> None:
    torch.set_num_threads(1)
    data = [(torch.randn(B, D_IN), torch.randint(0, C, (B,))) for _ in range(8)]
    x_fit, y_fit = torch.randn(1000, D_IN), torch.randint(0, C, (1000,))
    K = K_PER * len(DEPTHS)
    separate = [_pop(d, K_PER) for d in DEPTHS]
    group = PopulationGroup.by_depth(torch.tensor(DEPTHS).repeat(K_PER), lambda d, rows: _pop(d, len(rows)))
    flat = _pop(1, K)
    task = from_arrays(x_fit.numpy(), y_fit.numpy(), seed=0)
    space = SearchSpace.default("sgd")
    made = make_population(task, space, space.sample_u(K, seed=0), TrainConfig(hidden=(WIDTH,)), seed=0)
    made_x = [(torch.randn(B, task.n_features), torch.randint(0, task.n_outputs, (B,))) for _ in range(8)]
    assert type(made) is Population

    def steps(fn, batches):
        def run():
            for _ in range(3):
                for x, y in batches:
                    fn(x, y)
        return run, 3 * len(batches)

    methods = {
        "separate step": steps(lambda x, y: [p.step(x, y, check=False) for p in separate], data),
        "group step": steps(lambda x, y: group.step(x, y, check=False), data),
        "separate fit (100 steps)": (lambda: [p.fit(x_fit, y_fit, steps=100, batch_size=B, progress=False)
                                              for p in separate], 100),
        "group fit (100 steps)": (lambda: group.fit(x_fit, y_fit, steps=100, batch_size=B, progress=False), 100),
        "depth 1 only, K=48, step": steps(lambda x, y: flat.step(x, y, check=False), data),
        "make_population, no depth, K=48, step": steps(lambda x, y: made.step(x, y, check=False), made_x),
    }
    for run, _ in methods.values():  # warm up
        run()
    times = {name: [] for name in methods}
    for _ in range(7):
        for name, (run, n) in methods.items():
            t = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t) / n)
    print(f"K={K} ({K_PER} each of depths {DEPTHS}), width {WIDTH}, batch {B}, digits shape {D_IN}->{C}, sgd, "
          f"torch backend, 1 thread; best (median) of 7 rounds")
    print("| method | candidate-steps/s best | median |\n| --- | --- | --- |")
    for name, ts in times.items():
        print(f"| {name} | {K / min(ts):,.0f} | {K / statistics.median(ts):,.0f} |")


if __name__ == "__main__":
    main()
