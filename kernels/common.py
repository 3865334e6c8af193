"""Small pieces shared by the kernels: the matrix product at a chosen input precision, and host helpers."""
import os

import triton
import triton.language as tl

#: Dot input precisions the kernels accept: exact fp32 products, TF32 tensor cores, or bf16 operands with
#: fp32 accumulation.
PRECISIONS = ("ieee", "tf32", "bf16")


def interpreting() -> bool:
    """Whether Triton's CPU interpreter runs the kernels (``TRITON_INTERPRET=1``, read once by triton)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def tuning_configs(configs: list, interpreter_config):
    """The configurations to autotune over: exactly one under the interpreter (it cannot benchmark: no
    driver), only the first with ``METAHP_TRITON_AUTOTUNE=0`` (quick checks), else all of them."""
    if interpreting():
        return [interpreter_config]
    if os.environ.get("METAHP_TRITON_AUTOTUNE", "1") == "0":
        return configs[:1]
    return configs


def block(n: int, lo: int = 16, hi: int = 1 << 30) -> int:
    """The power-of-two block that covers ``n``, at least ``lo`` (``tl.dot`` needs every dimension >= 16).

    Plain Python on purpose: ``triton.next_power_of_2`` is a constexpr function whose host-side call costs
    microseconds, and launchers call this several times per step."""
    return min(max(lo, 1 << max(int(n) - 1, 0).bit_length()), hi)


@triton.jit
def mm(a, b, acc, PRECISION: tl.constexpr):
    """``acc + a @ b`` with fp32 accumulation; operands at ``PRECISION`` (one of :data:`PRECISIONS`)."""
    if PRECISION == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc)
    else:
        return tl.dot(a, b, acc, input_precision=PRECISION)
