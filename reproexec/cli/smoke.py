"""`reproexec smoke config.yaml`: a short seeded training on a small subset, with invariant checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from reproexec import console


def smoke(
    config: Annotated[Path, typer.Argument(help="config.yaml")],
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Optimizer steps (default: smoke.steps).")] = None,
    subset: Annotated[
        int | None, typer.Option("--subset", min=1, help="Training images (default: smoke.subset).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the smoke run (default: a new temp folder).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
) -> None:
    """Run a short seeded smoke training locally (no Docker) and check its invariants.

    Passes when the mean loss of the last 5 steps is at least smoke.min_loss_drop (relative) below
    the mean of the first 5, nothing is NaN/inf, and every smoke.ranges metric is within its bounds.
    """
    from reproexec.config import load_config
    from reproexec.runs.smoke import run_smoke, smoke_config

    loaded = load_config(config)
    total = smoke_config(loaded.config, steps=steps).smoke.steps
    with console.progress(f"smoke {loaded.config.name}", total, unit="steps") as advance:
        done = {"step": 0}

        def on_event(event: dict[str, Any]) -> None:
            if event.get("event") == "step":
                advance(int(event["step"]) - done["step"])
                done["step"] = int(event["step"])

        result = run_smoke(loaded, steps=steps, subset=subset, out_dir=out, device=device, on_event=on_event)
    console.success(
        f"smoke passed: loss {result['loss_first_mean']:.4f} → {result['loss_last_mean']:.4f} "
        f"({result['loss_drop']:.1%} drop, need {result['min_loss_drop']:.1%})"
    )
    console.key_values(
        [
            ("steps", result["steps"]),
            ("val_acc", f"{result['val_acc']:.4f}"),
            ("val_loss", f"{result['val_loss']:.4f}"),
            ("loss_sum_first5", repr(result["loss_sum_first5"])),
            ("weights_sha256", result["weights_sha256"]),
            ("run folder", result["run_dir"]),
        ]
    )
