"""`reproexec run config.yaml [--gpu] [--name NAME] [--runtime docker|local]`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from reproexec import console
from reproexec.cli.options import RunsDir

if TYPE_CHECKING:  # the CLI's start imports no core module
    from reproexec.runs.execute import RunOutcome
    from reproexec.runs.prepare import Runtime


def run(
    config: Annotated[Path, typer.Argument(help="config.yaml")],
    gpu: Annotated[bool, typer.Option("--gpu", help="Train on the GPU (CUDA image, NVIDIA runtime).")] = False,
    name: Annotated[str | None, typer.Option(help="Name in the run id instead of the config's name.")] = None,
    runtime: Annotated[str, typer.Option(help="docker (hardened container) or local (this Python).")] = "docker",
    require_clean: Annotated[
        bool, typer.Option("--require-clean", help="Refuse to run with uncommitted changes.")
    ] = False,
    runs_dir: RunsDir = Path("runs"),
    user: Annotated[
        str | None,
        typer.Option(help="UID:GID to run as and to own the run folder (when root runs for someone); never 0."),
    ] = None,
) -> None:
    """Build or reuse the image, verify the data, train in the container, export one run folder."""
    from reproexec.cli import STARTED
    from reproexec.config import load_config
    from reproexec.errors import ConfigError
    from reproexec.runs.execute import execute_run
    from reproexec.runs.launch import container_user
    from reproexec.runs.prepare import RunOptions, check_options
    from reproexec.runs.timing import Clock

    clock = Clock(since=STARTED)
    if runtime not in ("docker", "local"):
        raise ConfigError(f"--runtime {runtime!r} is not known", "use --runtime docker or --runtime local")
    if user is not None and not re.fullmatch(r"[0-9]+:[0-9]+", user):
        raise ConfigError(f"--user {user!r} is not UID:GID", "pass numbers, e.g. --user 1000:1000")
    with clock.phase("config"):
        container_user(user)  # refuses a uid or gid of 0 before anything starts
        loaded = load_config(config)
        kind = cast("Runtime", runtime)  # checked above
        opts = RunOptions(
            gpu=gpu, name=name, runtime=kind, require_clean=require_clean, runs_dir=runs_dir.resolve(), user=user
        )
        check_options(loaded, opts)
        engine = None
        if runtime == "docker":
            from reproexec.engine import connect

            engine = connect()
    with console.run_progress() as on_event:
        outcome = execute_run(loaded, opts, engine=engine, on_event=on_event, on_log=console.info, clock=clock)
    console.run_summary(outcome)
    raise_for_outcome(outcome)


def raise_for_outcome(outcome: RunOutcome) -> None:
    """An interrupted run exits 128 + the signal, a failed one as a RunError (the one exit-code map)."""
    from reproexec.errors import Interrupted, RunError

    if outcome.status == "interrupted":
        raise Interrupted(outcome.signum or 2, f"run {outcome.run_id} interrupted: {outcome.reason}")
    if outcome.status != "succeeded":
        raise RunError(
            f"run {outcome.run_id} failed: {outcome.reason}",
            f"read {outcome.run_dir / 'stdout.log'}; the run folder says the same in run.json",
        )
