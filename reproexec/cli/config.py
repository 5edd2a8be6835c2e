"""`reproexec config show|schema`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reproexec import console

app = typer.Typer(help="Inspect configs: the resolved form and the JSON Schema.", no_args_is_help=True)


@app.command("show")
def show(
    path: Annotated[Path, typer.Argument(help="config.yaml to validate and resolve.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Validate CONFIG and print it with every default written out."""
    from reproexec.config import load_config

    resolved = load_config(path).config.resolved()
    if as_json:
        console.json_data(resolved)
    else:
        import yaml

        console.data(yaml.safe_dump(resolved, sort_keys=False, default_flow_style=False))


@app.command("schema")
def schema() -> None:
    """Print the config's JSON Schema (for editor completion and validation)."""
    from reproexec.config import config_schema

    console.json_data(config_schema())
