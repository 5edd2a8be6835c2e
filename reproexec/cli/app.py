"""The Typer application and the one place that maps errors to messages and exit codes."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from reproexec import console
from reproexec.errors import Interrupted, ReproexecError, signals_raise


class ReproexecGroup(TyperGroup):
    """Root group: the one place that turns errors into a message and an exit code.

    A ReproexecError from any sub-command becomes its message and its exit_code; Ctrl-C and SIGTERM
    become `Interrupted` (130 / 143). Typer's own Exit/Abort pass through untouched, and a genuine
    bug still shows its traceback.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            with signals_raise():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            e: ReproexecError = Interrupted(signal.SIGINT)
            console.error(str(e))
            raise typer.Exit(e.exit_code) from None
        except ReproexecError as e:
            console.error(str(e))
            raise typer.Exit(e.exit_code) from None


app = typer.Typer(
    cls=ReproexecGroup,
    name="reproexec",
    help="Reproducible, containerized PyTorch/torchvision runs: lock code, data, environment and randomness.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from reproexec._version import version

        console.data(f"reproexec {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """reproexec: lock code, data, environment and randomness for PyTorch/torchvision training."""


def _register() -> None:
    # Each module defines its commands; importing them here keeps this file a table of contents.
    from reproexec.cli import base, build, bundle, config, data, gc, keys, lock, rerun, run, runs, smoke, sweep, verify

    app.add_typer(base.app, name="base")
    app.add_typer(config.app, name="config")
    app.add_typer(data.app, name="data")
    app.command("lock")(lock.lock)
    app.command("build")(build.build)
    app.command("smoke")(smoke.smoke)
    app.command("run")(run.run)
    app.add_typer(runs.app, name="runs")
    app.add_typer(sweep.app, name="sweep")
    app.command("export")(bundle.export)
    app.command("import")(bundle.import_)
    app.command("rerun")(rerun.rerun)
    app.add_typer(rerun.env_app, name="env")
    app.command("gc")(gc.gc)
    app.command("verify")(verify.verify)
    app.add_typer(keys.app, name="keys")


_register()
