"""One writer per output folder (issue 20): a second training run into a folder that a live
run holds fails in one line naming the folder and the owner's pid; the lock dies with its
owner (``kill -9`` included) and is released on any exit; cleanup spares live runs' temp files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import write_config

from ssdlib.cli import main
from ssdlib.engine.checkpoint import remove_stale_temps
from ssdlib.engine.outdir import LOCK_NAME, OutputBusyError, OutputLock

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fcntl.flock and SIGKILL")

OUTDIR = Path(__file__).resolve().parents[2] / "ssdlib" / "engine" / "outdir.py"
# Loads outdir.py alone (no torch import: starts in well under a second) and holds the lock.
HOLDER = f"""
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("outdir", {str(OUTDIR)!r})
outdir = importlib.util.module_from_spec(spec)
spec.loader.exec_module(outdir)
outdir.OutputLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _hold(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"locked"
    return proc


def test_a_second_run_is_refused_and_a_killed_owner_frees_the_folder(tmp_path, capsys):
    out = tmp_path / "out"
    holder = _hold(out)
    try:
        config = write_config(tmp_path / "c.yaml", train={"batch_size": 2, "max_iter": 2})
        args = ["train", "--config", str(config), "--output", str(out), "--no-progress"]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err == (f"error: output folder {out} is in use by another training run (pid "
                       f"{holder.pid}); wait for it to finish, stop it, or choose another "
                       "--output\n")  # fmt: skip
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing else written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_NAME).exists()  # the file stays after kill -9 ...
    assert main(args) == 0  # ... but its lock died with the process
    assert not (out / LOCK_NAME).exists()  # a clean exit removes it


def test_the_lock_is_released_on_any_exit(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), OutputLock(tmp_path / "o"):
        with pytest.raises(OutputBusyError, match=f"pid {os.getpid()}"):
            OutputLock(tmp_path / "o").acquire()  # even the same process cannot take it twice
        raise RuntimeError("boom")
    with OutputLock(tmp_path / "o"):
        pass


def test_cleanup_spares_temp_files_of_live_processes(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        mine = tmp_path / f".model_0000004.pth.tmp{os.getpid()}"
        theirs = tmp_path / f".eval_model_0000002.json.tmp{live.pid}"
        stale = tmp_path / f".model_0000002.pth.tmp{dead.pid}"
        for p in (mine, theirs, stale):
            p.write_bytes(b"half")
        assert remove_stale_temps(tmp_path) == [stale]
        assert mine.exists() and theirs.exists()
    finally:
        live.kill()
        live.wait()
