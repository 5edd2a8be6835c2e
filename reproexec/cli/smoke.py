"""`reproexec smoke config.yaml` (owned by the randomness-box work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def smoke(config: Annotated[Path, typer.Argument(help="config.yaml")]) -> None:
    """Run a short seeded smoke training and check its invariants."""
    raise NotImplementedError
