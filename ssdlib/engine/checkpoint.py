"""Checkpoints that survive crashes: atomic writes, rotation, a pointer to the latest one.

Layout of an output folder::

    model_0000500.pth      complete checkpoints (``keep`` most recent are kept)
    last_checkpoint        the file name of the newest complete checkpoint (one line)

A checkpoint is written to a temporary file in the same folder (``.model_....tmp<pid>``),
flushed and fsync'ed, then renamed with ``os.replace`` (atomic on POSIX and Windows); only
then is the pointer rewritten the same way, and only then are old checkpoints deleted. A crash
at any moment therefore leaves the previous checkpoint usable, and a leftover temporary file
is never taken for a checkpoint (its name does not match ``model_*.pth``).

Every value stored is a tensor or a plain Python type, so loading uses
``torch.load(..., weights_only=True)``, which cannot execute code from a tampered file.
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssdlib.io import CheckpointError, atomic_write, load_checkpoint_file  # re-exported

__all__ = [
    "POINTER",
    "CheckpointError",
    "atomic_write",
    "checkpoint_path",
    "get_rng_state",
    "latest_checkpoint",
    "load_checkpoint",
    "remove_stale_temps",
    "save_checkpoint",
    "set_rng_state",
]

POINTER = "last_checkpoint"
_NAME = re.compile(r"^model_(\d+)\.pth$")
# atomic_write's temporary files: ".<name>.tmp<pid>".
_TEMP = re.compile(r"^\.(.+)\.tmp(\d+)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def checkpoint_path(out_dir: str | os.PathLike, iteration: int) -> Path:
    return Path(out_dir) / f"model_{iteration:07d}.pth"


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed process left in ``folder`` (half-written
    ``.model_*.pth.tmp<pid>`` and the like: never taken for checkpoints, but litter). Only
    files whose writing process is dead are touched: a live one (another command writing an
    eval json there) keeps its in-flight file."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.iterdir():
            m = _TEMP.match(p.name)
            pid = int(m.group(2)) if m else 0
            if m and pid != os.getpid() and not _pid_alive(pid) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def save_checkpoint(
    state: dict[str, Any], out_dir: str | os.PathLike, iteration: int, keep: int = 3
) -> Path:
    """Atomically write ``state`` as ``model_{iteration}.pth``, point ``last_checkpoint`` at
    it, then delete all but the ``keep`` newest checkpoints (``keep <= 0`` keeps all)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(out, iteration)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())
    atomic_write(out / POINTER, (path.name + "\n").encode())
    if keep > 0:
        for old in list_checkpoints(out)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``out_dir``, oldest first (by iteration)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``last_checkpoint`` names, else the newest ``model_*.pth``, else None."""
    out = Path(out_dir)
    pointer = out / POINTER
    if pointer.is_file():
        name = pointer.read_text().strip()
        if _NAME.match(name) and (out / name).is_file():
            return out / name
    found = list_checkpoints(out)
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A training checkpoint read by :func:`ssdlib.io.load_checkpoint_file` (``weights_only=True``;
    :class:`~ssdlib.io.CheckpointError` naming the file if it is unreadable, its subclass
    :class:`~ssdlib.io.UnsafeCheckpointError` if it holds pickled code)."""
    return load_checkpoint_file(path, map_location)


def get_rng_state() -> dict[str, Any]:
    """Every RNG a training run draws from, as tensors and plain types (weights_only-safe)."""
    version, mt_state, gauss = random.getstate()
    # The legacy global state: third-party code may still draw from it.
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],  # fmt: skip
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` saved (CUDA states only where there is CUDA)."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
