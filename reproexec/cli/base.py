"""`reproexec base bootstrap`: an offline base image that is the same on every machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reproexec import console

app = typer.Typer(help="Base images for run images (offline bootstrap, import).", no_args_is_help=True)

_EPOCH_HELP = (
    "SOURCE_DATE_EPOCH for the rootfs (every mtime is clamped to it). Default: reproexec's fixed epoch "
    "(2024-01-01), so the same packages give the same layer on every machine."
)


@app.command("bootstrap")
def bootstrap(
    suite: Annotated[str, typer.Option(help="Debian suite for mmdebstrap.")] = "bookworm",
    tag: Annotated[
        str | None,
        typer.Option(
            help="Tag of the base image (what env.base_image names). Default: reproexec-base:bookworm, "
            "or reproexec-base:bookworm-arm64 for --arch arm64."
        ),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            help="Debian architecture of the base: amd64 or arm64. Default: the Docker engine's. arm64 on an "
            "amd64 machine runs the packages' scripts under qemu-user (apt-get install qemu-user-static)."
        ),
    ] = None,
    mirror: Annotated[
        str | None, typer.Option(help="Debian mirror to fetch from; default: the one this host's apt uses.")
    ] = None,
    include: Annotated[list[str] | None, typer.Option(help="Extra Debian packages to bake in (repeatable).")] = None,
    from_tar: Annotated[
        Path | None,
        typer.Option(
            "--from-tar", help="Import a rootfs tarball (checked as untrusted) or a `docker save` file instead."
        ),
    ] = None,
    source_date_epoch: Annotated[int | None, typer.Option(min=0, help=_EPOCH_HELP)] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if TAG exists.")] = False,
) -> None:
    """Make the base image offline (mmdebstrap + docker import), reproducibly, and print its image id. Idempotent."""
    from reproexec.engine import connect
    from reproexec.env.base import DEFAULT_SOURCE_DATE_EPOCH, bootstrap_base
    from reproexec.errors import ConfigError
    from reproexec.runtime.seeding import MACHINES, check_machine

    epoch = DEFAULT_SOURCE_DATE_EPOCH if source_date_epoch is None else source_date_epoch
    engine = connect()
    if arch is not None and arch not in MACHINES:
        raise ConfigError(f"--arch {arch!r} is not a platform reproexec builds", "pass --arch amd64 or --arch arm64")
    result = bootstrap_base(
        engine,
        tag=tag,
        arch=arch or check_machine(engine.architecture(), "the Docker engine's machine"),
        suite=suite,
        mirror=mirror,
        include=tuple(include or ()),
        from_tar=from_tar,
        force=force,
        source_date_epoch=epoch,
        on_log=console.info,
    )
    if result.created:
        console.success(f"{result.tag} created ({result.source})")
    else:
        console.info(f"{result.tag} already exists; nothing to do (--force rebuilds it)")
    if result.rootfs_sha256:
        console.info(f"rootfs sha256 (= layer diff_id) {result.rootfs_sha256}")
    console.data(result.image_id)
