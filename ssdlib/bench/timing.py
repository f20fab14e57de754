"""Timing primitives of ``ssdlib bench``: interleaved medians, the result row, machine facts.

Why interleaved: the benchmark machine may be shared, so load drifts over seconds. Timing ours
then the peer in alternation (and swapping which goes first each round) exposes both to the same
drift; the median of the rounds drops the outliers that drift and the garbage collector cause.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

# The settings that hold PyTorch below the CPU's own kernels (recorded in the machine line).
KERNEL_ENV_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "SSDLIB_NO_BF16")


@dataclass
class Row:
    """One benchmark line. Times are seconds per call; ``peer_s`` is None without a peer."""

    name: str
    ours_s: float | None
    peer_s: float | None
    note: str = ""
    target: str = ""
    limit_s: float | None = None  # compute rows: the least time this machine could take
    flops: float = 0.0  # compute rows: convolution/matmul FLOPs of one call (FlopCounterMode)
    dtype: torch.dtype | None = None  # compute rows: the dtype ours computes in

    @property
    def skipped(self) -> bool:
        return self.ours_s is None and self.note.startswith("skipped")

    @property
    def ratio(self) -> float | None:
        """ours / peer: below 1 means ssdlib is faster."""
        if self.ours_s is None or self.peer_s is None or self.peer_s == 0:
            return None
        return self.ours_s / self.peer_s

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("target", "dtype")}
        out["ratio"] = self.ratio
        out["of_limit"] = None if self.limit_s is None or not self.ours_s else self.limit_s / self.ours_s
        return {k: out[k] for k in ("name", "ours_s", "peer_s", "ratio", "limit_s", "of_limit", "note")}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count.

    For rows made of many millisecond-scale ops (post-processing, matching): on a machine
    whose cores are busy with other jobs, OpenMP's barriers between threads cost more than
    these small ops gain from a second thread (measured 10-30x slower with 2 threads under
    load), which would time the machine's contention rather than the code. A data worker
    runs single-threaded too.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def _no_sync() -> None:
    return None


def measure_pair(
    ours: Callable[[], object],
    peer: Callable[[], object] | None,
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = _no_sync,
) -> tuple[float, float | None]:
    """Median seconds per call of ``ours`` and ``peer``, measured in alternation.

    Round r runs ours then peer when r is even, peer then ours when odd, so neither side
    systematically inherits the other's cache state or a load spike. ``warmup`` untimed calls
    each first (oneDNN primitive creation, allocator growth, lazy imports).
    """
    for _ in range(warmup):
        ours()
        if peer is not None:
            peer()
    ours_t: list[float] = []
    peer_t: list[float] = []
    gc.collect()
    for r in range(max(repeats, 1)):
        order = [(ours, ours_t), (peer, peer_t)]
        if r % 2:
            order.reverse()
        for fn, times in order:
            if fn is not None:
                times.append(_timed(fn, sync))
    return statistics.median(ours_t), (statistics.median(peer_t) if peer_t else None)


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(limits: dict) -> dict:
    """What the numbers were measured on; printed above the table and stored in the JSON."""
    import torchvision

    from ssdlib.engine.cpu_features import bf16_support, cpu_kind

    info = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": "cpu",
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu_kind": cpu_kind(),
        "bf16": bf16_support()[1],
        "limits": {str(k).removeprefix("torch."): v.to_json() for k, v in limits.items()},
        "python": platform.python_version(),
    }
    for name in KERNEL_ENV_VARS:
        if os.environ.get(name):
            info[name] = os.environ[name]
    if hasattr(os, "getloadavg"):
        # Other work on the machine makes every number slower and noisier: record it.
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info
