"""Ahead-of-time compilation of the kernels for a GPU that is not here (default: H100, sm_90).

``triton.compile`` turns a kernel, its argument types and its constexprs into PTX and a cubin without a
driver, so a CPU machine can check what the interpreter cannot: Triton's shape rules, the shared memory a
configuration needs (``metadata.shared``, at most 227 KB per block on H100), the registers per thread and
spills (from ``ptxas -v``), and whether the tensor-core path (``wgmma`` on Hopper) is taken.

This needs ``@triton.jit`` functions, so it must run in a process where ``TRITON_INTERPRET`` is not set (the
interpreter replaces them). Works with Triton 3.6 and 3.9.
"""
import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Optional

import triton

from . import fused_mlp, fused_mlp_multistep, layer_update

#: Shared memory per block on H100 (sm_90), in bytes.
H100_SHARED_BYTES = 227 * 1024

#: Argument types for the kernels' non-constexpr parameters; other pointers are fp32, other scalars i32.
_TYPES = {"y_ptr": "*i64", "idx_ptr": "*i32", "step_ptr": "*i64", "alive_ptr": "*u8"}


def _signature(fn, constexprs: dict, ints: dict) -> tuple[dict, dict]:
    """Triton signature and attributes for ``fn``: constexprs by name, the others typed from their names.

    Pointers are marked 16-byte aligned and integer arguments divisible by 16 are marked so, as the JIT
    specializes them at launch (torch allocations are aligned)."""
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = _TYPES.get(name, "*fp32")
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "i32"
            if ints.get(name, 1) % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    return signature, attrs


def compile_kernel(fn, constexprs: dict, ints: dict, config: triton.Config, arch: int = 90):
    """Compile the ``@triton.jit`` function ``fn`` for ``cuda`` compute capability ``arch``.

    Args:
        fn: The kernel (a JITFunction, not an autotuned wrapper).
        constexprs: Values of its constexpr arguments other than the config's.
        ints: Values of its integer arguments (for the divisibility hints the JIT would give).
        config: The autotune configuration: its kwargs join the constexprs, num_warps, num_stages and
            maxnreg are compile options.
        arch: Compute capability, 90 for H100/H200.

    Returns:
        Triton's compiled kernel: ``.asm["ptx"]``, ``.asm["cubin"]``, ``.metadata.shared``.
    """
    from triton.backends.compiler import GPUTarget

    defaults = {p.name: p.default for p in fn.params if p.is_constexpr and p.has_default}  # as the JIT binds them
    consts = {**defaults, **constexprs, **config.kwargs, **{n: 1 for n, v in ints.items() if v == 1}}
    signature, attrs = _signature(fn, consts, ints)
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=consts, attrs=attrs)
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    if config.maxnreg:
        options["maxnreg"] = config.maxnreg
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def ptxas_usage(ptx: str, arch: int = 90) -> dict[str, int]:
    """Registers per thread and spill bytes of a PTX module, from ``ptxas -v`` (Triton's bundled ptxas)."""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        log = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name=sm_{arch}a", f.name, "-o", "/dev/null"],
                             check=True, capture_output=True, text=True).stderr

    def num(pattern: str) -> int:
        m = re.search(pattern, log)
        return int(m.group(1)) if m else 0
    return {"registers": num(r"Used (\d+) registers"), "spill_stores": num(r"(\d+) bytes spill stores"),
            "spill_loads": num(r"(\d+) bytes spill loads")}


def fused_variant(batch: int, d_in: int, hidden: int, classes: int, config: triton.Config, optimizer: str = "sgd",
                  nesterov: bool = False, precision: str = "tf32", arch: int = 90):
    """Compile the fused one-hidden-layer step for one shape, configuration and optimizer."""
    constexprs = {"BLOCK_B": fused_mlp.block(batch), "BLOCK_H": fused_mlp.block(hidden),
                  "BLOCK_C": fused_mlp.block(classes), "ADAMW": optimizer == "adamw",
                  "NESTEROV": nesterov, "PRECISION": precision, "TMA_OK": hidden % 4 == 0}
    ints = {"B": batch, "D": d_in, "H": hidden, "C": classes, "stride_xb": d_in}
    return compile_kernel(fused_mlp.fused_mlp_step_kernel, constexprs, ints, config, arch)


