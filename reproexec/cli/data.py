"""`reproexec data snapshot|verify|demo`: parse, one core call, print.

The manifest id goes to stdout (a script can capture it); everything else goes to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reproexec import console

app = typer.Typer(help="Dataset snapshots: manifest, verify gate, demo dataset.", no_args_is_help=True)


@app.command("snapshot")
def snapshot(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="Dataset folder to snapshot.")],
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="GLOB",
            help="Leave out matching files/folders (repeatable). A glob with '/' matches the relative "
            "path, one without matches a name at any depth. Recorded in the manifest.",
        ),
    ] = None,
) -> None:
    """Hash every file in DIR; write DIR/manifest.json and DIR/SHA256SUMS; print the manifest id."""
    from reproexec.data.manifest import snapshot as take_snapshot

    result = take_snapshot(folder, excludes=tuple(exclude or ()), progress=console.progress)
    m = result.manifest
    excluded = f", excluding {', '.join(m.excludes)}" if m.excludes else ""
    console.success(
        f"snapshot of {folder}: {m.count:,} files, {console.size(m.total_bytes)}{excluded}; "
        f"wrote {result.manifest_path.name} and {result.sums_path.name}"
    )
    console.data(result.manifest_id)


@app.command("verify")
def verify(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="Dataset folder to check.")],
    manifest: Annotated[
        Path | None,
        typer.Option("--manifest", metavar="FILE", help="Manifest to check against (default: DIR/manifest.json)."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Compare file names and sizes only; content is NOT checked.")
    ] = False,
) -> None:
    """Check DIR against its manifest: every file's sha256 (sizes only with --quick).

    Lists every missing, resized, changed, renamed and unexpected file and exits 4 on any.
    """
    from reproexec.data.manifest import verify_snapshot

    report = verify_snapshot(folder, manifest, quick=quick, progress=console.progress)
    report.raise_for_problems()
    if quick:
        console.warn("--quick compared names and sizes only; file contents were NOT checked (run without --quick)")
        console.success(f"{folder}: {report.checked_files:,} files present with the sizes in the manifest")
    else:
        console.success(
            f"{folder}: {report.checked_files:,} files, {console.size(report.checked_bytes)} match the manifest (sha256)"
        )
    console.key_values(
        [
            ("manifest id", report.manifest_id),
            ("files", f"{report.checked_files:,}"),
            ("bytes", f"{report.checked_bytes:,}" if not quick else "not read (--quick)"),
            ("checked", "sizes only (content not checked)" if quick else "sha256 of every file"),
        ]
    )


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="New folder for the demo snapshot.")],
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of each digit held out for val.")] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the stratified train/val split.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it holds a previous snapshot.")] = False,
) -> None:
    """Write scikit-learn's 1,797 handwritten digits as a PNG image folder (train/ and val/) and snapshot it."""
    from reproexec.data.demo import write_digits_demo

    result = write_digits_demo(out, val_fraction=val_fraction, seed=seed, force=force)
    console.success(
        f"demo dataset in {out}: {result.manifest.count:,} PNG images (train/ and val/, digits 0-9), "
        f"{console.size(result.manifest.total_bytes)}"
    )
    console.data(result.manifest_id)
