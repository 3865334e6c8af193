# Provenance of kernel_configs_probe.txt (NVIDIA H200, Triton 3.6, 2026-11-26): the throwaway probe the kernel
# work ran on the GPU, kept as it ran. Its "config" indices refer to the autotune list of that moment (5 configs;
# the 4-warp one, config 3, was dropped since). Run: python3 kernel_probe_script.py with $OUT set.
"""Temporary GPU probe for the kernels (not part of the package): per-config timings, roofline fractions."""
import json
import os
import sys
import time

import torch

from metahp_fast import Population
from metahp_fast.kernels import fused_mlp, layer_update

OUT = os.environ.get("OUT", "/tmp")
res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
import triton  # noqa: E402

res["triton"] = triton.__version__
print(res, flush=True)


def timed(fn, n=20, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(n):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / n  # ms


def bandwidth():
    x = torch.empty(2 ** 28, device="cuda")
    y = torch.empty_like(x)
    ms = timed(lambda: y.copy_(x), 10)
    return 2 * x.numel() * 4 / ms / 1e6  # GB/s


res["copy_GBps"] = bw = bandwidth() if not os.environ.get("PROBE_NCU") else 1.0
print("copy GB/s", bw, flush=True)


def setup(D, H, C, K, opt, B=128):
    torch.manual_seed(0)
    params = [torch.randn(K, D, H, device="cuda") * 0.05, torch.zeros(K, H, device="cuda"),
              torch.randn(K, H, C, device="cuda") * 0.05, torch.zeros(K, C, device="cuda")]
    s1 = [torch.zeros_like(p) for p in params]
    s2 = [torch.zeros_like(p) for p in params] if opt == "adamw" else [params[0].new_empty(1)] * 4
    hp = {"lr": torch.full((K,), 1e-3, device="cuda"), "weight_decay": torch.full((K,), 1e-4, device="cuda"),
          "momentum": torch.full((K,), 0.9, device="cuda"), "beta1": torch.full((K,), 0.9, device="cuda"),
          "beta2": torch.full((K,), 0.999, device="cuda"), "eps": torch.full((K,), 1e-8, device="cuda")}
    x = torch.randn(B, D, device="cuda")
    y = torch.randint(0, C, (B,), device="cuda")
    return params, s1, s2, hp, x, y


def launch_config(cfg, D, H, C, K, opt, precision="tf32"):
    params, s1, s2, hp, x, y = setup(D, H, C, K, opt)
    steps = torch.zeros(K, dtype=torch.int64, device="cuda")
    alive = torch.ones(K, dtype=torch.bool, device="cuda")
    losses = torch.empty(K, device="cuda")
    m = hp["beta1"] if opt == "adamw" else hp["momentum"]
    B = x.shape[0]

    def run():
        fused_mlp.fused_mlp_step_kernel[(K,)](
            x, y, *params, *s1, *s2, hp["lr"], hp["weight_decay"], m, hp["beta2"], hp["eps"],
            steps, alive.view(torch.uint8), losses, B, D, H, C, x.stride(0),
            BLOCK_B=fused_mlp.block(B), BLOCK_H=fused_mlp.block(H), BLOCK_C=fused_mlp.block(C),
            OPTIMIZER=1 if opt == "adamw" else 0, NESTEROV=False, PRECISION=precision,
            BLOCK_D=cfg.kwargs["BLOCK_D"], num_warps=cfg.num_warps, num_stages=cfg.num_stages,
            **({"maxnreg": cfg.maxnreg} if getattr(cfg, "maxnreg", None) else {}))
    t0 = time.time()
    run()
    torch.cuda.synchronize()
    compile_s = time.time() - t0
    ms = timed(run)
    ok = bool(torch.isfinite(losses).all() and alive.all())
    return ms, compile_s, ok


if os.environ.get("PROBE_NCU"):
    D, K = (64, 4096) if os.environ["PROBE_NCU"] == "digits" else (784, 1024)
    print(launch_config(fused_mlp.CONFIGS[0], D, 128, 10, K, "sgd"), flush=True)
    sys.exit(0)

rows = []
import triton as _t
EXTRA = [_t.Config({"BLOCK_D": bd}, num_warps=w, num_stages=st, maxnreg=128) for bd, w, st in [(32, 8, 2), (16, 8, 2)]]
for name, (D, H, C), K in [("digits", (64, 128, 10), 4096), ("mnist", (784, 128, 10), 1024)]:
    for opt in ("sgd", "adamw"):
        nbytes = (5 if opt == "sgd" else 7) * 4 * K * (D * H + H * C + H + C)
        for i, cfg in enumerate(fused_mlp.CONFIGS + EXTRA):
            try:
                ms, cs, ok = launch_config(cfg, D, H, C, K, opt)
                row = dict(shape=name, K=K, opt=opt, config=i, ms=ms, compile_s=cs, ok=ok,
                           GBps=nbytes / ms / 1e6, roofline=nbytes / ms / 1e6 / bw)
            except Exception as e:  # keep going
                row = dict(shape=name, K=K, opt=opt, config=i, error=repr(e)[:500])
            rows.append(row)
            print(row, flush=True)
res["fused_configs"] = rows


def pop_timing(layers, K, opt, backend, steps=20, **kw):
    hp = {"lr": 1e-3}
    pop = Population(layers, K, opt, hp, device="cuda", backend=backend, **kw)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(128, layers[0], device="cuda", generator=g)
    y = torch.randint(0, layers[-1], (128,), device="cuda", generator=g)
    t0 = time.time()
    pop._step(x, y, None)  # autotune happens here
    torch.cuda.synchronize()
    first = time.time() - t0
    ms = timed(lambda: pop._step(x, y, None), steps)
    return pop, ms, first


pops = {}
for name, layers, K in [("digits", (64, 128, 10), 4096), ("mnist", (784, 128, 10), 1024)]:
    for opt in ("sgd", "adamw"):
        for backend in ("triton", "torch"):
            try:
                pop, ms, first = pop_timing(layers, K, opt, backend)
                row = dict(shape=name, K=K, opt=opt, backend=backend, ms=ms, first_s=first,
                           cand_steps_per_s=K / ms * 1e3)
                pops[(name, K, opt, backend)] = pop
            except Exception as e:
                row = dict(shape=name, K=K, opt=opt, backend=backend, error=repr(e)[:500])
            print(row, flush=True)
            rows.append(row)
        # the autotuned triton population after 24 steps vs the torch one: restore_value must have kept it exact
        a, b = pops.get((name, K, opt, "triton")), pops.get((name, K, opt, "torch"))
        if a is not None and b is not None:
            err = max(((p - q).norm() / q.norm()).item() for p, q in zip(a.params, b.params))
            print("after autotune+steps, rel err vs torch:", err, torch.equal(a.step_count, b.step_count),
                  a.step_count[:3].tolist(), flush=True)
            rows.append(dict(check=f"{name}-{K}-{opt}", err=err, steps_equal=torch.equal(a.step_count, b.step_count)))
        pops.clear()

# digits K=4096: 1000 steps
try:
    pop, ms, first = pop_timing((64, 128, 10), 4096, "sgd", "triton")
    x = torch.randn(128, 64, device="cuda")
    y = torch.randint(0, 10, (128,), device="cuda")
    torch.cuda.synchronize()
    t0 = time.time()
    for _ in range(1000):
        pop._step(x, y, None)
    torch.cuda.synchronize()
    res["digits_4096_1000_steps_s"] = time.time() - t0
    print("digits K=4096 1000 steps:", res["digits_4096_1000_steps_s"], flush=True)
except Exception as e:
    print("1000 steps failed", e)

# per-layer path at the MNIST shape (tanh -> not fused)
for backend in ("triton", "torch"):
    try:
        pop, ms, first = pop_timing((784, 128, 10), 1024, "sgd", backend, activation="tanh")
        row = dict(shape="mnist-tanh-layers", K=1024, opt="sgd", backend=backend, ms=ms, first_s=first)
    except Exception as e:
        row = dict(shape="mnist-tanh-layers", backend=backend, error=repr(e)[:500])
    print(row, flush=True)
    rows.append(row)

res["rows"] = rows
with open(os.path.join(OUT, "probe.json"), "w") as f:
    json.dump(res, f, indent=1)

