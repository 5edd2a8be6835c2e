"""`reproexec verify RUN-ID | FOLDER | BUNDLE [--key PUBKEY | --signed-by KEYID] [--json]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reproexec import console
from reproexec.cli.options import RunsDir, SignedBy


def verify(
    ref: Annotated[str, typer.Argument(help="Run id, run folder, or bundle from `reproexec export`.")],
    key: Annotated[Path | None, typer.Option("--key", help="Check the signature with this public key file.")] = None,
    signed_by: SignedBy = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Check a run in seconds, without Docker or training: every file's sha256, its attestation against
    the files and run.json, its records against each other, and its signature. Exit 0 only when all hold."""
    from reproexec.errors import AttestationError
    from reproexec.runs.attest import verify_ref

    result = verify_ref(ref, runs_dir.resolve(), key_path=key, signed_by=signed_by)
    if as_json:
        console.data(json.dumps(result.to_dict(), indent=2))
    else:
        console.verification(result)
    problem = result.first_problem
    if problem is not None:
        raise AttestationError(f"run {result.run_id} does not verify: {problem.what}: {problem.detail}")
