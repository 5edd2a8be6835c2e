"""Options several commands share, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# The run store: --runs-dir, or REPROEXEC_RUNS (runs/store.py RUNS_DIR_ENV), default ./runs.
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Run store.", envvar="REPROEXEC_RUNS")]
SignedBy = Annotated[
    str | None,
    typer.Option(
        "--signed-by",
        help="Require the run to be signed by this key id (the sha256 of the signer's signing-key.pub; "
        "`reproexec keys show` on their machine prints it).",
    ),
]
