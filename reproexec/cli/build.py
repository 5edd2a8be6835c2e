"""`reproexec build config.yaml [--gpu] [--dry-run]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reproexec import console


def build(
    config: Annotated[Path, typer.Argument(help="config.yaml")],
    gpu: Annotated[bool, typer.Option("--gpu", help="Build the CUDA image (env.flavour must be cuda).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the Dockerfile and the hash inputs; build nothing.")
    ] = False,
) -> None:
    """Render the pinned Dockerfile and build the run image, tagged by its content hash."""
    from reproexec.config import load_config
    from reproexec.engine import connect
    from reproexec.env.build import build_image, plan_build

    loaded = load_config(config)
    engine = connect()
    plan = plan_build(loaded, engine, gpu=gpu, on_log=console.info)
    if dry_run:
        console.data(plan.dockerfile)
        console.data("# hash inputs\n" + json.dumps(plan.inputs, indent=2, sort_keys=True))
        console.data(f"# tag\n{plan.tag}")
        return
    result = build_image(plan, engine, on_log=console.info)
    if result.cached:
        console.success(f"{result.tag} exists: same inputs, nothing to build")
    else:
        console.success(f"built {result.tag}")
    console.key_values([("tag", result.tag), ("image id", result.image_id)])
