"""Fixtures of the reliability suite (issue 8); shared helpers live in reliability_helpers.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Every reliability test runs with one torch thread (``one_thread`` in tests/conftest.py)."""
