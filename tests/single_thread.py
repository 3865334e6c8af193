"""A fixture the tuner tests share: run on one torch thread.

Tiny populations gain nothing from a second thread, and on a machine whose other core is busy two threads spin
against each other (the tuner tests took 76 s with two threads under load and 9 s with one)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Set torch to one thread for the module, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
