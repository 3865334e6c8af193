"""What per-candidate dropout costs the torch backend's step: off, on with every p = 0, and on with p in [0, 0.5].

    OMP_NUM_THREADS=1 python benchmarks/dropout_speed.py

Candidate-steps per second at K = 64, batch 128, SGD, for the digits and MNIST shapes and a two-hidden-layer
digits model: best of 7 rounds of 40 steps, one torch thread, the three variants interleaved round by round (this
machine's noise is per minute). Results: ``benchmarks/results/dropout_speed.md``.
"""
import argparse
import time

VARIANTS = {"off": None, "on, p = 0": 0.0, "on, p in [0, 0.5]": "spread"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="rounds of 40 steps per variant (best one kept)")
    args = ap.parse_args(argv)
    import torch

    from metahp_fast import Population

    torch.set_num_threads(1)
    K, B = 64, 128
    print("| shape | " + " | ".join(VARIANTS) + " | on (spread) / off |")
    print("|---|" + "---|" * (len(VARIANTS) + 1))
    for name, layers in (("digits 64-128-10", [64, 128, 10]), ("digits 64-128-128-10", [64, 128, 128, 10]),
                         ("mnist 784-128-10", [784, 128, 10])):
        pops = {}
        for v, p in VARIANTS.items():
            dropout = torch.linspace(0, 0.5, K) if p == "spread" else p
            pops[v] = Population(layers, K, "sgd", {"lr": torch.logspace(-3, -1, K)}, seed=0, backend="torch",
                                 dropout=dropout)
        data = [(torch.randn(B, layers[0]), torch.randint(0, 10, (B,))) for _ in range(8)]
        best = {v: float("inf") for v in VARIANTS}
        for pop in pops.values():
            for x, y in data[:4]:
                pop.step(x, y, check=False)
        for _ in range(args.rounds):
            for v, pop in pops.items():
                t = time.perf_counter()
                for _ in range(5):
                    for x, y in data:
                        pop.step(x, y, check=False)
                best[v] = min(best[v], time.perf_counter() - t)
        rate = {v: K * 40 / best[v] for v in VARIANTS}
        print(f"| {name} | " + " | ".join(f"{rate[v]:.0f}" for v in VARIANTS)
              + f" | {rate['on, p in [0, 0.5]'] / rate['off']:.2f} |")


if __name__ == "__main__":
    main()
