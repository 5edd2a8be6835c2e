"""`reproexec lock requirements.in -o requirements.lock`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reproexec import console


def lock(
    requirements: Annotated[Path, typer.Argument(help="requirements.in: what the run image needs.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Lockfile to write.")] = Path("requirements.lock"),
    upgrade: Annotated[bool, typer.Option(help="Re-resolve to the newest allowed versions.")] = False,
    platform: Annotated[
        str | None,
        typer.Option(
            help="Lock for another platform's image: linux/arm64 or linux/amd64 (pip's resolver with that "
            "platform's wheels, one sha256 per pin). Default: this machine's, with pip-tools."
        ),
    ] = None,
) -> None:
    """Resolve exact versions with sha256 hashes (pip-tools), as the run image's lockfile."""
    from reproexec.env.lock import compile_lock, compile_lock_for

    if platform is not None:
        result = compile_lock_for(requirements, output, platform, upgrade=upgrade)
    else:
        result = compile_lock(requirements, output, upgrade=upgrade)
    lf = result.lockfile
    console.success(f"{output}: {len(lf.requirements)} packages pinned with sha256 ({result.resolver})")
    console.info(f"lock sha256 {lf.sha256}")
