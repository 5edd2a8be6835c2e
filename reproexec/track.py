"""Metrics from any script: `reproexec.track.log(step=12, loss=0.53, acc=0.91)`.

Each call appends one JSON line to `$REPROEXEC_METRICS` (inside a run: `metrics/metrics.jsonl` in
the run folder); outside a run it does nothing, so a script can keep the calls. A script that
prefers not to import reproexec may write the same lines itself: one JSON object per line with
numbers, and `step` (and/or `epoch`) to say where. reproexec shows them as curves and a summary in
report.html, and `reproexec rerun` compares them row by row like the built-in trainer's metrics.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any


def log(step: int | None = None, epoch: int | None = None, **metrics: float) -> None:
    """Record `metrics` (numbers) at `step` / `epoch`. Non-finite values are written as null."""
    path = os.environ.get("REPROEXEC_METRICS")
    if not path:
        return
    row: dict[str, Any] = {}
    if step is not None:
        row["step"] = int(step)
    if epoch is not None:
        row["epoch"] = int(epoch)
    for name, value in metrics.items():
        v = float(value)  # tensors and numpy scalars included
        row[name] = v if math.isfinite(v) else None
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
