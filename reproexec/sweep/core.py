"""`reproexec sweep`: validate → plan (images, manifest, cell ids) → build each image once → run the
cells that have no succeeded run yet (local or Slurm) → collect → report. Returns plain data.

`sweep.json` in the sweep folder tells the truth at every moment: it is rewritten (atomically)
whenever a cell changes state, so `reproexec sweep status DIR` and a killed sweep both see where
each cell stands.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reproexec.engine import Engine
from reproexec.errors import ConfigError, Interrupted, RunError, signals_raise
from reproexec.fsutil import open_atomic, sha256_file, write_atomic, write_json_atomic
from reproexec.sweep.plan import SWEEP_JSON, SweepPlan, image_folder, plan_sweep, sweep_folder
from reproexec.sweep.spec import SweepSpec, load_sweep, resolve_sweep_path

LogFn = Callable[[str], None]
FINAL = ("succeeded", "failed", "interrupted")


@dataclass(frozen=True)
class SweepOptions:
    executor: Literal["local", "slurm"] = "local"
    parallel: int = 1
    runs_dir: Path = Path("runs")
    sweeps_dir: Path = Path("sweeps")


@dataclass
class SweepOutcome:
    sweep_dir: Path
    record: dict[str, Any]
    report: dict[str, Any]

    @property
    def status(self) -> str:
        return self.record["status"]


def prepare(path: Path, opts: SweepOptions, connect: Callable[[], Engine], on_log: LogFn = lambda s: None) -> SweepPlan:
    """Everything that can refuse the sweep, before any image is built or any cell runs: the sweep
    file and every cell, the executor, then (with the engine) each image's tag and the data."""
    if opts.executor not in ("local", "slurm"):
        raise ConfigError(f"--executor {opts.executor!r} is not known", "use --executor local or --executor slurm")
    spec = load_sweep(path)
    if opts.executor == "slurm":
        from reproexec.sweep.slurm import check_slurm

        check_slurm(spec.file.slurm)
    else:
        from reproexec.sweep.local import cpu_slots

        cpu_slots(opts.parallel)
    return plan_sweep(spec, connect(), runs_dir=opts.runs_dir, on_log=on_log)


def dry_run(plan: SweepPlan, opts: SweepOptions) -> dict[str, Any]:
    """What would run: each cell, each variant's differences from the base, the image tags."""
    spec = plan.spec
    folder = sweep_folder(opts.sweeps_dir, plan, create=False)
    return {
        "sweep": spec.file.name,
        "folder": str(folder),
        "base": str(spec.base.path),
        "metric": spec.file.metric,
        "baseline": spec.file.baseline,
        "executor": opts.executor,
        "images": sorted(plan.builds),
        "manifests": plan.manifests,
        "differences": {v: [list(d) for d in diffs] for v, diffs in spec.differences.items()},
        "cells": [
            {
                "key": p.cell.key,
                "variant": p.cell.variant,
                "seed": p.cell.seed,
                "cell_id": p.cell_id,
                "image_tag": p.image_tag,
                "reuses": str(plan.reusable[p.cell_id]) if p.cell_id in plan.reusable else None,
            }
            for p in plan.cells
        ],
    }


