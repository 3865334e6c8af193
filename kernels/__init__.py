"""Triton kernels for the population step, installed as ``metahp_fast.kernels``.

This package knows tensors and Triton only, nothing of metahp_fast; the ``triton`` backend is the one place
that imports it. It imports cleanly without a GPU (Triton's interpreter runs the kernels there when
``TRITON_INTERPRET=1`` is set before triton is first imported)."""
from .common import PRECISIONS, interpreting
from .fused_mlp import fused_fits, fused_mlp_step
from .fused_mlp_multistep import fused_mlp_steps, steps_fit
from .layer_update import update_layer

__all__ = ["PRECISIONS", "fused_fits", "fused_mlp_step", "fused_mlp_steps", "interpreting", "steps_fit",
           "update_layer"]
