"""Errors a user can fix (bad config, missing data or file, diverging run) and how the CLI
reports them: one line on stderr, no traceback, a non-zero exit code."""

from __future__ import annotations

import errno
import sys

from ssdlib.config import ConfigError
from ssdlib.data import DatasetError
from ssdlib.engine.checkpoint import CheckpointError

__all__ = ["NonFiniteLossError", "USER_ERRORS", "message", "report"]


class NonFiniteLossError(RuntimeError):
    """Training stopped after too many non-finite losses or gradients in a row."""


# ConfigError is a ValueError; other ValueErrors come from argument checks with clear messages.
# OSError: a full disk, a read-only folder, a file where a folder should be (the message names
# the path). MemoryError: a value that fits the config's ranges but not this machine.
USER_ERRORS: tuple[type[BaseException], ...] = (
    CheckpointError, ConfigError, DatasetError, NonFiniteLossError, OSError, ValueError,
    MemoryError,
)  # fmt: skip
MAX_MESSAGE = 2000  # characters: a message never floods the terminal


def message(error: BaseException) -> str:
    """One-line text of ``error``: an OSError as ``path: reason`` (the disk-full advice added)."""
    if isinstance(error, OSError) and error.strerror:
        names = [n for n in (error.filename, error.filename2) if n]
        text = ": ".join([*map(str, names), error.strerror])
        if error.errno == errno.ENOSPC:
            text += " (free space there; the previous checkpoint and files are intact)"
    elif isinstance(error, MemoryError):
        text = f"out of memory ({error or 'a setting too large for this machine'})"
    else:
        text = str(error) or type(error).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    if isinstance(error, OSError) and lines:
        text = lines[0]
    elif "Original Traceback" in text and len(lines) > 2:
        # A DataLoader worker's error: torch's first line (which worker), then the original
        # exception's own line; the worker's traceback in between helps no user.
        text = f"{lines[0]} {lines[-1]}"
    if len(text) <= MAX_MESSAGE:
        return text
    return text[: MAX_MESSAGE // 2] + " [...] " + text[-MAX_MESSAGE // 2 :]


def report(error: BaseException) -> int:
    """Print ``error: <message>`` and return the exit code (2 for configuration, 1 otherwise)."""
    print(f"error: {message(error)}", file=sys.stderr)
    return 2 if isinstance(error, ConfigError) else 1