def run_sweep(plan: SweepPlan, opts: SweepOptions, engine: Engine, *, on_log: LogFn = lambda s: None) -> SweepOutcome:
    from reproexec.env.build import build_image, image_record
    from reproexec.env.recipe import RECIPE_DIR, write_recipe
    from reproexec.runs.launch import RUNTIME_PROTOCOL
    from reproexec.runs.store import now_iso

    spec = plan.spec
    images: dict[str, dict[str, Any]] = {}
    built = {}
    for tag, build in sorted(plan.builds.items()):  # every image before any cell: cells never race to build
        result = build_image(build, engine, on_log=on_log)
        on_log(f"image {tag} ({'cached' if result.cached else 'built'})")
        # What each cell's run records and runs: exactly this image, even if the source changes meanwhile.
        images[tag] = {**image_record(build, result), "runtime_protocol": RUNTIME_PROTOCOL, "saved": None}
        built[tag] = build

    folder = sweep_folder(opts.sweeps_dir, plan, create=True)
    for tag, build in built.items():  # each image's recipe, which every cell's run keeps (recipe.py)
        write_recipe(build.context, image_folder(folder, tag) / RECIPE_DIR)
    previous = _read_record(folder)
    record = _new_record(plan, opts, folder, previous, images)
    store = _Recorder(folder, record)
    if opts.executor == "slurm" and spec.file.slurm.image_dir:
        _save_images(plan, engine, resolve_sweep_path(spec, spec.file.slurm.image_dir), record, previous, on_log)
    _write_cell_configs(folder, plan)

    todo = []
    for p in plan.cells:
        reused = plan.reusable.get(p.cell_id)
        if reused is not None:
            store.update(
                p.cell.key, status="succeeded", reason=None, run_id=reused.name, run_dir=str(reused), reused=True
            )
        else:
            todo.append(p.cell.key)
    on_log(
        f"sweep {folder.name}: {len(plan.cells)} cells, {len(plan.cells) - len(todo)} already succeeded, {len(todo)} to run"
    )
    store.flush()

    interrupted = False
    with signals_raise(
        (signal.SIGTERM, signal.SIGHUP)
    ):  # they stop a sweep as Ctrl-C does: cells stopped, not orphaned
        try:
            if todo and opts.executor == "local":
                from reproexec.sweep.local import run_local

                interrupted = run_local(
                    folder,
                    todo,
                    parallel=opts.parallel,
                    update=store.update,
                    set_cpuset=lambda key, cpus: _write_cell_config(folder, plan, key, cpus),
                    on_log=on_log,
                )
            elif todo:
                from reproexec.sweep.slurm import submit, wait_for_jobs

                job_ids = submit(folder, todo, spec.file.slurm, f"reproexec-{spec.file.name}")
                for key, jid in job_ids.items():
                    store.update(key, status="pending", reason=None, slurm={"job_id": jid})
                record["executor"]["array_job_ids"] = sorted({j.split("_")[0] for j in job_ids.values()})
                store.flush()
                on_log(f"submitted job array {', '.join(record['executor']['array_job_ids'])} ({len(job_ids)} cells)")
                interrupted = wait_for_jobs(
                    folder, job_ids, update=store.update, poll_s=spec.file.slurm.poll_s, on_log=on_log
                )
        except (KeyboardInterrupt, Interrupted):  # between cells, before anything was started
            interrupted = True

    statuses = [c["status"] for c in record["cells"]]
    record["status"] = (
        "interrupted" if interrupted else ("succeeded" if all(s == "succeeded" for s in statuses) else "failed")
    )
    record["finished_at"] = now_iso()
    report = write_report(folder, record, spec)
    store.flush()
    return SweepOutcome(folder, record, report)


def write_report(folder: Path, record: dict[str, Any], spec: SweepSpec | None = None) -> dict[str, Any]:
    """Collect every cell's metric and curves, run the statistics, write report.html, summary.csv/.md."""
    from reproexec.sweep.report import build_report, render_csv, render_html, render_markdown

    report = build_report(record)
    write_atomic(folder / "summary.csv", render_csv(report))
    write_atomic(folder / "summary.md", render_markdown(report))
    write_atomic(folder / "report.html", render_html(report))
    record["summary"] = {
        v: {k: e.get(k) for k in ("n", "mean", "std", "ci95", "verdict")}
        for v, e in report["stats"]["variants"].items()
    }
    return report


def sweep_status(ref: str, sweeps_dir: Path) -> dict[str, Any]:
    """The sweep record with live states: Slurm's for jobs still known to it, and each cell's result
    file (a sweep that was killed left sweep.json behind the truth)."""
    from reproexec.sweep.cell import read_result

    folder = _locate(ref, sweeps_dir)
    record = _read_record(folder)
    if record is None:
        raise RunError(f"{folder / SWEEP_JSON} cannot be read", "pass a sweep folder made by `reproexec sweep`")
    states: dict[str, Any] = {}
    arrays = (record.get("executor") or {}).get("array_job_ids") or []
    if arrays and any(c.get("status") not in FINAL for c in record["cells"]):
        from reproexec.sweep.slurm import slurm_states

        try:
            states = slurm_states([str(a) for a in arrays])
        except (OSError, subprocess.SubprocessError):  # no Slurm here: the record is what there is
            states = {}
    for c in record["cells"]:
        jid = (c.get("slurm") or {}).get("job_id")
        if jid in states:
            c["slurm"] = {**c["slurm"], **{k: states[jid][k] for k in ("state", "raw_job_id", "exit_code", "source")}}
        if c.get("status") not in FINAL:
            result = read_result(folder, c["key"])
            if result is not None:
                c.update({k: result.get(k) for k in ("status", "reason", "run_id", "run_dir")})
    record["folder"] = str(folder)
    return record


def _locate(ref: str, sweeps_dir: Path) -> Path:
    for p in (Path(ref), sweeps_dir / ref):
        if (p / SWEEP_JSON).is_file():
            return p.resolve()
    known = (
        sorted(p.name for p in sweeps_dir.glob("*") if (p / SWEEP_JSON).is_file())[-5:] if sweeps_dir.is_dir() else []
    )
    raise RunError(
        f"no sweep {ref!r} (neither a folder with {SWEEP_JSON} nor one in {sweeps_dir})",
        "pass a sweep folder (printed by `reproexec sweep`), or --sweeps-dir DIR"
        + (f"; latest: {', '.join(known)}" if known else ""),
    )


