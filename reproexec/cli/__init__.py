"""The command line: parse, one core call, print. Nothing here does the work."""

from __future__ import annotations

import sys


def main() -> None:
    # `data verify` in its plain spellings skips Typer's start-up (see reproexec/cli/verify.py).
    from reproexec.cli.verify import fast_main

    code = fast_main(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from reproexec.cli.app import app

    app()
