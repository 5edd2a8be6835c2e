"""The run's report page, rendered from templates/report.html.j2 with what the run folder holds.

The run folder's files were written by the run's process (or came in a bundle): each is read through
fsutil's bounded readers, and a file that is not what reproexec expects counts as missing; a metrics
file read only in part (a bad line, the row or byte cap) is said so on the page.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reproexec.env.spec import templates_root
from reproexec.fsutil import read_bounded, read_json_object, read_jsonl_objects
from reproexec.runs.compare import REPROEXEC_FILES, SCRIPT_METRICS, classify, metric_value, output_globs

IMAGES = (
    ("curves.png", "loss and accuracy"),
    ("confusion_matrix.png", "confusion matrix"),
    ("predictions.png", "sample predictions"),
)
MAX_CONFIG_BYTES = 1024**2  # the config.yaml shown on the page
# An SVG curve of more points, or a table of more rows, makes a larger page, not a more useful one (a
# script may log 1,000,000 rows).
MAX_CURVE_POINTS = 1000
MAX_TABLE_ROWS = 1000


def fmt(v: Any, digits: int = 4) -> str:
    """A number as the terminal shows it: 4 decimals (0.9666), a tiny one in scientific notation."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 10**-digits or v == 0 else f"{v:.2e}"
    return str(v)


def jinja_env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_root() / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = fmt
    return env


def render_comparison(data: dict[str, Any]) -> str:
    """comparison.html: the verdict, where the curves part, final metrics and the env diff."""
    return jinja_env().get_template("comparison.html.j2").render(d=data, c=data.get("comparison"))


def render_report(run_dir: Path, record: dict[str, Any]) -> str:
    env = jinja_env()
    summary = record.get("summary") if isinstance(record.get("summary"), dict) else None
    final = (summary or {}).get("final")
    best = (summary or {}).get("best")
    byo = bool(record.get("entrypoint"))
    rows, metrics_problem = read_jsonl_objects(run_dir / SCRIPT_METRICS) if byo else ([], None)
    return env.get_template("report.html.j2").render(
        r=record,
        summary=summary,
        best=best if isinstance(best, dict) else None,
        script_metrics=_script_metrics(rows),
        metrics_problem=metrics_problem,
        outputs=_outputs(run_dir, record) if byo else [],
        seeding=_seeding(run_dir) if byo else None,
        timing=_timing_bars(record.get("timing")),
        final_metrics=sorted((k, v) for k, v in final.items() if not isinstance(v, (dict, list)))
        if isinstance(final, dict)
        else [],
        epochs=_epochs(run_dir / "metrics" / "epochs.jsonl"),
        images=[(name, caption) for name, caption in IMAGES if (run_dir / name).is_file()],
        config_text=_text(run_dir / "config.yaml", MAX_CONFIG_BYTES),
    )


_COLOURS = ("#8c8c8c", "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7")


def _timing_bars(timing: Any) -> dict[str, Any] | None:
    """One bar: the host's phases, with the process's life split into the trainer's own work and
    the rest (start-up and exit of the process)."""
    if not isinstance(timing, dict) or not isinstance(timing.get("phases_s"), list):
        return None
    parts: list[tuple[str, float]] = []
    for name, sec in [p for p in timing["phases_s"] if isinstance(p, list) and len(p) == 2]:
        if name == "run" and isinstance(timing.get("trainer_wall_s"), (int, float)):
            parts += [
                ("process start-up and exit", max(0.0, sec - timing["trainer_wall_s"])),
                ("training (the trainer's own)", timing["trainer_wall_s"]),
            ]
        elif isinstance(sec, (int, float)):
            parts.append((name, float(sec)))
    total = sum(sec for _, sec in parts) or 1.0
    bars = [
        (name, sec, round(100 * sec / total, 2), _COLOURS[i % len(_COLOURS)]) for i, (name, sec) in enumerate(parts)
    ]
    return {"bars": bars, "wall": timing.get("wall_s", total), "outside": timing.get("outside_trainer_s")}


