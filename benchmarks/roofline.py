"""Roofline of one population step: the bytes it must move, the FLOPs it must do, and the floor time on a
device of measured copy bandwidth and matrix rate.

    python -m benchmarks.roofline --shape mnist --K 1024 --optimizer sgd --device cuda
    python -m benchmarks.roofline --cpu-note      # torch backend GFLOP/s at digits K=64 vs a large torch.mm

Bytes: every parameter (weights and biases) is read twice (forward, update) and written once, and each
optimizer-state tensor is read and written once: 5 x 4 bytes per parameter for SGD-momentum, 7 x for AdamW;
plus the shared minibatch (read once) and the per-candidate hyperparameters and losses. FLOPs: matrix products
only, 2*B*in*out per layer forward, the same again for the weight gradients, and again for the activation
gradients of every layer but the first (elementwise work is left out)."""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional, Sequence

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

#: per parameter element: reads + writes of the parameter (2 + 1) and of each optimizer-state tensor (1 + 1)
TRAFFIC = {"sgd": 3 + 2, "adamw": 3 + 4}
N_HPARAMS = {"sgd": 3, "adamw": 5}


@dataclass(frozen=True)
class StepCost:
    """What one step of K candidates must move and compute."""

    bytes: int
    flops: int

    def floor_s(self, bandwidth: float, flop_rate: float) -> float:
        """The floor time in seconds given bandwidth (bytes/s) and matrix rate (FLOP/s)."""
        return max(self.bytes / bandwidth, self.flops / flop_rate)

    def bound(self, bandwidth: float, flop_rate: float) -> str:
        """``"memory"`` or ``"compute"``: which of the two sets the floor."""
        return "memory" if self.bytes / bandwidth >= self.flops / flop_rate else "compute"


def step_cost(layers: Sequence[int], batch: int, K: int, optimizer: str = "sgd", elem_bytes: int = 4) -> StepCost:
    """Bytes and matrix FLOPs of one step of ``K`` candidates of the MLP ``layers`` on a batch of ``batch``."""
    pairs = list(zip(layers[:-1], layers[1:]))
    n_param = sum(i * o + o for i, o in pairs)
    per_cand = TRAFFIC[optimizer] * elem_bytes * n_param + (N_HPARAMS[optimizer] + 1) * elem_bytes  # + loss
    shared = batch * layers[0] * elem_bytes + batch * 8  # x and int64 labels, read once for all candidates
    flops = sum(2 * batch * i * o * (2 if j == 0 else 3) for j, (i, o) in enumerate(pairs))
    return StepCost(bytes=K * per_cand + shared, flops=K * flops)


def _timed(fn, device: torch.device, reps: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs after one warm-up (CUDA events on CUDA)."""
    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def measure_bandwidth(device, nbytes: Optional[int] = None, reps: int = 10) -> float:
    """Copy bandwidth in bytes/s (read + write counted) from a large device-to-device copy."""
    device = torch.device(device)
    nbytes = nbytes or (1 << 30 if device.type == "cuda" else 1 << 27)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = _timed(lambda: dst.copy_(src), device, reps)
    return 2 * nbytes / t


def measure_matmul(device, dtype=torch.float32, tf32: bool = False, n: Optional[int] = None, reps: int = 5) -> float:
    """Matrix rate in FLOP/s of a large square ``torch.mm`` (TF32 tensor cores allowed on CUDA if ``tf32``)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        t = _timed(lambda: torch.mm(a, b), device, reps)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2 * n**3 / t


def report(layers: Sequence[int], batch: int, K: int, optimizer: str, bandwidth: float, flop_rate: float) -> str:
    """A few lines: bytes, FLOPs, each time, the floor and which one binds."""
    c = step_cost(layers, batch, K, optimizer)
    return (f"{'-'.join(map(str, layers))} batch {batch} K={K} {optimizer}: {c.bytes / 1e6:.2f} MB, "
            f"{c.flops / 1e9:.3f} GFLOP per step\n"
            f"  memory {c.bytes / bandwidth * 1e6:.1f} us at {bandwidth / 1e9:.0f} GB/s, "
            f"compute {c.flops / flop_rate * 1e6:.1f} us at {flop_rate / 1e12:.2f} TFLOP/s\n"
            f"  floor {c.floor_s(bandwidth, flop_rate) * 1e6:.1f} us per step ({c.bound(bandwidth, flop_rate)}-bound), "
            f"{K / c.floor_s(bandwidth, flop_rate):,.0f} candidate-steps/s at best")


def cpu_note(K: int = 64, steps: int = 30, repeats: int = 5) -> dict:
    """The torch backend's achieved GFLOP/s at the digits shape against a large torch.mm on this machine
    (best of ``repeats`` blocks of ``steps`` steps, best of the mm too: the least disturbed runs)."""
    from benchmarks.common import Case, make_batches, make_stepper, time_steps
    case = Case("digits", K)
    stepper, batches = make_stepper("torch", case, "cpu"), itertools.cycle(make_batches(case, "cpu"))
    time_steps(stepper, batches, "cpu", 5)
    t = min(time_steps(stepper, batches, "cpu", steps) for _ in range(repeats)) / steps
    mm = max(measure_matmul("cpu") for _ in range(3))
    flops = step_cost(case.layers, case.batch, K).flops
    return {"case": case.name, "step_ms": t * 1e3, "step_gflops": flops / t / 1e9, "mm_gflops": mm / 1e9,
            "fraction_of_mm": flops / t / mm, "threads": torch.get_num_threads()}


def main(argv=None) -> None:
    from benchmarks.common import SHAPES
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="mnist")
    ap.add_argument("--layers", type=int, nargs="+", help="widths, overriding --shape")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--K", type=int, nargs="+", default=[64, 256, 1024, 4096])
    ap.add_argument("--optimizer", choices=sorted(TRAFFIC), default="sgd")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tf32", action="store_true", help="use the TF32 matrix rate (CUDA)")
    ap.add_argument("--bandwidth", type=float, help="GB/s instead of measuring")
    ap.add_argument("--tflops", type=float, help="TFLOP/s instead of measuring")
    ap.add_argument("--cpu-note", action="store_true", help="torch backend GFLOP/s at digits K=64 vs torch.mm")
    a = ap.parse_args(argv)
    if a.cpu_note:
        n = cpu_note()
        print(f"torch backend, {n['case']}: {n['step_ms']:.2f} ms/step = {n['step_gflops']:.1f} GFLOP/s; "
              f"large torch.mm: {n['mm_gflops']:.1f} GFLOP/s ({100 * n['fraction_of_mm']:.0f}% of it), "
              f"{n['threads']} threads")
        return
    bw = a.bandwidth * 1e9 if a.bandwidth else measure_bandwidth(a.device)
    fr = a.tflops * 1e12 if a.tflops else measure_matmul(a.device, tf32=a.tf32)
    print(f"device {a.device}: copy bandwidth {bw / 1e9:.0f} GB/s, matmul {fr / 1e12:.2f} TFLOP/s"
          f"{' (tf32)' if a.tf32 else ''}")
    for K in a.K:
        print(report(a.layers or SHAPES[a.shape], a.batch, K, a.optimizer, bw, fr))


if __name__ == "__main__":
    main()