def steps_variant(batch: int, d_in: int, hidden: int, classes: int, config: triton.Config,
                  optimizer: str = "sgd", nesterov: bool = False, precision: str = "tf32", arch: int = 90):
    """Compile the multi-step kernel (weights on chip across steps) for one shape and configuration."""
    constexprs = {"BLOCK_D": fused_mlp.block(d_in), "BLOCK_H": fused_mlp.block(hidden),
                  "BLOCK_C": fused_mlp.block(classes), "ADAMW": optimizer == "adamw",
                  "NESTEROV": nesterov, "PRECISION": precision, "LR_TABLE": False}
    ints = {"S": 100, "K": 4096, "B": batch, "D": d_in, "H": hidden, "C": classes, "stride_xn": d_in}
    return compile_kernel(fused_mlp_multistep.fused_mlp_steps_kernel, constexprs, ints, config, arch)


def layer_variant(batch: int, d_in: int, d_out: int, config: triton.Config, shared_input: bool,
                  optimizer: str = "sgd", nesterov: bool = False, precision: str = "tf32", arch: int = 90):
    """Compile the per-layer weight-gradient + update kernel for one layer shape and configuration."""
    constexprs = {"BLOCK_O": layer_update.block_out(d_out), "ADAMW": optimizer == "adamw",
                  "NESTEROV": nesterov, "PRECISION": precision}
    ints = {"B": batch, "IN": d_in, "OUT": d_out, "stride_hk": 0 if shared_input else batch * d_in,
            "stride_hb": d_in, "stride_hi": 1, "stride_gk": batch * d_out, "stride_gb": d_out, "stride_go": 1}
    return compile_kernel(layer_update.layer_update_kernel, constexprs, ints, config, arch)


def summary(compiled, registers: bool = False, arch: int = 90) -> dict[str, Any]:
    """What one compiled variant needs: shared memory (bytes), warps, whether its PTX has ``wgmma``, and with
    ``registers`` also registers per thread and spills (runs ptxas once more)."""
    ptx = compiled.asm["ptx"]
    out: dict[str, Any] = {"shared": compiled.metadata.shared, "num_warps": compiled.metadata.num_warps,
                           "wgmma": "wgmma" in ptx, "mma": bool(re.search(r"\bmma\.sync", ptx)),
                           "tma": "cp.async.bulk.tensor" in ptx}
    if registers:
        out.update(ptxas_usage(ptx, arch))
    return out


def config_name(config: Optional[triton.Config]) -> str:
    """A short readable id for a configuration, e.g. ``BLOCK_D32-w8-s2``."""
    if config is None:
        return "default"
    kw = "-".join(f"{k}{v}" for k, v in config.kwargs.items())
    return f"{kw}-w{config.num_warps}-s{config.num_stages}"


def compile_variant(spec: dict, registers: bool = False) -> dict[str, Any]:
    """Compile one variant described by a JSON-able dict and summarize it (see :func:`main`)."""
    kind = spec["kernel"]
    configs = {"fused": fused_mlp.CONFIGS, "steps": fused_mlp_multistep.CONFIGS, "layer": layer_update.CONFIGS}[kind]
    config = configs[spec["config"]]
    common = dict(optimizer=spec.get("optimizer", "sgd"), nesterov=spec.get("nesterov", False),
                  precision=spec.get("precision", "tf32"), arch=spec.get("arch", 90))
    if kind == "fused":
        compiled = fused_variant(*spec["shape"], config, **common)
    elif kind == "steps":
        compiled = steps_variant(*spec["shape"], config, **common)
    else:
        compiled = layer_variant(*spec["shape"], config, spec.get("shared_input", True), **common)
    return {**spec, "config_name": config_name(config), **summary(compiled, registers, common["arch"])}


def main(argv: Optional[list] = None) -> None:
    """Compile the variants given as a JSON list on stdin, print the summaries as a JSON list on stdout.

    A variant: ``{"kernel": "fused", "shape": [B, D, H, C], "config": i, "optimizer": "sgd", "nesterov": false,
    "precision": "tf32"}``, the same with ``"kernel": "steps"`` (the multi-step kernel), or ``{"kernel": "layer",
    "shape": [B, IN, OUT], "config": i, "shared_input": true, ...}``, ``config`` indexing the kernel's ``CONFIGS``. ``--registers`` adds registers and spills;
    ``--jobs N`` compiles in N processes."""
    argv = sys.argv[1:] if argv is None else argv
    registers = "--registers" in argv
    jobs = int(argv[argv.index("--jobs") + 1]) if "--jobs" in argv else 1
    specs = json.load(sys.stdin)
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = list(pool.map(compile_variant, specs, [registers] * len(specs)))
    else:
        results = [compile_variant(s, registers) for s in specs]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
