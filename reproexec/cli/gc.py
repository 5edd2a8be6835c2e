"""`reproexec gc [--dry-run] [--keep-last N]`: remove reproexec's images and cached base rootfs no run uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reproexec import console
from reproexec.cli.options import RunsDir


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    keep_last: Annotated[int, typer.Option("--keep-last", min=0, help="Keep the N newest unused run images.")] = 0,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Remove run images, code images, left-over build stages and cached base rootfs that no run in the store uses."""
    from reproexec.engine import connect
    from reproexec.env.gc import apply_gc, plan_gc

    engine = connect()
    plan = plan_gc(engine, runs_dir.resolve(), keep_last=keep_last)
    console.gc_plan(plan, dry_run=dry_run)
    if dry_run or not plan.remove:
        return
    problems = apply_gc(engine, plan)
    for p in problems:
        console.warn(f"not removed: {p}")
    console.success(f"removed {len(plan.remove) - len(problems)} item(s)")
