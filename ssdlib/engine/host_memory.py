"""Keeping freed memory in the training process (glibc's malloc), so CPU steps stop page-faulting.

glibc serves a block above its mmap threshold (128 KiB at start, raised as such blocks are
freed, at most to 32 MiB) with fresh pages from the kernel and unmaps them again on ``free``;
freed memory at the top of the heap beyond the trim threshold goes back too. A training step
frees and re-allocates the same activations and gradients every iteration, so each large one
comes back as new pages that fault in (and are zero-filled by the kernel) on first touch, once
per step. Measured on the Shapes demo step (light SSD, batch 32, 2 threads, fp32 held to AVX2
kernels, Intel Xeon, three alternated pairs of 60-step runs): 209-212 ms -> 198-204 ms per
step, the backward pass 125 -> 117 ms; with the trim threshold alone raised (which also turns
the threshold adjustment off, so every block above 128 KiB is mmap'd) 280 ms. Same results to
the last bit: only where the bytes live changes.

The cost: the process keeps its peak heap until it exits, as PyTorch's CUDA caching allocator
and jemalloc/tcmalloc (PyTorch's CPU tuning guide) do. Applied by the training commands
(``ssdlib train``, ``make demo``) when they train on the CPU, not by the library functions.
"""

from __future__ import annotations

import ctypes
import platform
import sys

__all__ = ["keep_freed_memory"]

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap; the second value for a glibc that refuses the first
# (its documented maximum is 32 MiB on 64-bit; 2.36 takes 1 GiB).
_MMAP_THRESHOLDS = (1 << 30, 32 << 20)
_TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int

_applied = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed blocks instead of returning them to the kernel.

    Returns whether it is in effect (False where the C library is not glibc: macOS, Windows,
    musl). Idempotent; a fork (DataLoader workers) inherits the setting.
    """
    global _applied
    if _applied:
        return True
    # musl also exports mallopt, as a no-op that reports success: ask for glibc by name.
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not any(mallopt(_M_MMAP_THRESHOLD, value) for value in _MMAP_THRESHOLDS):
        return False
    _applied = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _applied
