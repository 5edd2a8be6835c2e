"""`reproexec rerun <run-id | run.tar.gz>` and `reproexec env diff A B`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from reproexec import console
from reproexec.cli.options import RunsDir, SignedBy

if TYPE_CHECKING:
    from reproexec.runs.prepare import Runtime

env_app = typer.Typer(help="Environments: what differs between two runs, images or this host.", no_args_is_help=True)


def rerun(
    ref: Annotated[str, typer.Argument(help="Run id, run folder, or bundle from `reproexec export`.")],
    data: Annotated[
        Path | None, typer.Option(help="Dataset snapshot here (checked against the recorded manifest).")
    ] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="Train on the GPU.")] = False,
    runtime: Annotated[str, typer.Option(help="docker or local.")] = "docker",
    cpuset: Annotated[str | None, typer.Option(help="Limit the container to these CPUs, e.g. '1'.")] = None,
    tolerance: Annotated[
        list[str] | None, typer.Option(help="metric=absolute tolerance, e.g. val_loss=1e-6 (repeatable).")
    ] = None,
    signed_by: SignedBy = None,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Rebuild, rerun and compare: exit 0 identical, 10 within tolerance, 11 differs."""
    from reproexec.errors import ConfigError
    from reproexec.runs.rerun import rerun as do_rerun

    tolerances: dict[str, float] = {}
    for item in tolerance or []:
        name, _, value = item.partition("=")
        try:
            if not name.strip():
                raise ValueError
            tolerances[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--tolerance {item!r} is not metric=number", "e.g. --tolerance val_loss=1e-6") from None
    if runtime not in ("docker", "local"):
        raise ConfigError(f"--runtime {runtime!r} is not known", "use --runtime docker or --runtime local")
    kind = cast("Runtime", runtime)  # checked above
    engine = None
    if runtime == "docker":
        from reproexec.engine import connect

        engine = connect()
    with console.run_progress() as on_event:
        result = do_rerun(
            ref,
            runs_dir=runs_dir.resolve(),
            engine=engine,
            runtime=kind,
            data=data,
            gpu=gpu,
            cpuset=cpuset,
            tolerances=tolerances,
            signed_by=signed_by,
            on_event=on_event,
            on_log=console.info,
        )
    console.run_summary(result.outcome)
    console.rerun_verdict(result)
    from reproexec.cli.run import raise_for_outcome

    raise_for_outcome(result.outcome)
    if result.comparison and result.comparison.exit_code:
        raise typer.Exit(result.comparison.exit_code)


@env_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="Run id, bundle, image tag, or 'host'.")],
    b: Annotated[str, typer.Argument(help="Run id, bundle, image tag, or 'host'.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON for tools.")] = False,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Every environment difference between A and B, marked by whether it can change numerics."""
    from reproexec.engine import connect
    from reproexec.runs.envdiff import diff_env, resolve_side

    va, vb = resolve_side(a, runs_dir.resolve(), connect), resolve_side(b, runs_dir.resolve(), connect)
    diffs = diff_env(va, vb)
    if as_json:
        console.data(json.dumps({"a": va.label, "b": vb.label, "differences": [asdict(d) for d in diffs]}, indent=2))
    else:
        console.env_diff(va.label, vb.label, diffs)
