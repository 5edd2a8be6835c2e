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
    return env.get_template("report.html.j2").render(
        r=record,
        summary=summary,
        final_metrics=sorted((k, v) for k, v in final.items() if not isinstance(v, (dict, list))),
        epochs=epochs,
        epoch_columns=columns,
        images=[(name, caption) for name, caption in IMAGES if (run_dir / name).is_file()],
        config_text=config_path.read_text(encoding="utf-8") if config_path.is_file() else "",
    )


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