def _outputs(run_dir: Path, record: dict[str, Any]) -> list[tuple[str, str, str]]:
    results, logs = output_globs(run_dir)
    artifacts = record.get("artifacts") if isinstance(record.get("artifacts"), dict) else {}
    return [
        (name, classify(name, results, logs), digest)
        for name, digest in sorted(artifacts.items())
        if name.split("/")[0] not in REPROEXEC_FILES
    ]


def _seeding(run_dir: Path) -> dict[str, Any] | None:
    det = read_json_object(run_dir / "determinism.json") or {}
    if "seeded_by" not in det:
        return None
    seeds = det.get("seeds") if isinstance(det.get("seeds"), dict) else {}
    seeded = [k for k, v in seeds.items() if v is not None]
    return {
        "seed": _scalar(det.get("seed")),
        "mode": _scalar(det.get("mode")),
        "what": ", ".join(seeded) or "nothing imported",
    }


def _epochs(path: Path) -> dict[str, Any]:
    """The epochs table: its columns, at most MAX_TABLE_ROWS rows of formatted cells, how many more
    there were, and the problem met reading the file."""
    epochs, problem = read_jsonl_objects(path)
    columns = [c for c in ("epoch", "train_loss", "val_loss", "val_acc", "lr") if any(c in e for e in epochs)]
    rows = [["" if c not in e else fmt(_scalar(e[c])) for c in columns] for e in epochs[:MAX_TABLE_ROWS]]
    return {"columns": columns, "rows": rows, "more": max(0, len(epochs) - MAX_TABLE_ROWS), "problem": problem}


def _scalar(v: Any) -> Any:
    return None if isinstance(v, (dict, list)) else v  # a structure is not the value the page names


def _text(path: Path, limit: int) -> str:
    try:
        return read_bounded(path, limit, follow_symlinks=False).decode("utf-8", "replace")
    except OSError:  # missing, a link, not a regular file or too large: the page shows no config
        return ""


def _script_metrics(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A bring-your-own script's metrics (metrics/metrics.jsonl's rows): last values and a small SVG
    curve per metric (drawn here, so the report needs no plotting library on this machine), of at
    most MAX_CURVE_POINTS points each (evenly spaced, the last one always drawn)."""
    counts: dict[str, int] = {}
    for row in rows:
        for k, v in row.items():
            if k not in ("step", "epoch") and metric_value(v) is not None:
                counts[k] = counts.get(k, 0) + 1
    if not counts:
        return None
    series: dict[str, list[tuple[float, float]]] = {k: [] for k in counts}
    last: dict[str, float] = {}
    seen = dict.fromkeys(counts, 0)
    for i, row in enumerate(rows):
        x = metric_value(row.get("step", row.get("epoch")))
        for k, v in row.items():
            if k in counts and (value := metric_value(v)) is not None:
                last[k] = value
                if seen[k] % max(1, counts[k] // MAX_CURVE_POINTS) == 0 or seen[k] == counts[k] - 1:
                    series[k].append((i + 1.0 if x is None else x, value))
                seen[k] += 1
    return {"final": sorted(last.items()), "curves": [(k, _svg(pts)) for k, pts in sorted(series.items())]}


def _svg(points: list[tuple[float, float]], w: int = 320, h: int = 160, pad: int = 28) -> str:
    pts = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    sx = (w - 2 * pad) / ((x1 - x0) or 1)
    sy = (h - 2 * pad) / ((y1 - y0) or 1)
    path = " ".join(f"{pad + (x - x0) * sx:.1f},{h - pad - (y - y0) * sy:.1f}" for x, y in pts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">'
        f'<rect width="{w}" height="{h}" fill="white" stroke="#ddd"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{path}"/>'
        f'<text x="{pad}" y="{pad - 8}" font-size="10">{y1:.4g}</text>'
        f'<text x="{pad}" y="{h - 8}" font-size="10">{y0:.4g} · x {x0:g}–{x1:g}</text></svg>'
    )
