"""The command line: parse, one core call, print. Nothing here does the work."""

from __future__ import annotations

import time

# When the command line's own code began (imported first by the `reproexec` script): run.json's
# timing phase "startup" is measured from here, whatever ran in the process before (a wrapper's exec).
STARTED = time.perf_counter()


def main() -> None:
    from reproexec.cli.app import app

    app()
