"""engine.host_memory: freed blocks stay in the process (glibc), so re-allocating them does not
fault pages in again. Checked in child processes: the setting is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ssdlib.engine import host_memory

_CHILD = """
import json, resource, sys, torch
applied = None
if sys.argv[1] == "keep":
    from ssdlib.engine.host_memory import keep_freed_memory
    applied = [keep_freed_memory(), keep_freed_memory()]
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20)  # 64 MiB: above glibc's largest automatic mmap threshold (32 MiB)
    float(x[::4096].sum())
    del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _child(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _is_glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _is_glibc(), reason="glibc's malloc only")
def test_freed_blocks_are_reused_without_page_faults():
    default, kept = _child("default"), _child("keep")
    pages = (64 << 20) // 4096
    # Default: every 64 MiB block is fresh mmap'd memory, all of its pages fault in each time.
    assert min(default["faults"][6:]) > pages // 2, default
    # Kept: once the heap has grown to hold it (one or two growths, seen within the first four
    # rounds), the block is reused as it is.
    assert kept["applied"] == [True, True]
    assert sum(kept["faults"][6:]) < pages // 8, kept


def test_not_applied_off_glibc(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setattr(host_memory.sys, "platform", "darwin")
    assert host_memory.keep_freed_memory() is False
