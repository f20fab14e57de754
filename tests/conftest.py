"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: tiny tensors only pay thread overhead, the two test
    workers share the cores, and crash tests compare losses bit for bit with subprocesses
    that run with ``--threads 1``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
