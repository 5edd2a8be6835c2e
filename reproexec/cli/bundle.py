"""`reproexec export ID -o run.tar.gz [--with-image]` and `reproexec import BUNDLE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reproexec import console
from reproexec.cli.options import RunsDir, SignedBy


def export(
    run_id: Annotated[str, typer.Argument(help="Run id or run folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle to write (.tar.gz, or .tar).")],
    with_image: Annotated[
        bool,
        typer.Option(
            "--with-image",
            help="Save the run image too (GBs), for machines that reach no package index. "
            "Into a .tar it is streamed (only its own size on disk); a .tar.gz saves it first.",
        ),
    ] = False,
    with_base: Annotated[
        bool,
        typer.Option("--with-base", help="Bring the base's rootfs (tens of MB); the other machine rebuilds the image."),
    ] = False,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Pack one run folder (and optionally its image) into a bundle for another machine."""
    from reproexec.runs.bundle import export_run
    from reproexec.runs.store import load_run

    engine = None
    if with_image or with_base:
        from reproexec.engine import connect

        engine = connect()
    result = export_run(
        load_run(run_id, runs_dir.resolve()), output, engine=engine, with_image=with_image, with_base=with_base
    )
    extra = " + image" if with_image else f" + base rootfs ({console.size(result.base_bytes)})" if with_base else ""
    console.success(
        f"{result.path}: run {result.run_id}, {result.files} files{extra}, {console.size(result.path.stat().st_size)}"
    )


def import_(
    bundle: Annotated[Path, typer.Argument(help="Bundle from `reproexec export`.")],
    signed_by: SignedBy = None,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Check a bundle (paths, links, sizes, hashes) and add its run to the run store; a saved image is
    loaded into Docker."""
    from reproexec.engine import connect
    from reproexec.runs.bundle import import_bundle

    result = import_bundle(bundle, runs_dir.resolve(), connect, signed_by=signed_by)
    record = result.record
    state = "was already in the store" if result.already_present else f"imported into {record.path}"
    console.success(
        f"run {record.run_id} {state}"
        + (f" (image {result.image[:19]} loaded and checked)" if result.image else "")
        + (f" (base {result.base} imported and checked)" if result.base else "")
        + (
            f", signed by key {result.verification.signed_by}"
            if result.verification and result.verification.signed_by
            else ""
        )
    )
    console.data(record.run_id)
