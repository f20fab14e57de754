"""The oldest torch and torchvision that ssdlib runs on, checked when ``ssdlib`` is imported.

pip enforces the bounds of pyproject.toml, but not for ``pip install --no-deps``, a conda
environment or a checkout on ``PYTHONPATH``. There an older torch fails deep inside a training
step or a drawing (``torch.amp.GradScaler``, ``draw_bounding_boxes(fill_labels=...)``), so
the import says it at once, naming what is installed and what is needed.

The versions are read from the installed packages' metadata, without importing torch: importing
torch here would fix its CPU kernel choice before ``ssdlib.engine.cpu_features`` reads its
environment variables, and would make every ``import ssdlib`` pay for it.
"""

from __future__ import annotations

import re
from importlib import metadata

# Equal to pyproject.toml's bounds (tests/test_versions.py checks it); why these: the comment there.
MIN_VERSIONS: dict[str, tuple[int, int]] = {"torch": (2, 8), "torchvision": (0, 23)}


def release(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version string: ``"2.8.0+cu128"`` -> ``(2, 8, 0)``.

    A pre-release or source build (``"2.9.0a0+git1234"``) counts as its release: the features
    ssdlib needs are in a branch before its release is tagged.
    """
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    if match is None:
        raise ValueError(f"not a version number: {version!r}")
    return tuple(int(part) for part in match.group().split("."))


def too_old(installed: dict[str, str], minimum: dict[str, tuple[int, int]] = MIN_VERSIONS) -> list[str]:
    """``"torch 2.2.0 (needs >= 2.8)"`` for each installed package older than its minimum.

    ``installed`` maps a package name to its version string; a package missing from it is not
    judged (its import fails on its own, with Python's own message).
    """
    return [
        f"{name} {installed[name]} (needs >= {'.'.join(map(str, low))})"
        for name, low in minimum.items()
        if name in installed and release(installed[name]) < low
    ]


def installed_versions(names: tuple[str, ...] = tuple(MIN_VERSIONS)) -> dict[str, str]:
    """Installed version of each named distribution that has package metadata."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Raise ImportError naming every package older than ssdlib needs (default: what is installed)."""
    old = too_old(installed_versions() if installed is None else installed)
    if old:
        need = " ".join(f"'{name}>={'.'.join(map(str, low))}'" for name, low in MIN_VERSIONS.items())
        raise ImportError(f"ssdlib needs newer packages: {', '.join(old)}; pip install -U {need}")
