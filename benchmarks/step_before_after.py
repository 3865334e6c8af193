"""The torch backend's population step in one checkout of the repository, for before/after comparisons.

    for i in 1 2 3; do for t in OLD_CHECKOUT .; do OMP_NUM_THREADS=1 python benchmarks/step_before_after.py $t; done; done

Imports ``metahp_fast`` from the checkout given (a ``git worktree`` of the older commit, or ``.``), and prints
candidate-steps per second at K = 64, batch 128, for the digits and MNIST shapes with SGD and AdamW: best of 7
rounds of 40 steps, one torch thread. Run the two checkouts alternately: this machine's noise is per minute.
Results: ``benchmarks/results/step_before_after.md``.
"""
import argparse
import sys
import time


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", help="the repository checkout whose metahp_fast to time")
    args = ap.parse_args(argv)
    sys.path.insert(0, args.checkout)
    import torch

    import metahp_fast
    from metahp_fast import Population

    torch.set_num_threads(1)
    print(metahp_fast.__file__)
    for name, layers in (("digits 64-128-10", [64, 128, 10]), ("mnist 784-128-10", [784, 128, 10])):
        for opt in ("sgd", "adamw"):
            K, B = 64, 128
            pop = Population(layers, K, opt, {"lr": torch.logspace(-3, -1, K)}, seed=0, backend="torch")
            data = [(torch.randn(B, layers[0]), torch.randint(0, 10, (B,))) for _ in range(8)]
            for x, y in data[:4]:
                pop.step(x, y, check=False)
            best = float("inf")
            for _ in range(7):
                t = time.perf_counter()
                for _ in range(5):
                    for x, y in data:
                        pop.step(x, y, check=False)
                best = min(best, time.perf_counter() - t)
            print(f"{name}\t{opt}\t{K * 40 / best:.0f}")


if __name__ == "__main__":
    main()
