"""Where the course notebooks keep their data and outputs, and the start every notebook shares.

One rule for data and outputs, the same on a laptop, on a GPU box and in Colab:

- data: ``$SSDLIB_DATA`` if set; else ``<checkout>/data`` when the notebook runs inside a
  checkout of ssdlib (``notebooks/`` has the checkout above it); else ``./data`` (in Colab
  ``/content/data``);
- outputs (checkpoints the next notebook loads, pictures): ``$SSDLIB_OUTPUTS``, else
  ``<checkout>/outputs``, else ``./outputs``.

:func:`setup_notebook` exports the data folder as ``$SSDLIB_DATA``, so that the library's own
default (:func:`ssdlib.data.download.data_root`, used by ``build_test_data``, ``train`` and the
CLI) finds the same folder the notebook printed.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["CoursePaths", "checkout_root", "course_overrides", "course_paths", "setup_notebook"]


@dataclass(frozen=True)
class CoursePaths:
    data: Path
    outputs: Path

    @property
    def voc(self) -> Path:
        """Where the VOC archives unpack: ``<data>/VOCdevkit`` (VOC2007 and VOC2012 inside)."""
        return self.data / "VOCdevkit"

    @property
    def have_voc(self) -> bool:
        return (self.voc / "VOC2007").is_dir()


def checkout_root(start: Path) -> Path | None:
    """The ssdlib checkout ``start`` lies in (the folder whose ``pyproject.toml`` names the
    ``ssdlib`` project), or None: an installed package, or Colab's ``/content``."""
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and (folder / "ssdlib").is_dir():
            try:
                text = pyproject.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if 'name = "ssdlib"' in text:
                return folder
    return None


def course_paths(cwd: str | os.PathLike | None = None) -> CoursePaths:
    """The data and outputs folders for a notebook whose working directory is ``cwd``."""
    here = Path(cwd or Path.cwd()).resolve()
    base = checkout_root(here) or here
    data = os.environ.get("SSDLIB_DATA") or base / "data"
    outputs = os.environ.get("SSDLIB_OUTPUTS") or base / "outputs"
    return CoursePaths(data=Path(data), outputs=Path(outputs))


def setup_notebook(seed: int = 0, verbose: bool = True) -> tuple[CoursePaths, torch.device]:
    """Seeds (Python, NumPy, torch), deterministic algorithms, the data/outputs rule and the
    device: a notebook's first lines. Returns ``(paths, device)``."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the legacy global generator is what learners' cells use
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    paths = course_paths()
    os.environ["SSDLIB_DATA"] = str(paths.data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if verbose:
        import ssdlib

        print(f"ssdlib {ssdlib.__version__}, torch {torch.__version__}, device: {device}")
        print(f"data: {paths.data}, outputs: {paths.outputs}")
        print(f"VOC: {paths.voc}" if paths.have_voc else f"VOC not found under {paths.data}: "
              "using the generated Shapes data (enough for this lesson)")  # fmt: skip
    return paths, device


def course_overrides() -> list[str]:
    """Extra ``section.key=value`` overrides for the notebooks' VOC runs, from
    ``$SSDLIB_COURSE_OVERRIDES`` (space separated): a shorter run on a small GPU, or the tests'
    one-minute SSD300 run on a CPU."""
    return os.environ.get("SSDLIB_COURSE_OVERRIDES", "").split()
