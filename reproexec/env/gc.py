"""`reproexec gc`: the disk reproexec's images take, and giving back what no run needs.

reproexec's images are the run images (`reproexec-env:<hash>`), the bring-your-own code images
(`reproexec-code:<hash>`) and what their builds leave behind: a build that failed or was stopped
leaves its finished steps as untagged images (up to the ~6 GB environment layer for the demo). A
run in the store refers to its run image and, for a bring-your-own run, its code image; those are
never removed. The rest is removed, newest first kept with --keep-last N. Images loaded from
bundles (`reproexec-bundle:<hash>`) are run images too.

Base root filesystems kept in reproexec's cache (`rootfs/<sha256>.tar.gz`) are what a run needs to
be rebuilt from its recipe on another engine (or here, after its image was removed) and what
`export --with-base` carries: one that a run in the store was built on, or that a base image on
this engine was made from, is kept; the others are removed.
Left-over build stages are found by the label every image built on a `reproexec base bootstrap`
base inherits; stages of builds on other bases are left alone (`docker image prune` takes them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from reproexec.engine import Engine
from reproexec.labels import BUNDLE_REPOSITORY, CODE_REPOSITORY, ENV_REPOSITORY, LABEL_ROOTFS, LABEL_SUITE
from reproexec.runs.store import list_runs

REPOSITORIES = (ENV_REPOSITORY, CODE_REPOSITORY, BUNDLE_REPOSITORY)


@dataclass(frozen=True)
class GcItem:
    ref: str  # the tag, the id of an untagged build stage, or a cached file's path
    id: str
    size: int
    created: int
    why: str
    kind: str = "image"  # or "rootfs": a base's root filesystem in reproexec's cache


@dataclass
class GcPlan:
    remove: list[GcItem] = field(default_factory=list)
    keep: list[GcItem] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(i.size for i in self.remove)


def referenced_images(runs_dir: Path) -> set[str]:
    """Every image tag and id a run in the store refers to."""
    refs: set[str] = set()
    for run in list_runs(runs_dir):
        image = run.data.get("image") if isinstance(run.data.get("image"), dict) else {}
        runtime = run.data.get("runtime") if isinstance(run.data.get("runtime"), dict) else {}
        refs |= {v for v in (image.get("tag"), image.get("id"), runtime.get("image")) if isinstance(v, str)}
    return refs


def referenced_rootfs(runs_dir: Path) -> set[str]:
    """The sha256 of every base rootfs a run in the store was built on (its base's one layer)."""
    out: set[str] = set()
    for run in list_runs(runs_dir):
        image = run.data.get("image") if isinstance(run.data.get("image"), dict) else {}
        base = image.get("base") if isinstance(image.get("base"), dict) else {}
        layers = base.get("layers") if isinstance(base.get("layers"), list) else []
        if len(layers) == 1 and isinstance(layers[0], str):
            out.add(layers[0].removeprefix("sha256:"))
    return out


def plan_gc(engine: Engine, runs_dir: Path, *, keep_last: int = 0) -> GcPlan:
    refs = referenced_images(runs_dir)
    plan = GcPlan()
    _plan_rootfs(engine, runs_dir, plan)
    tagged = [i for repo in REPOSITORIES for i in engine.list_images(repository=repo)]
    unused: list[GcItem] = []
    for info in tagged:
        for tag in info.tags:
            if not tag.startswith(tuple(f"{r}:" for r in REPOSITORIES)):
                continue
            item = GcItem(tag, info.id, info.size, info.created, "")
            if tag in refs or info.id in refs:
                plan.keep.append(_why(item, "a run in the store uses it"))
            else:
                unused.append(item)
    unused.sort(key=lambda i: i.created, reverse=True)
    plan.keep += [_why(i, f"one of the {keep_last} newest (--keep-last)") for i in unused[:keep_last]]
    plan.remove += [_why(i, "no run in the store uses it") for i in unused[keep_last:]]
    for info in engine.list_images(dangling=True, label=LABEL_SUITE):
        plan.remove.append(GcItem(info.id, info.id, info.size, info.created, "an untagged build stage"))
    return plan


def _plan_rootfs(engine: Engine, runs_dir: Path, plan: GcPlan) -> None:
    from reproexec.env.base import rootfs_store

    files = sorted(rootfs_store().glob("*.tar.gz")) if rootfs_store().is_dir() else []
    if not files:
        return
    used_by_runs = referenced_rootfs(runs_dir)
    bases = {i.labels.get(LABEL_ROOTFS) for i in engine.list_images(label=LABEL_ROOTFS)}
    for f in files:
        sha, st = f.name.removesuffix(".tar.gz"), f.stat()
        item = GcItem(str(f), sha, st.st_size, int(st.st_mtime), "", kind="rootfs")
        if sha in used_by_runs:
            plan.keep.append(
                _why(item, "base rootfs a run in the store was built on (rerun from its recipe, --with-base)")
            )
        elif sha in bases:
            plan.keep.append(_why(item, "base rootfs of a base image on this engine (export --with-base)"))
        else:
            plan.remove.append(_why(item, "base rootfs no run and no base image uses"))


def apply_gc(engine: Engine, plan: GcPlan) -> list[str]:
    """Remove what the plan says; returns what could not be removed (e.g. a container uses it)."""
    problems = []
    for item in plan.remove:
        try:
            if item.kind == "rootfs":
                Path(item.ref).unlink(missing_ok=True)
            else:
                engine.remove_image(item.ref, force=False)
        except Exception as e:  # the engine's message says why (in use, has children, ...)
            problems.append(f"{item.ref}: {e}")
    return problems


def _why(item: GcItem, why: str) -> GcItem:
    return dataclasses.replace(item, why=why)
