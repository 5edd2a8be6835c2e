"""Bring-your-own entrypoint: record the environment, then become the user's command.

    python -m reproexec.runtime.byo --out RUN_DIR -- python train.py --epochs 2

The host has already pinned the environment (threads, CPU dispatch level, cuBLAS, PYTHONHASHSEED)
and set REPROEXEC_RUN_DIR, REPROEXEC_DATA_DIR, REPROEXEC_SEED and REPROEXEC_METRICS. Unless the
config turned it off (REPROEXEC_SEED_HOOK=0), the start-up hook goes on PYTHONPATH here, so every
Python process of the command is seeded without a change to the user's files (runtime/seedhook.py).
The user's process replaces this one (exec): signals reach it directly, its exit code is the run's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reproexec.runtime.byo")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        sys.stderr.write("error: no entrypoint command given after --\n")
        return 2
    from reproexec.runtime import artifacts, environment

    try:
        env = environment.capture_environment()
    except ImportError:  # an image without torch: still record what there is
        env = environment.capture_without_torch()
    artifacts.write_json(args.out / "environment.json", env)
    if os.environ.get("REPROEXEC_SEED_HOOK") == "1":
        hook = str(Path(__file__).resolve().parent / "hook")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (hook, os.environ.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    try:
        os.execvp(command[0], command)
    except OSError as e:
        sys.stderr.write(f"error: cannot start entrypoint {command[0]!r}: {e}\n")
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
