"""Runs whose reproexec died (killed, even by SIGKILL): their containers are removed and their runs
marked `interrupted` by the next reproexec that looks (`run`, `rerun`, `runs list`).

Only this host's runs: a label names the owner process by host, boot, pid and start time
(labels.this_process), so a reused pid is not mistaken for the owner.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reproexec.engine import Engine
from reproexec.fsutil import read_json_object, write_json_atomic
from reproexec.labels import LABEL_BUILD_SERVER, LABEL_OWNER, LABEL_RUN, LABEL_RUN_DIR, owner_is_gone
from reproexec.runs.outputs import remove_tree
from reproexec.runs.store import RESERVE, RUN_JSON, STAGING, artifact_hashes, now_iso


def reap_orphans(engine: Engine) -> list[str]:
    """Remove run containers and build servers whose reproexec process is gone; say what was removed."""
    notes: list[str] = []
    for c in engine.containers(LABEL_RUN):
        owner = _gone_owner(c.labels)
        if owner is None:
            continue
        engine.remove_container(c.id)
        run_id, run_dir = c.labels.get(LABEL_RUN, ""), Path(c.labels.get(LABEL_RUN_DIR, "/nonexistent"))
        notes.append(
            f"removed the container of run {run_id}: the reproexec process that ran it (pid {owner.get('pid')}) is gone"
        )
        mark_interrupted(run_dir, c.id, owner)
    for c in engine.containers(LABEL_BUILD_SERVER):  # a build's wheel server whose build was killed
        owner = _gone_owner(c.labels)
        if owner is not None:
            engine.remove_container(c.id)
            notes.append(
                f"removed a build's wheel server: the reproexec process that started it (pid {owner.get('pid')}) is gone"
            )
    return notes


def _gone_owner(labels: Mapping[str, str]) -> dict[str, Any] | None:
    """The owner a container's label names, when that process is gone; None if it lives or the label is bad."""
    try:
        owner = json.loads(labels.get(LABEL_OWNER, ""))
    except (json.JSONDecodeError, RecursionError):
        return None
    return owner if isinstance(owner, dict) and owner_is_gone(owner) else None


def mark_interrupted(run_dir: Path, container_id: str, owner: dict[str, Any]) -> None:
    """Finish a run whose owner died: run.json says interrupted, its staging folder is deleted."""
    record = read_json_object(run_dir / RUN_JSON)
    if not record or record.get("status") != "running" or record.get("owner") != owner:
        return
    if (record.get("runtime") or {}).get("handle") not in (None, container_id):
        return
    record.update(
        status="interrupted",
        finished_at=now_iso(),
        reason=f"reproexec (pid {owner.get('pid')}) was killed; a later reproexec removed its container",
    )
    (run_dir / RESERVE).unlink(missing_ok=True)
    record["artifacts"] = artifact_hashes(run_dir)
    write_json_atomic(run_dir / RUN_JSON, record)
    remove_tree(run_dir.parent / STAGING / run_dir.name)
