"""`reproexec sweep sweep.yaml [--executor local|slurm] [--parallel N] [--dry-run]` and
`reproexec sweep status DIR`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from typer.core import TyperGroup

from reproexec import console
from reproexec.cli.options import RunsDir

if TYPE_CHECKING:
    from typing import Literal


class _RunByDefault(TyperGroup):
    """`reproexec sweep FILE ...` is `reproexec sweep run FILE ...`; `status` is the other command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    help="Ablation sweeps: variants × seeds of one config, each cell an ordinary run, one comparison report.",
    no_args_is_help=True,
)
SweepsDir = Annotated[Path, typer.Option(help="Where sweep folders go.", envvar="REPROEXEC_SWEEPS")]


@app.command("run")
def run(
    sweep_file: Annotated[Path, typer.Argument(help="sweep.yaml (see examples/ablation/)")],
    executor: Annotated[str, typer.Option(help="local (this machine) or slurm (a job array).")] = "local",
    parallel: Annotated[int, typer.Option(help="local: cells at a time, each on its own cpuset.")] = 1,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the cells, their differences and the image tag; run nothing.")
    ] = False,
    runs_dir: RunsDir = Path("runs"),
    sweeps_dir: SweepsDir = Path("sweeps"),
) -> None:
    """Run every cell (variant × seed) that has no succeeded run yet, then write the comparison report."""
    from reproexec.engine import connect
    from reproexec.sweep.core import SweepOptions, prepare, run_sweep
    from reproexec.sweep.core import dry_run as plan_view

    kind = cast('Literal["local", "slurm"]', executor)  # prepare() refuses any other
    opts = SweepOptions(executor=kind, parallel=parallel, runs_dir=runs_dir.resolve(), sweeps_dir=sweeps_dir.resolve())
    engine = functools.cache(connect)  # connected only once the sweep file and the executor passed
    plan = prepare(sweep_file, opts, engine, on_log=console.info)
    if dry_run:
        console.sweep_plan(plan_view(plan, opts))
        return
    outcome = run_sweep(plan, opts, engine(), on_log=console.info)
    console.sweep_result(outcome.record, outcome.report, outcome.sweep_dir)
    import signal

    from reproexec.errors import Interrupted, RunError

    if outcome.status == "interrupted":
        raise Interrupted(
            signal.SIGINT, f"sweep {outcome.sweep_dir.name} interrupted: the cells not yet started are pending"
        )
    if outcome.status != "succeeded":
        raise RunError(
            f"sweep {outcome.sweep_dir.name}: not every cell succeeded",
            f"read {outcome.sweep_dir / 'sweep.json'}; run the sweep again to rerun the failed and missing cells",
        )


@app.command("status")
def status(
    sweep: Annotated[str, typer.Argument(help="Sweep folder, or its name in --sweeps-dir.")],
    sweeps_dir: SweepsDir = Path("sweeps"),
    json_: Annotated[bool, typer.Option("--json", help="The record as JSON, for tools.")] = False,
) -> None:
    """Where each cell stands: its status, run id and, for Slurm, its job id and state from Slurm."""
    from reproexec.sweep.core import sweep_status

    record = sweep_status(sweep, sweeps_dir.resolve())
    if json_:
        console.json_data(record)
    else:
        console.sweep_cells(record)
