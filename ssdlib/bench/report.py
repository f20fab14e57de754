"""Plain-text rendering of the benchmark: a machine line and one table line per row."""

from __future__ import annotations

from ssdlib.bench.timing import KERNEL_ENV_VARS, Row


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def machine_line(machine: dict) -> str:
    parts = [f"{machine['cpu']}", f"{machine['logical_cpus']} logical CPUs",
             f"{machine['torch_threads']} torch threads", f"torch {machine['torch']}",
             f"torchvision {machine['torchvision']}", f"device {machine['device']}",
             f"kernels {machine['cpu_kind']}"]  # fmt: skip
    for limit in machine["limits"].values():
        parts.append(f"{limit['dtype']} limit {limit['gflops']} GFLOP/s ({limit['best_of']})")
    for name in KERNEL_ENV_VARS:
        if name in machine:
            parts.append(f"{name}={machine[name]}")
    if machine.get("cuda"):
        parts.append(f"CUDA {machine['cuda']}")
    if "load_average_1min" in machine:
        parts.append(f"load avg {machine['load_average_1min']}")
    return "machine: " + ", ".join(parts)


def format_table(machine: dict, rows: list[Row]) -> str:
    header = ("row", "ours", "peer", "ours/peer", "target", "note")
    lines = [
        (r.name, _fmt_time(r.ours_s), _fmt_time(r.peer_s),
         "-" if r.ratio is None else f"{r.ratio:.2f}x", r.target or "-", r.note)
        for r in rows
    ]  # fmt: skip
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(5)]
    out = [machine_line(machine), ""]
    for line in [header, *lines]:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line[:5], widths)) + "  " + line[5])
    return "\n".join(out)
