"""Triton kernels for the population step, installed as ``metahp_fast.kernels``.

This package knows tensors and Triton only, nothing of metahp_fast; the ``triton`` backend is the one place
that imports it. It imports cleanly without a GPU (Triton's interpreter runs the kernels there when
``TRITON_INTERPRET=1`` is set before triton is first imported)."""
