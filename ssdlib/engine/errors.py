"""Errors a user can fix (bad config, missing data or file, diverging run) and how the CLI
reports them: one line on stderr, no traceback, a non-zero exit code."""

from __future__ import annotations

import sys

from ssdlib.config import ConfigError
from ssdlib.data import DatasetError

__all__ = ["NonFiniteLossError", "USER_ERRORS", "report"]


class NonFiniteLossError(RuntimeError):
    """Training stopped after too many non-finite losses or gradients in a row."""


# ConfigError is a ValueError; other ValueErrors come from argument checks with clear messages.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, DatasetError, FileNotFoundError, NonFiniteLossError, ValueError,
)  # fmt: skip


def report(error: BaseException) -> int:
    """Print ``error: <message>`` and return the exit code (2 for configuration, 1 otherwise)."""
    print(f"error: {error}", file=sys.stderr)
    return 2 if isinstance(error, ConfigError) else 1
