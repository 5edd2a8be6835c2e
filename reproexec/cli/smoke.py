"""`reproexec smoke config.yaml [--runtime docker|local] [--once]`: a short run of any config, twice,
with invariant checks and a comparison of the two runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from reproexec import console

if TYPE_CHECKING:
    from reproexec.runs.prepare import Runtime


def smoke(
    config: Annotated[Path, typer.Argument(help="config.yaml")],
    runtime: Annotated[str, typer.Option(help="docker (the run's own image) or local (this Python).")] = "docker",
    once: Annotated[bool, typer.Option("--once", help="One run: the invariants only, no determinism check.")] = False,
    gpu: Annotated[bool, typer.Option("--gpu", help="Train on the GPU.")] = False,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Built-in trainer: optimizer steps (default: smoke.steps).")
    ] = None,
    subset: Annotated[int | None, typer.Option("--subset", min=1, help="Default: smoke.subset.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the runs and smoke.json (default: a new temp folder).")
    ] = None,
) -> None:
    """Run a short job twice in fresh processes (the built-in trainer's smoke.steps on a subset, or
    your entrypoint unchanged on a subset of the snapshot), check the invariants (the loss drops by
    smoke.min_loss_drop, nothing is NaN/inf, smoke.ranges hold) and compare the two runs as rerun
    does. Exit 0 passed, 9 invariants failed, 11 not deterministic."""
    from reproexec.cli import STARTED
    from reproexec.config import load_config
    from reproexec.errors import ConfigError
    from reproexec.runs.smoke import run_smoke
    from reproexec.runs.timing import Clock

    clock = Clock(since=STARTED)
    if runtime not in ("docker", "local"):
        raise ConfigError(f"--runtime {runtime!r} is not known", "use --runtime docker or --runtime local")
    loaded = load_config(config)
    engine = None
    if runtime == "docker":
        from reproexec.engine import connect

        engine = connect()
    with console.run_progress() as on_event:
        result = run_smoke(
            loaded,
            runtime=cast("Runtime", runtime),
            engine=engine,
            once=once,
            gpu=gpu,
            steps=steps,
            subset=subset,
            out_dir=out,
            on_event=on_event,
            on_log=console.info,
            clock=clock,
        )
    console.smoke_result(result)
