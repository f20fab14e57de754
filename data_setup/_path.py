"""Make ``import ssdlib`` work when a script runs from a fresh clone (``python data_setup/x.py``)
before ``pip install -e .``: the repository root is put on ``sys.path`` if ssdlib is missing."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("ssdlib") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
