"""`reproexec data snapshot|verify|demo` (owned by the data-box work)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Dataset snapshots: manifest, verify gate, demo dataset.", no_args_is_help=True)
