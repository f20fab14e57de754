"""Helpers shared by the notebook-authoring scripts: cells, the Colab/setup cells, writing.

Each ``make_XX.py`` builds one notebook from Python (reviewable diffs, one source of truth);
``build.sh`` writes them all and executes them in place so the committed notebooks carry
their outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent
REPO_URL_NOTE = "https://github.com/OWNER/ssdlib"  # placeholder, see the Colab cell


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(src: str, check: bool = True):
    """A code cell; ``check=False`` marks output that legitimately varies (timings, paths, widgets,
    the machine's GPU/data) so nbval ignores it; every other output is compared exactly."""
    marker = "# NBVAL_CHECK_OUTPUT" if check else "# NBVAL_IGNORE_OUTPUT"
    return new_code_cell(f"{marker}\n{src.strip(chr(10))}")


COLAB = code(
    '''
# Colab only: install ssdlib from GitHub and report the GPU. Elsewhere this cell does nothing:
# the notebooks use the ssdlib of this checkout (`make lab`).
import subprocess
import sys

REPO_URL = "https://github.com/OWNER/ssdlib"  # <-- placeholder: put the repository's real URL here
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    f"ssdlib[notebooks] @ git+{REPO_URL}"], check=True)
    subprocess.run(["nvidia-smi", "-L"], check=False)  # which GPU Colab gave us, if any
else:
    print("not in Colab: using the installed ssdlib")
''',
    check=True,
)

SETUP = code(
    '''
# Seeds, device and data: the notebook runs on a CPU with the generated Shapes data and
# switches to VOC / a GPU by itself when they are there.
import os
import random
from pathlib import Path

import numpy as np
import torch

import ssdlib

%matplotlib inline
# JPEG keeps the notebooks small on GitHub (the Shapes textures compress badly as PNG).
%config InlineBackend.figure_formats = ["jpeg"]
random.seed(0)
np.random.seed(0)
torch.manual_seed(0)
torch.use_deterministic_algorithms(True, warn_only=True)

DATA = Path(os.environ.get("SSDLIB_DATA") or Path.cwd().parent / "data")
HAVE_VOC = (DATA / "VOCdevkit" / "VOC2007").is_dir()
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
print(f"ssdlib {ssdlib.__version__}, torch {torch.__version__}, device: {device}")
print(f"VOC: {DATA / 'VOCdevkit'}" if HAVE_VOC else
      f"VOC not found under {DATA}: using the generated Shapes data (enough for this lesson)")
''',
    check=False,
)


def write(name: str, cells: list) -> Path:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = NOTEBOOKS / name
    nbformat.write(nb, path)
    return path
