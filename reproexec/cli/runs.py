"""`reproexec runs list|show`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reproexec import console
from reproexec.cli.options import RunsDir

app = typer.Typer(help="The run store: list runs, show one, compare several.", no_args_is_help=True)


@app.command("list")
def list_(runs_dir: RunsDir = Path("runs")) -> None:
    """One line per run: id, status, key metrics. Containers of runs whose reproexec was killed are
    removed and those runs marked interrupted."""
    from reproexec.runs.store import list_runs

    records = list_runs(runs_dir.resolve())
    if any(
        r.status == "interrupted (stale)" and (r.data.get("runtime") or {}).get("kind") == "docker" for r in records
    ):
        from reproexec.errors import EngineError
        from reproexec.runs.reap import reap_orphans

        try:
            from reproexec.engine import connect

            for note in reap_orphans(connect()):
                console.info(note)
        except EngineError:
            pass  # no engine here: the listing still says "interrupted (stale)"
        records = list_runs(runs_dir.resolve())
    rows = []
    for r in records:
        m = r.data.get("metrics") or {}
        rows.append(
            [
                r.run_id,
                r.status,
                r.data.get("started_at", ""),
                _fmt(m.get("val_acc")),
                _fmt(m.get("val_loss")),
                console.size(_disk(r.path)),
            ]
        )
    if not rows:
        console.info(f"no runs in {runs_dir.resolve()}")
        return
    console.table(None, ["run id", "status", "started", "val_acc", "val_loss", "disk"], rows)


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id or run folder.")], runs_dir: RunsDir = Path("runs")
) -> None:
    """The run's status, inputs (code, data, image, randomness) and results."""
    from reproexec.runs.store import load_run

    r = load_run(run_id, runs_dir.resolve())
    d = r.data
    code = d.get("code") or {}
    pairs = [
        ("run id", r.run_id),
        ("status", r.status + (f" ({d['reason']})" if d.get("reason") else "")),
        ("folder", str(r.path)),
        ("started / finished", f"{d.get('started_at')} / {d.get('finished_at')}"),
        ("code", f"{code.get('commit') or code.get('tree_sha256')}{' + patch' if code.get('dirty') else ''}"),
        ("data manifest id", (d.get("data") or {}).get("manifest_id")),
        ("image", (d.get("image") or {}).get("tag", "local runtime")),
        *([("platform", _platform(d["platform"]))] if isinstance(d.get("platform"), dict) else []),
        ("seed / threads / cpu", _rand(d)),
    ]
    for k, v in sorted((d.get("metrics") or {}).items()):
        if not isinstance(v, (dict, list)):
            pairs.append((k, _fmt(v)))
    if d.get("metrics_problem"):
        pairs.append(("metrics", str(d["metrics_problem"])))
    image = d.get("image") if isinstance(d.get("image"), dict) else {}
    inside = image.get("reproexec") if isinstance(image.get("reproexec"), dict) else {}
    pairs.append(
        (
            "reproexec",
            str(d.get("reproexec_version"))
            + (
                f" (in the image: {inside.get('version')})"
                if inside.get("version") not in (None, d.get("reproexec_version"))
                else ""
            ),
        )
    )
    if isinstance(d.get("summary"), dict):
        pairs.append(("weights sha256", d["summary"].get("weights_sha256")))
    timing = d.get("timing") if isinstance(d.get("timing"), dict) else {}
    if isinstance(timing.get("phases_s"), list):
        phases = ", ".join(
            f"{p[0]} {p[1]:.2f}"
            for p in timing["phases_s"]
            if isinstance(p, list) and len(p) == 2 and isinstance(p[1], (int, float))
        )
        pairs.append(("time (s)", f"{timing.get('wall_s')} in all: {phases}"))
        if timing.get("outside_trainer_s") is not None:
            pairs.append(("outside the trainer (s)", timing["outside_trainer_s"]))
    console.key_values(pairs)


def _platform(p: dict) -> str:
    emulated = p.get("emulated") if isinstance(p.get("emulated"), dict) else None
    return f"linux/{p.get('arch')}, numerics class {p.get('numerics_class')}" + (
        f", emulated ({emulated.get('by')}, CPU {emulated.get('cpu')})" if emulated else ""
    )


@app.command("compare")
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids or run folders.")],
    runs_dir: RunsDir = Path("runs"),
    json_: Annotated[bool, typer.Option("--json", help="The table as JSON, for tools.")] = False,
) -> None:
    """Runs side by side: every config field that differs, and the final metrics (the sweep's table)."""
    from reproexec.errors import ConfigError
    from reproexec.runs.store import load_run
    from reproexec.sweep.report import compare_table

    if len(run_ids) < 2:
        raise ConfigError(f"runs compare needs at least two runs, got {len(run_ids)}", "pass two or more run ids")
    data = compare_table([load_run(r, runs_dir.resolve()).path for r in run_ids])
    if json_:
        console.json_data(data)
    else:
        console.runs_side_by_side(data)


def _disk(path: Path) -> int:
    import os

    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _rand(d: dict) -> str:
    rnd = d.get("randomness") or {}
    det = rnd.get("determinism") or {}
    return f"{rnd.get('seed')} / {det.get('threads')} / {det.get('cpu_capability')} ({det.get('mode')})"


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))
