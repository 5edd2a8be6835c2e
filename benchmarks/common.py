"""What every benchmark script here needs: the checkout, the CLI, a timed command, a median, a JSON file.

Standard library only, so a script that imports it still runs on a bare machine (cpu_pins.py on the
GPU box). Scripts import it as `from common import ...`: Python puts a script's own folder first on
sys.path.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The `reproexec` entry point a user runs (its start-up is part of what is measured).
CLI = str(Path(sys.executable).with_name("reproexec"))
# `python -m reproexec`: reproexec from the current folder or PYTHONPATH, to time another checkout.
CLI_MODULE = [sys.executable, "-m", "reproexec"]


@dataclass(frozen=True)
class Timed:
    wall_s: float
    cpu_s: float  # user + system of the command and every child it waited for
    stdout: str
    stderr: str


def timed(cmd: list[str] | str, *, cwd: Path | str | None = None, env: dict[str, str] | None = None) -> Timed:
    """Run cmd (a string runs in a shell) to its end, output captured, and time it. A failed command
    ends the benchmark with its exit code, the command and the end of its output: a timing of a
    failure is no figure."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, cwd=cwd, env=env)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        where = f" in {cwd}" if cwd else ""
        sys.exit(f"failed ({r.returncode}){where}: {shown}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return Timed(wall, cpu, r.stdout, r.stderr)


def median(values: Iterable[float]) -> float:
    """statistics.median, and NaN (not an exception) when nothing was measured."""
    values = list(values)
    return statistics.median(values) if values else math.nan


def write_json(path: Path | str, data: object, *, indent: int = 2, sort_keys: bool = False) -> None:
    """A result file: JSON with a final newline."""
    Path(path).write_text(json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")
