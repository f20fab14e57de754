"""Files written so a crash never leaves half of one, and weight files read so they cannot run code.

* :func:`atomic_write` writes to a temporary file in the same folder (``.<name>.tmp<pid>``),
  flushes and fsyncs it, renames it with ``os.replace`` (atomic on POSIX and Windows) and fsyncs
  the folder: ``path`` is the old file or the whole new one, at every moment.
* :func:`load_checkpoint_file` is the only way ssdlib reads a ``.pth`` file: ``torch.load`` with
  ``weights_only=True``, so a file that carries pickled code (``os.system`` in a ``__reduce__``)
  is refused before anything runs, with an error naming the file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

__all__ = ["CheckpointError", "UnsafeCheckpointError", "atomic_write", "load_checkpoint_file"]


class CheckpointError(ValueError):
    """A weight file that cannot be used: unreadable, or of an unexpected layout."""


class UnsafeCheckpointError(CheckpointError):
    """A weight file that holds pickled objects other than tensors and plain containers."""


def atomic_write(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the whole new one.

    ``durable=False`` skips the two fsyncs: still atomic for readers and against a killed
    process, but a power loss may lose the write. For many files that can be regenerated
    (the Shapes images: fsyncs tripled the time to write them) with a marker written last."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk (ENOSPC), a read-only folder: name the file asked for
        if e.strerror and e.filename in (None, str(tmp)):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file would run code or build arbitrary objects when unpickled.
        CheckpointError: not a PyTorch checkpoint (junk, truncated), or its top level is not a dict.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):  # junk bytes, not a refused callable
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {_short(e)}") from e
        # weights_only's restricted unpickler refused a global (os.system, a custom class ...):
        # nothing from the file has been executed.
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it contains pickled objects other than tensors and "
            f"plain containers (a callable or custom class), which could run code. Only load "
            f"files you trust, and convert them to a plain state dict. Details: "
            f"{str(e).splitlines()[0]}"
        ) from e
    except Exception as e:  # zip/EOF/format errors of a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {_short(e)}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict (state dict), got {type(obj).__name__}")
    return obj


def _short(error: BaseException) -> str:
    """The first line of an error, at most 200 characters: torch's messages run to pages."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
