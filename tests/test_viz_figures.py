"""The figures command: every figure renders, PNGs are valid and byte-for-byte reproducible."""

from __future__ import annotations

import struct
import subprocess
import sys

from ssdlib.cli import COMMANDS
from ssdlib.viz.figures import FIGURES, fig_encoding, fig_scales, save_figure

FAST = ["scales", "encoding", "priors_per_map", "matching"]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_figures_command_writes_valid_pngs(tmp_path):
    assert COMMANDS["figures"][0] == "ssdlib.viz.figures"
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


def test_every_figure_is_registered_with_a_callable():
    assert {"priors_per_map", "matching", "encoding", "augmentation", "receptive_fields",
            "hard_negatives", "scales", "dataset_samples"} <= set(FIGURES)  # fmt: skip
    assert all(callable(f) for f in FIGURES.values())
