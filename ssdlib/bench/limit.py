"""The machine limit of the compute rows: the best throughput this machine reaches, per dtype.

A network's forward (or training step) is a sequence of convolutions and matmuls, each run at
some rate no higher than the best rate the machine reaches on such work, so
``FLOPs / best rate`` is a lower bound of its time. One 2048^2 matmul is not that best rate
(``inference_b1`` once ran faster than such a "floor"): the limit here is the best of several
GEMM shapes (square, and the im2col shapes of SSD300's 3x3 convolutions) and of large 3x3
convolutions in both memory layouts, each the best of several repeats, in the row's dtype.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

# (M, K, N): square, VGG16 conv4_3 / conv3_3 / fc7 as im2col GEMMs at 300 px, and a wide one.
GEMM_SHAPES = ((2048, 2048, 2048), (1444, 4608, 512), (5625, 2304, 256), (361, 1024, 1024),
               (4096, 1024, 4096))  # fmt: skip
QUICK_GEMM_SHAPES = ((1024, 1024, 1024), (1444, 4608, 512), (361, 1024, 1024))
# (C_in, C_out, H=W): VGG16 conv4 (38 px) and conv3 (75 px) at 300 px input, batch 1.
CONV_SHAPES = ((512, 512, 38), (256, 256, 75))


@dataclass
class Limit:
    """Best measured GFLOP/s of one dtype, and which kernel reached it."""

    dtype: torch.dtype
    gflops: float
    best_of: str
    rates: dict[str, float] = field(default_factory=dict)  # every kernel's GFLOP/s

    def seconds(self, flops: float) -> float:
        """The least time ``flops`` of convolution/matmul work can take here."""
        return flops / (self.gflops * 1e9)

    def to_json(self) -> dict:
        rates = {k: round(v, 1) for k, v in self.rates.items()}
        return {"dtype": str(self.dtype).removeprefix("torch."), "gflops": round(self.gflops, 1),
                "best_of": self.best_of, "rates": rates}  # fmt: skip


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN primitive creation, packing buffers, thread pool
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_limit(dtype: torch.dtype = torch.float32, quick: bool = False, repeats: int = 5) -> Limit:
    """Best GFLOP/s over :data:`GEMM_SHAPES` and :data:`CONV_SHAPES` (NCHW and NHWC) in ``dtype``."""
    g = torch.Generator().manual_seed(0)
    rates: dict[str, float] = {}
    with torch.inference_mode():
        for m, k, n in QUICK_GEMM_SHAPES if quick else GEMM_SHAPES:
            a = torch.randn(m, k, generator=g).to(dtype)
            b = torch.randn(k, n, generator=g).to(dtype)
            rates[f"gemm {m}x{k}x{n}"] = 2 * m * k * n / _best_seconds(lambda a=a, b=b: a @ b, repeats) / 1e9
        for c_in, c_out, size in CONV_SHAPES[:1] if quick else CONV_SHAPES:
            conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1).to(dtype)
            x = torch.randn(1, c_in, size, size, generator=g).to(dtype)
            flops = 2 * c_in * c_out * 9 * size * size
            for layout in (torch.contiguous_format, torch.channels_last):
                conv_l = conv.to(memory_format=layout)
                x_l = x.contiguous(memory_format=layout)
                tag = "NHWC" if layout is torch.channels_last else "NCHW"
                name = f"conv3x3 {c_in}->{c_out} {size}px {tag}"
                rates[name] = flops / _best_seconds(lambda c=conv_l, i=x_l: c(i), repeats) / 1e9
    best = max(rates, key=rates.get)
    return Limit(dtype, rates[best], best, rates)


def best_limits(*measured: dict[torch.dtype, Limit]) -> dict[torch.dtype, Limit]:
    """Per dtype the higher of several measurements (load on a shared machine only lowers them)."""
    out: dict[torch.dtype, Limit] = {}
    for limits in measured:
        for dtype, limit in limits.items():
            if dtype not in out or limit.gflops > out[dtype].gflops:
                out[dtype] = limit
    return out


def apply_limits(rows: list, limits: dict[torch.dtype, Limit]) -> None:
    """Give every compute row (``flops`` > 0) its ``limit_s`` and say in its note how close
    ours (and the peer, which computes in fp32) came to it."""
    for row in rows:
        if not row.flops or row.ours_s is None or row.dtype not in limits:
            continue
        limit = limits[row.dtype]
        row.limit_s = limit.seconds(row.flops)
        peer_s = row.peer_s if row.dtype == torch.float32 else None
        row.note += "; " + limit_note(row.ours_s, peer_s, row.limit_s, limit)


def limit_note(ours_s: float, peer_s: float | None, limit_s: float, limit: Limit) -> str:
    """``limit 120 ms (bf16 412 GFLOP/s, gemm ...); ours 31 % of it, peer 28 %``."""
    dtype = str(limit.dtype).removeprefix("torch.")
    note = (f"machine limit {limit_s * 1e3:.0f} ms ({dtype} {limit.gflops:.0f} GFLOP/s, best: "
            f"{limit.best_of}); ours at {limit_s / ours_s:.0%} of it")  # fmt: skip
    if peer_s:
        note += f", peer {limit_s / peer_s:.0%}"
    return note
