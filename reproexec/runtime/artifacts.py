"""Writing the run folder: atomically, canonically, and with no timestamps in anything hashed.

Every file is written to a temporary name and renamed into place, so a killed run never leaves a
file that looks complete. Streams (per-step metrics) grow under a `.partial` name and are renamed
when the run finishes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from reproexec.fsutil import write_atomic


def write_bytes(path: Path, data: bytes) -> str:
    """Atomic write (fsutil.write_atomic), creating the folder; returns the content's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def write_text(path: Path, text: str) -> str:
    return write_bytes(path, text.encode("utf-8"))


def finite(obj: Any) -> Any:
    """JSON cannot hold NaN/inf; write them as null (the run fails on a non-finite loss anyway)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    sep = (",", ": ") if indent else (",", ":")
    return json.dumps(finite(obj), indent=indent, sort_keys=True, allow_nan=False, separators=sep)


def write_json(path: Path, obj: Any) -> str:
    return write_text(path, dumps(obj) + "\n")


class JsonlStream:
    """Line-per-record metrics file that only gets its final name when `finish` is called."""

    def __init__(self, path: Path):
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.partial, "w", encoding="utf-8")
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._f.write(dumps(row, indent=None) + "\n")

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def finish(self) -> None:
        self.close()
        os.replace(self.partial, self.path)
        write_csv(self.path.with_suffix(".csv"), self.rows)


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> str:
    """Nested dicts become dotted columns (per_class_acc.cat); floats keep every digit (repr)."""
    rows = [_flat(r) for r in rows]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in columns])
    return write_text(path, buf.getvalue())


def save_checkpoint(path: Path, payload: dict[str, Any]) -> str:
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    return write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- plots

# Agg via the object API (no pyplot state, no backend switch in the caller's process); PNG metadata
# without the Software/date fields, so the same numbers give the same bytes.
_PNG_META = {"Software": None}


def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=_PNG_META)
    return write_bytes(path, buf.getvalue())


def plot_curves(path: Path, steps: list[dict[str, Any]], epochs: list[dict[str, Any]]) -> str:
    from matplotlib.ticker import MaxNLocator

    fig = _figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    for ax in (ax1, ax2):  # steps and epochs are counted: no tick at epoch 1.25
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, label="train loss (step)")
    ev = [r for r in epochs if r.get("val_loss") is not None]
    if epochs:
        last_step = {r["epoch"]: r["step"] for r in epochs}
        ax1.plot([last_step[r["epoch"]] for r in ev], [r["val_loss"] for r in ev], "o-", label="val loss")
    ax1.set_xlabel("step")
    losses = [r["loss"] for r in steps] + [r["val_loss"] for r in ev]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 20:
        ax1.set_yscale("log")  # an early spike (e.g. BatchNorm statistics) would flatten the curve
        ax1.set_ylabel("loss (log scale)")
    else:
        ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot([r["epoch"] for r in ev], [r["val_acc"] for r in ev], "o-", color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val accuracy")
    ax2.set_ylim(0, 1)
    fig.tight_layout()
    return _save_png(fig, path)


def write_confusion(csv_path: Path, png_path: Path, matrix: list[list[int]], classes: list[str]) -> tuple[str, str]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true\\pred", *classes])
    for name, row in zip(classes, matrix, strict=True):
        w.writerow([name, *row])
    h_csv = write_text(csv_path, buf.getvalue())
    n = len(classes)
    size = max(4.0, min(16.0, 0.5 * n + 2))
    fig = _figure(size, size)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        top = max(max(r) for r in matrix) or 1
        for i in range(n):
            for j in range(n):
                v = matrix[i][j]
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > top / 2 else "black")
    fig.tight_layout()
    return h_csv, _save_png(fig, png_path)


def plot_predictions(path: Path, images: list[Any], rows: list[dict[str, Any]]) -> str:
    """Grid of val images (uint8 HWC arrays) titled predicted/true, red when wrong."""
    n = max(1, len(images))
    cols = min(8, n)
    nrows = (n + cols - 1) // cols
    fig = _figure(1.6 * cols, 1.8 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            r = rows[k]
            ax.imshow(images[k], interpolation="nearest")
            ok = r["predicted"] == r["true"]
            ax.set_title(f"{r['predicted']} / {r['true']}", fontsize=8, color="green" if ok else "red")
    fig.suptitle("predicted / true", fontsize=9)
    fig.tight_layout()
    return _save_png(fig, path)
