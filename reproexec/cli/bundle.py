"""`reproexec export ID -o run.tar.gz [--with-image]` and `reproexec import BUNDLE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reproexec import console

RunsDir = Annotated[Path, typer.Option(help="Run store.", envvar="REPROEXEC_RUNS")]


def export(
    run_id: Annotated[str, typer.Argument(help="Run id or run folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle to write (.tar.gz, or .tar).")],
    with_image: Annotated[
        bool, typer.Option("--with-image", help="Save the run image too, for machines without a registry.")
    ] = False,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Pack one run folder (and optionally its image) into a bundle for another machine."""
    from reproexec.bundle import export_run
    from reproexec.runstore import load_run

    engine = None
    if with_image:
        from reproexec.engine import connect

        engine = connect()
    result = export_run(load_run(run_id, runs_dir.resolve()), output, engine=engine, with_image=with_image)
    console.success(f"{result.path}: run {result.run_id}, {result.files} files{' + image' if with_image else ''}")


def import_(
    bundle: Annotated[Path, typer.Argument(help="Bundle from `reproexec export`.")],
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Check a bundle (paths, links, sizes, hashes) and add its run to the run store; a saved image is
    loaded into Docker."""
    from reproexec.bundle import IMAGE_MEMBER, import_bundle

    load = None
    if _has_member(bundle, IMAGE_MEMBER):
        from reproexec.engine import connect

        load = connect().load
    record, image = import_bundle(bundle, runs_dir.resolve(), load_image=load)
    console.success(f"imported run {record.run_id} into {record.path}" + (" (with its image)" if image else ""))
    console.data(record.run_id)


def _has_member(bundle: Path, member: str) -> bool:
    import tarfile

    try:
        with tarfile.open(bundle, "r:*") as tar:
            return any(m.name.endswith(f"/{member}") for m in tar.getmembers())
    except (tarfile.TarError, OSError):
        return False  # import_bundle reports it properly
