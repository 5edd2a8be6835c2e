"""The run's report page, rendered from templates/report.html.j2 with what the run folder holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reproexec.imagespec import templates_root

IMAGES = (("curves.png", "loss and accuracy"), ("confusion_matrix.png", "confusion matrix"), ("predictions.png", "sample predictions"))


def _env() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_root() / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render_comparison(data: dict[str, Any]) -> str:
    """comparison.html: the verdict, where the curves part, final metrics and the env diff."""
    return _env().get_template("comparison.html.j2").render(d=data, c=data.get("comparison"))


def render_report(run_dir: Path, record: dict[str, Any]) -> str:
    env = _env()
    summary = record.get("summary") or None
    epochs = _jsonl(run_dir / "metrics" / "epochs.jsonl")
    columns = [c for c in ("epoch", "train_loss", "val_loss", "val_acc", "lr") if any(c in e for e in epochs)]
    final = (summary or {}).get("final") or {}
    config_path = run_dir / "config.yaml"
    byo = bool(record.get("entrypoint"))
    return env.get_template("report.html.j2").render(
        r=record,
        summary=summary,
        script_metrics=_script_metrics(run_dir) if byo else None,
        outputs=_outputs(run_dir, record) if byo else [],
        seeding=_seeding(run_dir) if byo else None,
        timing=_timing_bars(record.get("timing")),
        final_metrics=sorted((k, v) for k, v in final.items() if not isinstance(v, (dict, list))),
        epochs=epochs,
        epoch_columns=columns,
        images=[(name, caption) for name, caption in IMAGES if (run_dir / name).is_file()],
        config_text=config_path.read_text(encoding="utf-8") if config_path.is_file() else "",
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
            parts += [("process start-up and exit", max(0.0, sec - timing["trainer_wall_s"])),
                      ("training (the trainer's own)", timing["trainer_wall_s"])]  # fmt: skip
        elif isinstance(sec, (int, float)):
            parts.append((name, float(sec)))
    total = sum(sec for _, sec in parts) or 1.0
    bars = [(name, sec, round(100 * sec / total, 2), _COLOURS[i % len(_COLOURS)]) for i, (name, sec) in enumerate(parts)]
    return {"bars": bars, "wall": timing.get("wall_s", total), "outside": timing.get("outside_trainer_s")}


def _outputs(run_dir: Path, record: dict[str, Any]) -> list[tuple[str, str, str]]:
    from reproexec.compare import _RECORDS, classify

    output = (_json(run_dir / "config.resolved.json") or {}).get("output") or {}
    artifacts = record.get("artifacts") or {}
    return [(name, classify(name, output.get("results") or [], output.get("logs") or []), digest)
            for name, digest in sorted(artifacts.items()) if name.split("/")[0] not in _RECORDS]  # fmt: skip


def _seeding(run_dir: Path) -> dict[str, Any] | None:
    det = _json(run_dir / "determinism.json") or {}
    if "seeded_by" not in det:
        return None
    seeded = [k for k, v in (det.get("seeds") or {}).items() if v is not None]
    return {"seed": det.get("seed"), "mode": det.get("mode"), "what": ", ".join(seeded) or "nothing imported"}


def _script_metrics(run_dir: Path) -> dict[str, Any] | None:
    """A bring-your-own script's metrics (metrics/metrics.jsonl): last values and a small SVG curve
    per metric (drawn here, so the report needs no plotting library on this machine)."""
    rows = [r for r in _jsonl(run_dir / "metrics" / "metrics.jsonl") if isinstance(r, dict)]
    series: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(rows):
        x = row.get("step", row.get("epoch", i + 1))
        for k, v in row.items():
            if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool):
                series.setdefault(k, []).append((float(x) if isinstance(x, (int, float)) else i + 1.0, float(v)))
    if not series:
        return None
    return {"final": [(k, pts[-1][1]) for k, pts in sorted(series.items())],
            "curves": [(k, _svg(pts)) for k, pts in sorted(series.items())]}  # fmt: skip


def _svg(points: list[tuple[float, float]], w: int = 320, h: int = 160, pad: int = 28) -> str:
    import math

    pts = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    sx = (w - 2 * pad) / ((x1 - x0) or 1)
    sy = (h - 2 * pad) / ((y1 - y0) or 1)
    path = " ".join(f"{pad + (x - x0) * sx:.1f},{h - pad - (y - y0) * sy:.1f}" for x, y in pts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">'
            f'<rect width="{w}" height="{h}" fill="white" stroke="#ddd"/>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{path}"/>'
            f'<text x="{pad}" y="{pad - 8}" font-size="10">{y1:.4g}</text>'
            f'<text x="{pad}" y="{h - 8}" font-size="10">{y0:.4g} · x {x0:g}–{x1:g}</text></svg>')  # fmt: skip


def _json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError, RecursionError):
        return []
