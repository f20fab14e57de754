"""Fixtures of the reliability suite (issue 8); shared helpers live in reliability_helpers.py."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors: threads only add overhead, two test workers share the cores, and the
    # crash test compares losses bit for bit with a subprocess that runs with --threads 1.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
