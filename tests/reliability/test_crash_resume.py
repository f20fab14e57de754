"""Crash safety: ``python -m ssdlib train`` killed with SIGKILL (inside a checkpoint write, and
at random moments) resumes from the newest complete checkpoint and ends with exactly the
per-iteration losses of an uninterrupted run; no file of the output folder is ever half-written.

(tests/test_engine_train.py resumes after an in-process exception and test_engine_checkpoint.py
injects a failing ``os.replace``; here a real process dies without any cleanup.)
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from reliability_helpers import write_config

from ssdlib.config import load_config
from ssdlib.engine import train
from ssdlib.engine.checkpoint import POINTER, latest_checkpoint, list_checkpoints, load_checkpoint
from ssdlib.engine.outdir import LOCK_NAME
from ssdlib.engine.run_log import MetricsLogger, read_metrics
from ssdlib.io import CheckpointError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL and /proc/self/fd")

KEEP = 2  # train.keep_checkpoints of the tiny config
TEMP = re.compile(r"^\.(.+)\.tmp\d+$")  # atomic_write's temporary files

# Runs `python -m ssdlib` after an optional hook: when PAUSE_IN_WRITE_OF names a checkpoint,
# the process stops inside the REAL atomic_write of that file — after the bytes were written,
# before the rename — leaves only half of them on disk (as a dying disk write would), signals
# the test through PAUSE_MARKER and waits to be killed.
DRIVER = r'''
import os, runpy, sys, time
from pathlib import Path

target = os.environ.get("PAUSE_IN_WRITE_OF")
if target:
    real_fsync = os.fsync

    def fsync(fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.startswith(f".{target}.tmp"):
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            Path(os.environ["PAUSE_MARKER"]).write_text(name)
            time.sleep(600)
        real_fsync(fd)

    os.fsync = fsync
sys.argv[0] = "ssdlib"
runpy.run_module("ssdlib", run_name="__main__", alter_sys=True)
'''


def _start(driver: Path, config: Path, out: Path, **env: str) -> subprocess.Popen:
    cmd = [sys.executable, str(driver), "train", "--config", str(config), "--output", str(out),
           "--threads", "1", "--no-progress"]  # fmt: skip
    full_env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            return  # finished (or failed: the caller's checks say which)
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out; output:\n{proc.communicate()[0].decode()[-3000:]}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)  # no atexit, no finally: blocks, no flush
    proc.communicate()


def _rows(out: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock column."""
    return [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(out)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_consistent(out: Path) -> None:
    """What a SIGKILL may leave: complete files everywhere, plus at most temporary files."""
    for ckpt in list_checkpoints(out):  # every model_*.pth is whole and is what its name says
        assert load_checkpoint(ckpt)["iteration"] == int(ckpt.stem.split("_")[1])
    assert len(list_checkpoints(out)) <= KEEP + 1  # killed at most between write and rotation
    if (out / POINTER).exists():
        assert (out / (out / POINTER).read_text().strip()).is_file()
    rows = read_metrics(out)  # every line parses (a torn last line would be tolerated)
    assert [r["iteration"] for r in rows] == list(range(1, len(rows) + 1))
    if (out / "metrics.csv").exists():
        with open(out / "metrics.csv", newline="") as f:
            csv_rows = list(csv.DictReader(f))
        assert [int(r["iteration"]) for r in csv_rows] == list(range(1, len(csv_rows) + 1))
    if (out / "config.yaml").exists():
        load_config(out / "config.yaml")
    names = {p.name for p in out.iterdir()}
    # LOCK_NAME: a killed run's lock file stays behind; its flock died with the process.
    allowed = {POINTER, LOCK_NAME, "config.yaml", "metrics.jsonl", "metrics.csv", "tensorboard"}
    odd = [n for n in names - allowed if not re.match(r"^model_\d{7}\.pth$", n) and not TEMP.match(n)]
    assert not odd, f"unexpected files {odd}"


def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(tmp_path):
    # 12 iterations, a checkpoint every 2, the newest 2 kept.
    config = write_config(tmp_path / "tiny.yaml", train={"max_iter": 12})
    reference = train(load_config(config), tmp_path / "ref", resume=False, progress=False)
    expected = _rows(tmp_path / "ref")
    assert [r["iteration"] for r in expected] == list(range(1, 13))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "run"

    # 1. Killed inside the write of checkpoint 4: half of it is on disk under a temp name.
    marker = tmp_path / "paused"
    proc = _start(driver, config, out, PAUSE_IN_WRITE_OF="model_0000004.pth", PAUSE_MARKER=str(marker))
    _wait_for(marker.exists, proc)
    assert marker.exists(), proc.communicate()[0].decode()[-3000:]
    _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    half = out / marker.read_text()
    assert half.is_file() and TEMP.match(half.name)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(half)  # really half-written ...
    assert latest_checkpoint(out).name == "model_0000002.pth"  # ... and never taken for one
    assert not (out / "model_0000004.pth").exists()
    assert_consistent(out)

    # 2. Resumed, then killed at random moments of the training (seeded: after the row of the
    # 1st or 2nd new iteration plus up to ~1 iteration, so some kills land in a step, some in
    # a checkpoint or metrics write; at least 4 iterations are always left, so it is a kill).
    rng = random.Random(8)
    hashes: dict[str, str] = {}
    for _ in range(2):
        start = int(load_checkpoint(latest_checkpoint(out))["iteration"])
        at = start + rng.choice((1, 2))
        proc = _start(driver, config, out)
        _wait_for(lambda a=at: any(r["iteration"] >= a for r in read_metrics(out)), proc)
        time.sleep(rng.uniform(0.0, 0.3))
        _kill(proc)
        assert proc.returncode == -signal.SIGKILL
        assert_consistent(out)
        for ckpt in list_checkpoints(out):
            # A complete checkpoint is never rewritten in place: same bytes while it exists.
            assert hashes.setdefault(ckpt.name, _sha(ckpt)) == _sha(ckpt), ckpt.name

    # 3. Resumed to the end: the same losses, bit for bit, as the run that never crashed.
    proc = _start(driver, config, out)
    log = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, log[-3000:]
    assert _rows(out) == expected
    assert [p.name for p in list_checkpoints(out)] == ["model_0000010.pth", "model_0000012.pth"]
    assert not [p.name for p in out.iterdir() if TEMP.match(p.name)]  # litter of the kills removed
    final = load_checkpoint(out / "model_0000012.pth")["model"]
    assert all(torch.equal(final[k], v) for k, v in reference.model.state_dict().items())
    assert_consistent(out)


def test_metrics_survive_a_torn_last_line_and_a_crash_while_rewriting(tmp_path, monkeypatch):
    """The two non-checkpoint writes a crash can hit: appending a row, rewriting the csv."""
    logger = MetricsLogger(tmp_path, 0, tensorboard=False)
    for i in (1, 2, 3):
        logger.log({"iteration": i, "loss": float(i)})
    logger.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 4, "lo')  # the machine died in the middle of an append
    assert [r["iteration"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    before = (tmp_path / "metrics.csv").read_bytes()

    def die(self, rows):  # killed while the csv is being rewritten on resume
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", die)
    with pytest.raises(KeyboardInterrupt):
        MetricsLogger(tmp_path, 2, tensorboard=False)
    monkeypatch.undo()
    assert (tmp_path / "metrics.csv").read_bytes() == before  # the old file, whole
    MetricsLogger(tmp_path, 2, tensorboard=False).close()  # the resume itself then works
    assert [r["iteration"] for r in read_metrics(tmp_path)] == [1, 2]
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert [r["iteration"] for r in csv.DictReader(f)] == ["1", "2"]