def _read_record(folder: Path) -> dict[str, Any] | None:
    import json

    try:
        doc = json.loads((folder / SWEEP_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("cells"), list) else None


def _new_record(
    plan: SweepPlan, opts: SweepOptions, folder: Path, previous: dict[str, Any] | None, images: dict[str, Any]
) -> dict[str, Any]:
    from reproexec._version import version
    from reproexec.runs.store import now_iso

    spec = plan.spec
    manifest_ids = sorted(set(plan.manifests.values()))
    return {
        "schema": 1,
        "sweep_id": folder.name,
        "name": spec.file.name,
        "status": "running",
        "started_at": now_iso(),
        "finished_at": None,
        "attempt": int((previous or {}).get("attempt", 0)) + 1,
        "reproexec_version": version(),
        "sweep_file": {"path": str(spec.path), "sha256": _sha(spec.text), "text": spec.text},
        "base_config": str(spec.base.path),
        "base_dir": str(spec.base.base_dir),
        "runs_dir": str(opts.runs_dir),
        "metric": spec.file.metric,
        "goal": spec.goal,
        "baseline": spec.file.baseline,
        "variants": spec.variants,
        "seeds": spec.file.seeds,
        "differences": {v: [list(d) for d in diffs] for v, diffs in spec.differences.items()},
        "images": images,
        "image_tag": next(iter(images)) if len(images) == 1 else None,
        "manifest_ids": manifest_ids,
        "manifest_id": manifest_ids[0] if len(manifest_ids) == 1 else None,
        "executor": {
            "kind": opts.executor,
            "parallel": opts.parallel if opts.executor == "local" else None,
            "slurm": spec.file.slurm.model_dump() if opts.executor == "slurm" else None,
        },
        "cells": [
            {
                "key": p.cell.key,
                "variant": p.cell.variant,
                "seed": p.cell.seed,
                "cell_id": p.cell_id,
                "image_tag": p.image_tag,
                "manifest_id": p.manifest_id,
                "config": f"cells/{p.cell.key}.yaml",
                "status": "pending",
                "reason": None,
                "run_id": None,
                "run_dir": None,
                "reused": False,
                "slurm": None,
                "cpuset": None,
                "pid": None,
            }
            for p in plan.cells
        ],
    }


class _Recorder:
    """Applies cell updates and rewrites sweep.json (atomically) when something changed."""

    def __init__(self, folder: Path, record: dict[str, Any]) -> None:
        self.folder, self.record = folder, record
        self._cells = {c["key"]: c for c in record["cells"]}

    def update(self, key: str, **fields: Any) -> None:
        cell = self._cells[key]
        changed = {k: v for k, v in fields.items() if cell.get(k) != v}
        if changed:
            cell.update(changed)
            self.flush()

    def flush(self) -> None:
        write_json_atomic(self.folder / SWEEP_JSON, self.record)


def _write_cell_configs(folder: Path, plan: SweepPlan) -> None:
    for p in plan.cells:
        _write_cell_config(folder, plan, p.cell.key, None)


def _write_cell_config(folder: Path, plan: SweepPlan, key: str, cpuset: str | None) -> None:
    """The cell's full config (every default written out), with the cpuset --parallel gave it."""
    import yaml

    cell = next(p.cell for p in plan.cells if p.cell.key == key)
    resolved = cell.config.resolved()
    if cpuset is not None:
        resolved["resources"]["cpuset"] = cpuset
    header = f"# cell {key} of sweep {plan.spec.file.name}: variant {cell.variant!r} over {plan.spec.base.path}, seed {cell.seed}\n"
    write_atomic(folder / "cells" / f"{key}.yaml", header + yaml.safe_dump(resolved, sort_keys=True))


def _save_images(
    plan: SweepPlan,
    engine: Engine,
    image_dir: Path,
    record: dict[str, Any],
    previous: dict[str, Any] | None,
    on_log: LogFn,
) -> None:
    """`docker save` each image once into the shared folder, for nodes whose engine lacks it. A tar
    saved by an earlier attempt of this sweep is reused when its sha256 still matches."""
    image_dir.mkdir(parents=True, exist_ok=True)
    for tag, build in plan.builds.items():
        tar = image_dir / f"{build.content_hash}.tar"
        before = (((previous or {}).get("images") or {}).get(tag) or {}).get("saved") or {}
        if tar.is_file() and before.get("path") == str(tar) and sha256_file(tar) == before.get("sha256"):
            record["images"][tag]["saved"] = before
            continue
        on_log(f"saving image {tag} to {tar} (docker save, once per sweep)")
        with open_atomic(tar) as f:  # streamed: a run image is gigabytes
            engine.save(tag, f)
        record["images"][tag]["saved"] = {"path": str(tar), "sha256": sha256_file(tar)}


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
