"""run.json of the run being executed, as a typed value: what the run's phases fill in, written
atomically whenever it changes (from `running` to how the run ended).

A run folder read back (from the store or a bundle) is `store.RunRecord`: a validated dict, since it
may come from another release or from elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reproexec._version import version
from reproexec.fsutil import write_json_atomic
from reproexec.labels import this_process
from reproexec.runs.launch import container_user
from reproexec.runs.store import RUN_JSON, RUN_SCHEMA, now_iso


@dataclass
class RuntimeRecord:
    kind: str  # docker | local
    gpu: bool
    user: str  # uid:gid of the run's process
    container: str | None = None
    handle: str | None = None  # the container (or process) once started
    image: str | None = None  # the image it ran in (the run image, or its code image)


@dataclass
class RunJson:
    """The fields of run.json, in one place (see README: The run folder)."""

    started_at: str
    reproexec_version: str
    owner: dict[str, Any]
    config: dict[str, Any]
    code: dict[str, Any]
    data: dict[str, Any]
    image: dict[str, Any] | None
    runtime: RuntimeRecord
    files_owner: str  # uid:gid the run folder belongs to
    randomness: dict[str, Any]
    resources: dict[str, Any]
    weights: dict[str, Any] | None
    entrypoint: list[str] | None
    fingerprint: str
    run_id: str | None = None  # set when the folder is claimed
    schema: int = RUN_SCHEMA
    status: str = "running"
    reason: str | None = None
    finished_at: str | None = None
    command: list[str] | None = None  # a BYO command as its process saw it
    log: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    exit: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    metrics_problem: str | None = None
    environment: dict[str, Any] | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    report_error: str | None = None
    platform: dict[str, Any] | None = None  # arch, numerics class, emulation (runs/arch.py)

    # written only once they are set, as before this was a type
    _OPTIONAL = ("command", "metrics_problem", "environment", "report_error")

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        return {k: v for k, v in doc.items() if not (k in self._OPTIONAL and v is None)}

    def write(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / RUN_JSON, self.to_json())

    def end(self, status: str, reason: str | None) -> None:
        self.status, self.reason, self.finished_at = status, reason, now_iso()


def new_record(prep: Any, *, runtime: str, gpu: bool, user: str | None) -> RunJson:
    """run.json as it is when the run folder is claimed: what went in, status `running`."""
    cfg = prep.loaded.config
    return RunJson(
        started_at=now_iso(),
        reproexec_version=version(),
        owner=this_process(),
        config={
            "path": str(prep.loaded.path),
            "name": cfg.name,
            "sha256": hashlib.sha256(prep.loaded.path.read_bytes()).hexdigest(),
        },
        code=prep.code.record(),
        data={
            "snapshot": str(prep.data_dir),
            "manifest_id": prep.manifest_id,
            "files": prep.manifest.count,
            "bytes": prep.manifest.total_bytes,
        },
        image=prep.image,
        runtime=RuntimeRecord(kind=runtime, gpu=gpu, user=container_user(user)),
        files_owner=user or f"{os.getuid()}:{os.getgid()}",
        randomness={"seed": cfg.seed, "determinism": cfg.determinism.model_dump(), "environment": prep.env},
        resources=cfg.resources.model_dump(),
        weights={"path": str(prep.weights), "sha256": cfg.model.weights.sha256} if prep.weights else None,
        entrypoint=cfg.entrypoint,
        fingerprint=prep.fingerprint,
        platform=prep.platform.record(),
    )
