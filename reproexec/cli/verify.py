"""`reproexec data verify`: the command body, and a way in that does not start Typer.

`verify()` is the whole command (one core call, then print); the Typer command in `cli/data.py`
calls it, and so does `fast_main()`.

Why a second way in: verify is the gate before every run and is held to "no slower than
`find | xargs -P$(nproc) sha256sum`" (benchmarks/bench_verify.py). Typer 0.29 coerces every
parameter through a pydantic TypeAdapter, so any Typer command first spends ~0.1 s importing
typer, click and pydantic: a third of verifying 20,000 small files on 2 cores. `parse()` accepts
only the plain spellings of this one command:

    data verify DIR [--manifest FILE | --manifest=FILE] [--quick]   (options in any order)

and returns None for anything else (--help, unknown, abbreviated or repeated options, `--`, an
option where DIR should be, no DIR), which Typer then parses, so usage errors and help stay
Typer's. tests/unit/test_cli_verify.py checks that both parsers give the same arguments for
the accepted spellings and that both ways in print the same bytes and exit codes.

No Typer, click or pydantic is imported here (the same test checks that).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NamedTuple


class VerifyArgs(NamedTuple):
    folder: Path
    manifest: Path | None
    quick: bool


def verify(folder: Path, manifest: Path | None, quick: bool) -> None:
    """Check DIR against its manifest and print the outcome; a mismatch raises DataError."""
    from reproexec.data.manifest import verify_snapshot

    report = verify_snapshot(folder, manifest, quick=quick, progress=progress_factory(), meanwhile=_load_console)
    report.raise_for_problems()
    from reproexec import console

    if quick:
        console.warn("--quick compared names and sizes only; file contents were NOT checked (run without --quick)")
        console.success(f"{folder}: {report.checked_files:,} files present with the sizes in the manifest")
    else:
        console.success(f"{folder}: {report.checked_files:,} files, {size(report.checked_bytes)} match the manifest (sha256)")
    console.key_values(
        [
            ("manifest id", report.manifest_id),
            ("files", f"{report.checked_files:,}"),
            ("bytes", f"{report.checked_bytes:,}" if not quick else "not read (--quick)"),
            ("checked", "sizes only (content not checked)" if quick else "sha256 of every file"),
        ]
    )


def parse(argv: list[str]) -> VerifyArgs | None:
    """The arguments of `data verify ...` in one of the plain spellings; None for anything else."""
    if argv[:2] != ["data", "verify"]:
        return None
    folder: str | None = None
    manifest: str | None = None
    quick = False
    rest = iter(argv[2:])
    for tok in rest:
        if tok == "--quick" and not quick:
            quick = True
        elif tok == "--manifest" and manifest is None:
            manifest = next(rest, None)
            if not manifest or manifest.startswith("-"):
                return None
        elif tok.startswith("--manifest=") and manifest is None:
            manifest = tok[len("--manifest=") :]
            if not manifest:
                return None
        elif tok and not tok.startswith("-") and folder is None:
            folder = tok
        else:
            return None
    if folder is None:
        return None
    return VerifyArgs(Path(folder), Path(manifest) if manifest is not None else None, quick)


def fast_main(argv: list[str]) -> int | None:
    """Run `data verify` without Typer when `parse` accepts argv; the exit code, or None if not."""
    args = parse(argv)
    if args is None:
        return None
    from reproexec.errors import ReproexecError

    try:
        verify(*args)
    except ReproexecError as e:  # what the Typer app's root group does with it
        from reproexec import console

        console.error(str(e))
        return e.exit_code
    except KeyboardInterrupt:  # what Typer does with it: exit 130, nothing printed
        return 130
    return 0


def progress_factory() -> Any:
    """console.progress on a terminal; None otherwise (no bar to draw, so no rich.progress import
    and no hidden bar updated per batch).

    Rich calls stderr a terminal only if it is a TTY or FORCE_COLOR / TTY_COMPATIBLE=1 say so;
    without any of these, rich (~20 ms to import) is not loaded here but while the files hash.
    """
    if not (sys.stderr.isatty() or os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1"):
        return None
    from reproexec import console

    return console.progress if console.err.is_terminal else None


def _load_console() -> None:
    from reproexec import console  # noqa: F401  (imported for its cost, while worker processes hash)


def size(n: float) -> str:
    """1,234 bytes / 12.3 KB / 4.5 MB / 6.7 GB (decimal units, as `ls -h --si` and disk vendors)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{int(n):,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover
