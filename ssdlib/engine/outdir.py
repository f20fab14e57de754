"""Output folders and files: one writer per training folder, and writability checked before work.

:class:`OutputLock` holds an exclusive ``fcntl.flock`` on ``<folder>/.lock`` for as long as a
training run writes there. The kernel drops the lock when the process ends in any way, ``kill
-9`` included, so a lock is never stale: the file may stay, its lock does not. The file holds
the owner's pid, which the second run's error names; a clean exit removes it.

:func:`ensure_output_dir` and :func:`check_writable_file` fail in one line naming the path
(a file where a folder should be, a read-only disk or folder) before inference or training
starts, instead of after it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["LOCK_NAME", "OutputBusyError", "OutputLock", "check_output_dir", "check_writable_file",
           "ensure_output_dir"]  # fmt: skip

LOCK_NAME = ".lock"


class OutputBusyError(ValueError):
    """Another live process holds the output folder's lock."""


def _probe(folder: Path, what: str) -> None:
    """Create and delete a file in ``folder``: the one test that also holds for root, ACLs and
    read-only mounts (``os.access`` says yes to root on a read-only folder)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".write-test-", dir=folder)
    except OSError as e:
        raise OSError(e.errno, f"{what} {folder} is not writable ({e.strerror})") from e
    os.close(fd)
    os.unlink(name)


def ensure_output_dir(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` (and parents) if needed and check it is a writable folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{what} {folder} is a file; expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:  # a parent is a file
        raise NotADirectoryError(f"{what} {folder}: a parent is a file ({e.filename})") from e
    except OSError as e:
        raise OSError(e.errno, f"{what} {folder} cannot be created ({e.strerror})") from e
    _probe(folder, what)
    return folder


def check_output_dir(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Like :func:`ensure_output_dir` but creates nothing: ``folder`` if it exists, else its
    nearest existing parent, must be a writable folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{what} {folder} is a file; expected a folder")
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{what} {folder}: {existing} is a file, not a folder")
    _probe(existing, f"{what} {folder}:" if existing != folder.absolute() else what)
    return folder


def check_writable_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """Check that ``path`` can be written (its folder is created if needed), before the work
    that produces it; an existing folder at ``path`` is refused."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; expected a file name")
    ensure_output_dir(path.parent, f"{what} {path}: folder")
    return path


class OutputLock:
    """``with OutputLock(folder):`` — the only training run writing to ``folder``.

    Raises :class:`OutputBusyError` naming the folder and the owner's pid when another live
    process holds it. Not re-entrant; a no-op where ``fcntl`` does not exist (Windows).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        ensure_output_dir(self.folder)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputBusyError(
                    f"output folder {self.folder} is in use by another training run (pid "
                    f"{owner}); wait for it to finish, stop it, or choose another --output"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The owner we waited on may have removed the file between our open and flock:
            # then we locked an orphan inode and must retry on the current file.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            # Unlink while still holding the lock (acquire's inode check makes that safe), then
            # close, which drops the flock. After kill -9 the file stays, unlocked: not stale.
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
