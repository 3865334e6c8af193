"""Ahead-of-time compilation of every kernel and every configuration for H100 (sm_90), no GPU needed.

Catches what the interpreter lets through: Triton's shape rules, shared memory over the H100's 227 KB per
block, and a tf32 path that misses the Hopper tensor cores (``wgmma``). The compilation runs in a
subprocess without ``TRITON_INTERPRET`` (under the interpreter ``@triton.jit`` gives interpreted functions,
which ``triton.compile`` cannot take), two variants at a time. ``-s`` prints what each variant needs.

Shared memory does not depend on D (a runtime loop bound) and grows with the padded batch, hidden and class
widths, so the largest shapes ``fused_fits`` accepts, (B, H, C) = (128, 128, 64) and (64, 256, 16), bound
it for all.
"""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from metahp_fast.kernels import fused_fits, fused_mlp, fused_mlp_multistep, layer_update, steps_fit  # noqa: E402
from metahp_fast.kernels.aot import H100_SHARED_BYTES  # noqa: E402

DIGITS, MNIST = (128, 64, 128, 10), (128, 784, 128, 10)  # B, D, H, C


def _variants() -> list[dict]:
    """Every configuration at the digits/MNIST shape (one binary: D is not specialized) and at the largest
    shapes the fused kernel takes; every optimizer and precision; both layer-kernel input kinds."""
    assert fused_fits(128, 1, 128, 64) and fused_fits(64, 1, 256, 16)
    assert not (fused_fits(64, 1, 256, 17) or fused_fits(128, 1, 129, 10) or fused_fits(128, 1, 128, 65))
    out = []
    for i, cfg in enumerate(fused_mlp.CONFIGS):
        # every configuration the autotuner may try (fused_mlp.configs_for) at the digits/MNIST shape and at
        # the largest shapes fused_fits accepts; TMA configurations must really use the copy engine
        for optimizer, shapes in [("sgd", [MNIST]), ("adamw", [MNIST, (128, 64, 128, 64), (64, 64, 256, 16)])]:
            for shape in shapes:
                if cfg in fused_mlp.configs_for(fused_mlp.block(shape[2]), tma_ok=True):
                    out.append({"kernel": "fused", "shape": shape, "config": i, "optimizer": optimizer,
                                "wgmma": True, "tma": cfg.kwargs["TMA"]})
        if cfg.kwargs["TMA"]:  # H = 53: rows not 16-byte aligned, so the launcher refuses descriptors
            out.append({"kernel": "fused", "shape": (29, 37, 53, 7), "config": i, "optimizer": "sgd",
                        "wgmma": False, "tma": False})
    out += [
        {"kernel": "fused", "shape": DIGITS, "config": 0, "optimizer": "adamw", "wgmma": True},
        {"kernel": "fused", "shape": DIGITS, "config": 0, "nesterov": True, "precision": "bf16", "wgmma": True},
        {"kernel": "fused", "shape": DIGITS, "config": 0, "precision": "ieee", "wgmma": False},
        {"kernel": "fused", "shape": (29, 37, 53, 7), "config": 0, "optimizer": "adamw", "wgmma": False},
    ]
    # the multi-step kernel: its largest model is digits' 64-128 (steps_fit); shared memory grows with CHUNK
    assert steps_fit(128, 64, 128, 16) and not steps_fit(128, 65, 128, 10) and not steps_fit(128, 64, 128, 17)
    for i, cfg in enumerate(fused_mlp_multistep.CONFIGS):
        out.append({"kernel": "steps", "shape": (128, 64, 128, 16), "config": i, "optimizer": "adamw", "wgmma": True})
    out += [
        {"kernel": "steps", "shape": DIGITS, "config": 0, "wgmma": True},
        {"kernel": "steps", "shape": DIGITS, "config": 0, "nesterov": True, "precision": "bf16", "wgmma": True},
        {"kernel": "steps", "shape": (29, 37, 53, 7), "config": 0, "precision": "ieee", "wgmma": False},
    ]
    for i, cfg in enumerate(layer_update.CONFIGS):
        out.append({"kernel": "layer", "shape": (128, 784, 128), "config": i, "optimizer": "adamw",
                    "shared_input": True, "wgmma": cfg.kwargs["BLOCK_I"] >= 64})  # wgmma: 64 rows per warp group
    out += [
        {"kernel": "layer", "shape": (128, 128, 10), "config": 0, "nesterov": True, "shared_input": False,
         "wgmma": True},
        {"kernel": "layer", "shape": (29, 53, 7), "config": 0, "precision": "ieee", "shared_input": False,
         "wgmma": False},
    ]
    return out


VARIANTS = _variants()


def _variant_id(v: dict) -> str:
    return "-".join([v["kernel"], "x".join(map(str, v["shape"])), f"cfg{v['config']}", v.get("optimizer", "sgd")]
                    + (["nesterov"] if v.get("nesterov") else []) + [v.get("precision", "tf32")]
                    + (["shared" if v["shared_input"] else "per-candidate"] if v["kernel"] == "layer" else []))


@pytest.fixture(scope="module")
def compiled() -> dict:
    """All variants compiled for sm_90 in one subprocess without TRITON_INTERPRET; id -> summary."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns unless this is set
    specs = [{k: v for k, v in s.items() if k not in ("wgmma", "tma")} for s in VARIANTS]
    proc = subprocess.run([sys.executable, "-m", "metahp_fast.kernels.aot", "--jobs", str(min(2, os.cpu_count()))],
                          input=json.dumps(specs), capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout)
    return {_variant_id(v): r for v, r in zip(VARIANTS, results)}


@pytest.mark.parametrize("variant", VARIANTS, ids=[_variant_id(v) for v in VARIANTS])
def test_compiles_for_h100(variant, compiled):
    r = compiled[_variant_id(variant)]
    print(f"{_variant_id(variant)} [{r['config_name']}]: shared {r['shared']} B, {r['num_warps']} warps, "
          f"wgmma {r['wgmma']}")
    assert r["shared"] <= H100_SHARED_BYTES, f"{r['shared']} bytes of shared memory > 227 KB"
    if variant["wgmma"]:
        assert r["wgmma"], "the tensor-core path should use Hopper's wgmma"
    if "tma" in variant:
        assert r["tma"] == variant["tma"], "TMA configurations use cp.async.bulk.tensor exactly where allowed"
    if variant.get("precision") == "ieee":
        assert not r["wgmma"] and not r["mma"], "ieee products must not use tensor cores"
