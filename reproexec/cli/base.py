"""`reproexec base bootstrap`: an offline base image, for machines without a registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reproexec import console

app = typer.Typer(help="Base images for run images (offline bootstrap, import).", no_args_is_help=True)


@app.command("bootstrap")
def bootstrap(
    suite: Annotated[str, typer.Option(help="Debian suite for debootstrap.")] = "bookworm",
    tag: Annotated[str, typer.Option(help="Tag of the base image (what env.base_image names).")] = "reproexec-base:bookworm",
    mirror: Annotated[str | None, typer.Option(help="Debian mirror; default: the one this host's apt uses.")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Extra Debian packages to bake in (repeatable).")] = None,
    from_tar: Annotated[
        Path | None, typer.Option("--from-tar", help="Import a rootfs tarball or a `docker save` file instead.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if TAG exists.")] = False,
) -> None:
    """Make the base image offline (debootstrap + docker import) and print its image id. Idempotent."""
    from reproexec.basebox import bootstrap_base
    from reproexec.engine import connect

    result = bootstrap_base(
        connect(), tag=tag, suite=suite, mirror=mirror, include=tuple(include or ()),
        from_tar=from_tar, force=force, on_log=console.info,
    )  # fmt: skip
    if result.created:
        console.success(f"{result.tag} created ({result.source})")
    else:
        console.info(f"{result.tag} already exists; nothing to do (--force rebuilds it)")
    console.data(result.image_id)
