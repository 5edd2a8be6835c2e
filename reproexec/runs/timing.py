"""Where a run's time goes: the host's own phases, the trainer's time, and what is neither
(run.json `timing`, shown by `runs show` and report.html)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reproexec.fsutil import read_json_object


class Clock:
    """Named phases of the host's own work, in seconds, in the order they happened."""

    def __init__(self, *, since: float | None = None) -> None:
        """since: a time.perf_counter() mark from before this clock (the command line's first import,
        reproexec.cli.STARTED): the time from it to now is recorded as the phase "startup". Not the
        process's start: a wrapper script that `exec`s reproexec shares its process with whatever the
        script did before."""
        self.phases: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self.age0 = max(0.0, self.t0 - since) if since is not None else None
        if self.age0 is not None:
            self.phases["startup"] = self.age0

    def wall(self) -> float:
        return time.perf_counter() - self.t0 + (self.age0 or 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0


def timing(clock: Clock, run_dir: Path) -> dict[str, Any]:
    """run.json `timing`: the host's phases, the trainer's own wall time (its timing.json), and what
    is neither."""
    wall = clock.wall()
    phases = [[k, round(v, 3)] for k, v in clock.phases.items()]
    phases.append(["other", round(max(0.0, wall - sum(clock.phases.values())), 3)])
    trainer = read_json_object(run_dir / "timing.json") or {}
    out: dict[str, Any] = {"phases_s": phases, "wall_s": round(wall, 3)}
    trainer_wall = trainer.get("wall_s")
    if isinstance(trainer_wall, (int, float)) and not isinstance(trainer_wall, bool):
        out["trainer_wall_s"] = round(float(trainer_wall), 3)
        out["outside_trainer_s"] = round(wall - float(trainer_wall), 3)
        out["process_overhead_s"] = round(clock.phases.get("run", 0.0) - float(trainer_wall), 3)  # start-up + exit
    return out
