"""From a validated sweep to what will run: images, manifest ids, cell ids, the sweep folder.

A cell's id is the sha256 of its resolved config, its image's content hash and its dataset's
manifest id: the three things its numbers depend on. Where it runs (`resources.cpuset`, which
`--parallel` assigns) is left out: threads are pinned, so placement does not change the numbers.
Any succeeded run in the run store with the same id is that cell's result, so running a sweep
again skips what succeeded (in this sweep or another) and reruns what failed or never finished.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reproexec.config import LoadedConfig
from reproexec.engine import Engine
from reproexec.fsutil import canonical_sha256, read_json_object
from reproexec.runs.store import RESOLVED_CONFIG
from reproexec.sweep.spec import Cell, SweepSpec

LogFn = Callable[[str], None]
SWEEP_JSON = "sweep.json"


class CellConfig(LoadedConfig):
    """A cell's config file lives in the sweep folder, but its code and its relative paths are the
    base config's: `base_dir` is the base config's folder, so the code box captures the user's work
    tree (not the sweep folder) and `data.snapshot: ../data` means what it means in the base."""

    code_dir: Path

    @property
    def base_dir(self) -> Path:
        return self.code_dir


def cell_identity(resolved: dict[str, Any], content_hash: str, manifest_id: str) -> str:
    cfg = copy.deepcopy(resolved)
    if isinstance(cfg.get("resources"), dict):
        cfg["resources"].pop("cpuset", None)
    doc = {"config": cfg, "image": content_hash, "manifest": manifest_id}
    return canonical_sha256(doc)


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    cell_id: str
    image_tag: str
    content_hash: str
    manifest_id: str


@dataclass
class SweepPlan:
    spec: SweepSpec
    cells: list[PlannedCell]
    builds: dict[str, Any]  # image tag → BuildPlan (one per distinct environment)
    manifests: dict[str, str]  # snapshot folder → manifest id
    sweep_hash: str
    reusable: dict[str, Path] = field(default_factory=dict)  # cell id → a succeeded run's folder

    @property
    def sweep_id_suffix(self) -> str:
        return f"{self.spec.file.name}_{self.sweep_hash[:6]}"


def plan_sweep(
    spec: SweepSpec, engine: Engine, *, runs_dir: Path | None = None, on_log: LogFn = lambda s: None
) -> SweepPlan:
    """Compute every image tag (no build), every manifest id (a quick check of the data), every cell id."""
    from reproexec.data.manifest import verify_snapshot
    from reproexec.env.build import plan_build

    builds: dict[str, Any] = {}
    by_env: dict[str, Any] = {}
    manifests: dict[str, str] = {}
    planned: list[PlannedCell] = []
    for cell in spec.cells:
        loaded = cell_config(spec, cell.config, spec.base.path)
        cfg = cell.config
        env_key = json.dumps([cfg.env.model_dump(mode="json"), cfg.determinism.cublas_workspace_config], sort_keys=True)
        if env_key not in by_env:
            by_env[env_key] = plan_build(loaded, engine, on_log=on_log)
            builds[by_env[env_key].tag] = by_env[env_key]
        build = by_env[env_key]
        snapshot = loaded.resolve(cfg.data.snapshot)
        manifest = loaded.resolve(cfg.data.manifest) if cfg.data.manifest else None
        data_key = f"{snapshot}|{manifest or ''}"
        if data_key not in manifests:
            on_log(f"checking dataset {snapshot}")
            report = verify_snapshot(snapshot, manifest, quick=True)  # every cell verifies fully again
            report.raise_for_problems()
            manifests[data_key] = report.manifest_id
        mid = manifests[data_key]
        planned.append(
            PlannedCell(
                cell, cell_identity(cfg.resolved(), build.content_hash, mid), build.tag, build.content_hash, mid
            )
        )
    digest = hashlib.sha256(json.dumps([spec.file.name, sorted(p.cell_id for p in planned)]).encode()).hexdigest()
    plan = SweepPlan(spec, planned, builds, {k.split("|")[0]: v for k, v in manifests.items()}, digest)
    if runs_dir is not None:
        wanted = {p.cell_id for p in planned}
        plan.reusable = {k: v for k, v in succeeded_runs(runs_dir).items() if k in wanted}
    return plan


def cell_config(spec: SweepSpec, config: Any, path: Path) -> CellConfig:
    return CellConfig(config=config, path=path, code_dir=spec.base.base_dir)


def succeeded_runs(runs_dir: Path) -> dict[str, Path]:
    """cell id → the newest succeeded run in the store with that id (run.json, config.resolved.json)."""
    from reproexec.runs.store import list_runs

    out: dict[str, Path] = {}
    for r in list_runs(runs_dir):  # oldest first: a newer run with the same id wins
        if r.data.get("status") != "succeeded":
            continue
        image, data = r.data.get("image"), r.data.get("data")
        if not isinstance(image, dict) or not isinstance(data, dict):
            continue
        resolved = read_json_object(r.path / RESOLVED_CONFIG)
        if (
            resolved is not None
            and isinstance(image.get("content_hash"), str)
            and isinstance(data.get("manifest_id"), str)
        ):
            out[cell_identity(resolved, image["content_hash"], data["manifest_id"])] = r.path
    return out


def sweep_folder(sweeps_dir: Path, plan: SweepPlan, *, create: bool, today: dt.date | None = None) -> Path:
    """`sweeps/<date>_<name>_<short hash>/`: the existing folder of the same sweep (any date) or a new one.
    The folder holds a `.gitignore` of `*`, so a sweep inside a git work tree never makes it dirty
    (cells capture the work tree's state while the sweep writes here)."""
    existing = sorted(p for p in sweeps_dir.glob(f"*_{plan.sweep_id_suffix}") if (p / SWEEP_JSON).is_file())
    if existing:
        return existing[-1]
    today = today or dt.datetime.now(dt.UTC).date()
    folder = sweeps_dir / f"{today.isoformat()}_{plan.sweep_id_suffix}"
    if create:
        from reproexec.fsutil import write_atomic

        (folder / "cells").mkdir(parents=True, exist_ok=True)
        write_atomic(folder / ".gitignore", "*\n")
    return folder


def image_folder(folder: Path, tag: str) -> Path:
    """Where a sweep keeps what it knows of one image (its recipe/, which each cell's run copies)."""
    return folder / "images" / tag.rpartition(":")[2]
