"""The local executor: each cell in its own process (`python -m reproexec.sweep.cell`), one at a time,
or N at a time with `--parallel N`, each concurrent cell on its own cpuset so cells do not fight for
cores. Threads are pinned by the config, so a cell gives the same numbers wherever it runs.

Ctrl-C (or SIGTERM) reaches the sweep only: each cell runs in its own session, and the sweep sends
every running cell exactly one SIGTERM, then waits for it to stop its container and record its run
as `interrupted`. Cells not yet started stay `pending`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reproexec.errors import ConfigError, Interrupted
from reproexec.sweep.cell import cell_paths, read_result

UpdateFn = Callable[..., None]
STOP_WAIT_S = 120  # a cell stops its container within docker's 10 s stop timeout; this is the hard limit


def cpu_slots(parallel: int, cpus: list[int] | None = None) -> list[str | None]:
    """One cpuset per concurrent cell (None = leave the config's own), splitting this process's CPUs."""
    if parallel < 1:
        raise ConfigError(f"--parallel {parallel}: must be at least 1", "pass --parallel 1 (in sequence) or more")
    if parallel == 1:
        return [None]
    cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if parallel > len(cpus):
        raise ConfigError(
            f"--parallel {parallel}: this machine gives reproexec {len(cpus)} CPU(s) ({','.join(map(str, cpus))}); "
            "each concurrent cell needs at least one of its own",
            f"pass --parallel {len(cpus)} or less",
        )
    size = len(cpus) // parallel
    return [",".join(str(c) for c in cpus[i * size : (i + 1) * size]) for i in range(parallel)]


def run_local(
    sweep_dir: Path,
    keys: list[str],
    *,
    parallel: int,
    update: UpdateFn,
    set_cpuset: Callable[[str, str | None], None],
    on_log: Callable[[str], None] = lambda s: None,
) -> bool:
    """Run the cells; returns True when interrupted (after every running cell has stopped)."""
    slots = cpu_slots(parallel)
    free = list(range(len(slots)))
    pending = list(keys)
    running: dict[str, tuple[subprocess.Popen[bytes], int, Any]] = {}
    try:
        while pending or running:
            while pending and free:
                slot, key = free.pop(0), pending.pop(0)
                set_cpuset(key, slots[slot])
                log = open(sweep_dir / "cells" / f"{key}.log", "ab")
                cell_paths(sweep_dir, key)[1].unlink(
                    missing_ok=True
                )  # a result from an earlier attempt is not this one's
                proc = subprocess.Popen(
                    [sys.executable, "-m", "reproexec.sweep.cell", str(sweep_dir), key],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                running[key] = (proc, slot, log)
                update(key, status="running", reason=None, pid=proc.pid, cpuset=slots[slot])
                on_log(f"cell {key}: started" + (f" on cpus {slots[slot]}" if slots[slot] else ""))
            done = [k for k, (p, _, _) in running.items() if p.poll() is not None]
            for key in done:
                proc, slot, log = running.pop(key)
                log.close()
                free.append(slot)
                _record(sweep_dir, key, proc.returncode, update, on_log)
            if not done:
                time.sleep(0.2)
    except (KeyboardInterrupt, Interrupted):
        on_log(f"interrupted: stopping {len(running)} running cell(s) (their containers are removed)")
        for proc, _, _ in running.values():
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for key, (proc, _, log) in running.items():
            _wait(proc, deadline)
            log.close()
            _record(sweep_dir, key, proc.returncode, update, on_log, interrupted=True)
        return True
    return False


def _record(
    sweep_dir: Path,
    key: str,
    code: int | None,
    update: UpdateFn,
    on_log: Callable[[str], None],
    *,
    interrupted: bool = False,
) -> None:
    result = read_result(sweep_dir, key)
    if result is None:
        status = "interrupted" if interrupted else "failed"
        reason = f"the cell process ended (exit code {code}) without recording a result; see cells/{key}.log"
        result = {"status": status, "reason": reason}
    update(key, **{k: result.get(k) for k in ("status", "reason", "run_id", "run_dir")}, pid=None)
    on_log(f"cell {key}: {result['status']}" + (f" ({result['reason']})" if result.get("reason") else ""))


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Wait for a stopping cell; a second Ctrl-C does not abandon it (its container must go)."""
    while True:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            return
        except (KeyboardInterrupt, Interrupted):
            continue
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait()
            return
