"""The figures command: every figure renders, PNGs are valid and byte-for-byte reproducible."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

from ssdlib.viz.figures import FIGURES, fig_encoding, fig_scales, save_figure

FAST = ["scales", "encoding", "priors_per_map", "matching"]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_figures_command_writes_valid_pngs(tmp_path):
    cmd = [sys.executable, "-m", "ssdlib", "figures", "--out", str(tmp_path), "--only", *FAST]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={"MPLBACKEND": "Agg",
                         "PATH": "/usr/bin:/bin"}).stdout  # fmt: skip
    for name in FAST:
        data = (tmp_path / f"{name}.png").read_bytes()
        w, h = png_size(data)
        assert w > 300 and h > 200, (name, w, h)
        assert data.endswith(b"IEND\xaeB`\x82")
        assert f"{name}.png" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in FAST)


def test_figures_are_deterministic_and_carry_no_timestamp(tmp_path):
    a = save_figure(fig_encoding(), tmp_path / "a.png").read_bytes()
    b = save_figure(fig_encoding(), tmp_path / "b.png").read_bytes()
    assert a == b
    assert b"Software" not in a and b"matplotlib" not in a
    assert save_figure(fig_scales(), tmp_path / "c.png").read_bytes() != a


def test_the_committed_figures_are_exactly_the_registered_ones():
    # What `ssdlib figures --out figures` regenerates is what the README and notebooks show.
    root = Path(__file__).resolve().parent.parent
    committed = {p.stem for p in (root / "figures").glob("*.png")}
    assert committed == set(FIGURES)
    readme = (root / "README.md").read_text()
    mentioned = set(re.findall(r"figures/([a-z0-9_]+)\.png|`([a-z0-9_]+)\.png`", readme))
    mentioned = {a or b for a, b in mentioned}
    assert mentioned <= set(FIGURES), mentioned - set(FIGURES)
    assert all(callable(f) for f in FIGURES.values())
