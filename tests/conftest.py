"""Test setup. Triton's interpreter must be switched on before triton is first imported, so on a machine
without CUDA this sets TRITON_INTERPRET=1 here, before any test module imports torch or triton."""
import os
import shutil

if shutil.which("nvidia-smi") is None and "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from a fresh but reproducible global seed."""
    torch.manual_seed(1234)
    yield
