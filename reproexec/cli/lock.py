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
) -> None:
    """Resolve exact versions with sha256 hashes (pip-tools), as the run image's lockfile."""
    from reproexec.env.lock import compile_lock

    result = compile_lock(requirements, output, upgrade=upgrade)
    lf = result.lockfile
    console.success(f"{output}: {len(lf.requirements)} packages pinned with sha256 ({result.resolver})")
    console.info(f"lock sha256 {lf.sha256}")
