"""Training metrics: ``metrics.jsonl`` (one JSON object per logged iteration), ``metrics.csv``
and TensorBoard event files when the ``tensorboard`` package is installed.

On resume from iteration ``k`` the rows after ``k`` (written by the interrupted run after its
last checkpoint) are dropped first, so the files describe one continuous run.
Both files are rewritten atomically on resume; rows are appended one whole line at a time, and
a torn last line (a crash mid-append) is ignored when the file is read back.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from ssdlib.io import atomic_write

__all__ = ["MetricsLogger", "read_metrics"]

JSONL, CSV = "metrics.jsonl", "metrics.csv"


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` file (or of the one in a folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / JSONL
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for k, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if k < len(lines) - 1:
                raise ValueError(f"{path}: line {k + 1} is not JSON: {line[:80]!r}") from None
            # A torn last line (the machine died mid-append): that row is lost, not the run.
    return rows


class MetricsLogger:
    """Append-only metric rows; a no-op on ranks other than 0 (``enabled=False``)."""

    def __init__(self, out_dir: str | os.PathLike, start_iter: int = 0, enabled: bool = True,
                 tensorboard: bool = True) -> None:  # fmt: skip
        self.enabled = enabled
        self.out = Path(out_dir)
        self._writer = None
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        rows = [r for r in read_metrics(self.out / JSONL) if r.get("iteration", 0) <= start_iter]
        atomic_write(self.out / JSONL, "".join(json.dumps(r) + "\n" for r in rows).encode())
        self._rewrite_csv(rows)
        if tensorboard:
            try:  # optional dependency
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                self._writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=start_iter + 1)

    def _rewrite_csv(self, rows: list[dict[str, Any]]) -> None:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "iteration", k))
        text = io.StringIO(newline="")
        if keys:
            writer = csv.DictWriter(text, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        # Built in memory, then replaced atomically: a crash never leaves a truncated csv.
        atomic_write(self.out / CSV, text.getvalue().encode())
        self._csv_keys = keys

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            with open(self.out / JSONL, "a") as f:
                f.write(json.dumps(row) + "\n")
            if set(row) - set(self._csv_keys):  # a new column (e.g. the first mAP): rewrite
                self._rewrite_csv(read_metrics(self.out / JSONL))
            else:
                with open(self.out / CSV, "a", newline="") as f:
                    csv.DictWriter(f, fieldnames=self._csv_keys).writerow(row)
        except OSError as e:  # a full disk: name the file (a torn last line is read back fine)
            if e.filename is None and e.strerror:
                raise OSError(e.errno, e.strerror, str(self.out / JSONL)) from e
            raise
        if self._writer is not None:
            step = int(row["iteration"])
            for key, value in row.items():
                if key != "iteration" and isinstance(value, int | float):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
