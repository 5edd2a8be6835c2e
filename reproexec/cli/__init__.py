"""The command line: parse, one core call, print. Nothing here does the work."""

from __future__ import annotations


def main() -> None:
    from reproexec.cli.app import app

    app()
