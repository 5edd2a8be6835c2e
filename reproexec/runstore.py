"""The run store: one folder per run, and `run.json` that tells the truth about it.

A run folder is created only when everything before training succeeded (config, image, dataset),
with an exclusive mkdir, so two runs never share one. `run.json` is always replaced atomically:
it says `running` from the start and `succeeded | failed | interrupted` at the end, so a killed
process leaves a run that says `running` — and `list_runs` shows it as `interrupted (stale)` once
the process that owned it is gone. Nothing here ever touches another run's folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproexec.errors import RunError

RUN_JSON = "run.json"
RUNS_DIR_ENV = "REPROEXEC_RUNS"
_ID_PART = re.compile(r"[^A-Za-z0-9.-]+")
FINAL = ("succeeded", "failed", "interrupted")


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "runs")).expanduser().resolve()


def make_run_id(arch: str, name: str, fingerprint: str, today: dt.date | None = None) -> str:
    """`2026-11-24_resnet18_digits_a1b2c3`: date, model, config name, short hash."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    clean = [_ID_PART.sub("-", p).strip("-") or "x" for p in (arch, name)]
    return f"{today.isoformat()}_{clean[0]}_{clean[1]}_{fingerprint[:6]}"


def create_run_dir(runs_dir: Path, run_id: str) -> tuple[str, Path]:
    """Exclusively create the run's folder; a second run with the same id gets a -2, -3, ... suffix."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = run_id if n == 1 else f"{run_id}-{n}"
        path = runs_dir / candidate
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return candidate, path
    raise RunError(f"too many runs named {run_id} in {runs_dir}", "pass --name to tell them apart")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def artifact_hashes(run_dir: Path) -> dict[str, str]:
    """sha256 of every file in the run folder except run.json itself (which holds these)."""
    out: dict[str, str] = {}
    for p in sorted(run_dir.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.name != RUN_JSON and not p.name.startswith("."):
            with open(p, "rb") as f:
                out[p.relative_to(run_dir).as_posix()] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    path: Path
    data: dict[str, Any]

    @property
    def status(self) -> str:
        status = self.data.get("status", "unknown")
        if status == "running" and self._owner_gone():
            return "interrupted (stale)"
        return status

    def _owner_gone(self) -> bool:
        owner = self.data.get("owner") or {}
        if owner.get("host") != socket.gethostname() or not owner.get("pid"):
            return False  # cannot tell from here
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def load_run(ref: str, runs_dir: Path | None = None) -> RunRecord:
    """A run by id (in the store) or by folder path."""
    runs_dir = runs_dir or default_runs_dir()
    candidates = [Path(ref), runs_dir / ref]
    for path in candidates:
        if (path / RUN_JSON).is_file():
            try:
                data = json.loads((path / RUN_JSON).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise RunError(f"{path / RUN_JSON} cannot be read: {e}") from None
            return RunRecord(run_id=data.get("run_id", path.name), path=path.resolve(), data=data)
    known = [r.run_id for r in list_runs(runs_dir)][-5:]
    raise RunError(
        f"no run {ref!r} in {runs_dir}",
        "pass a run id from `reproexec runs list` (or --runs-dir DIR, or a run folder's path)"
        + (f"; latest: {', '.join(known)}" if known else ""),
    )


def list_runs(runs_dir: Path | None = None) -> list[RunRecord]:
    runs_dir = runs_dir or default_runs_dir()
    out = []
    if runs_dir.is_dir():
        for path in sorted(runs_dir.iterdir()):
            f = path / RUN_JSON
            if f.is_file():
                try:
                    data = json.loads(f.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError):
                    data = {"status": "unreadable run.json"}
                out.append(RunRecord(run_id=data.get("run_id", path.name), path=path, data=data))
    return sorted(out, key=lambda r: (r.data.get("started_at", ""), r.run_id))
