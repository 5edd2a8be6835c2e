"""Run bundles: one tar(.gz) holding a run folder (and optionally its image) for another machine.

A bundle from elsewhere is untrusted input. Importing refuses, before anything is written outside
a private temporary folder: absolute names, `..`, names outside the run's one top folder, every
link, device, fifo or other non-regular member (no "safe" links: filter bypasses were still being
fixed in 2025), oversized members, too many members, and files whose sha256 differs from the run's
own record. Only then is the folder moved into the run store, and never over an existing run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from reproexec.engine import Engine
from reproexec.errors import RunError
from reproexec.runstore import RUN_JSON, RunRecord, load_run

IMAGE_MEMBER = "image.tar"
MAX_MEMBER_BYTES = int(os.environ.get("REPROEXEC_BUNDLE_MAX_MEMBER", 2 * 1024**3))  # run files
MAX_IMAGE_BYTES = int(os.environ.get("REPROEXEC_BUNDLE_MAX_IMAGE", 32 * 1024**3))  # image.tar
MAX_MEMBERS = 100_000


@dataclass(frozen=True)
class ExportResult:
    path: Path
    run_id: str
    files: int
    bytes: int
    with_image: bool


def export_run(record: RunRecord, out: Path, *, engine: Engine | None = None, with_image: bool = False) -> ExportResult:
    if record.status in ("running",):
        raise RunError(f"run {record.run_id} is still running", "wait for it to finish, then export")
    mode = "w:gz" if out.name.endswith((".tar.gz", ".tgz")) else "w"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    files = total = 0
    image_file = None
    try:
        if with_image:
            image = (record.data.get("image") or {}).get("tag")
            if not image or engine is None:
                raise RunError(f"run {record.run_id} has no image to save (local runtime?)", "export without --with-image")
            image_file = tempfile.NamedTemporaryFile(dir=out.parent, prefix=".image-", suffix=".tar", delete=False)
            with image_file:
                engine.save(image, image_file)  # type: ignore[attr-defined]
        with tarfile.open(tmp, mode, format=tarfile.PAX_FORMAT) as tar:
            for p in sorted(record.path.rglob("*")):
                if p.is_symlink() or not p.is_file() or p.name.startswith("."):
                    continue
                arc = f"{record.run_id}/{p.relative_to(record.path).as_posix()}"
                tar.add(p, arcname=arc, recursive=False, filter=_normalize)
                files += 1
                total += p.stat().st_size
            if image_file is not None:
                tar.add(image_file.name, arcname=f"{record.run_id}/{IMAGE_MEMBER}", filter=_normalize)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        if image_file is not None:
            Path(image_file.name).unlink(missing_ok=True)
    return ExportResult(path=out, run_id=record.run_id, files=files, bytes=total, with_image=with_image)


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def check_members(members: list[tarfile.TarInfo], source: str) -> str:
    """The bundle's run id if every member is safe; RunError listing every unsafe member otherwise."""
    problems: list[str] = []
    tops: set[str] = set()
    if len(members) > MAX_MEMBERS:
        problems.append(f"{len(members)} members (more than {MAX_MEMBERS})")
    for m in members:
        name = m.name
        p = PurePosixPath(name)
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\\" in name:
            problems.append(f"{name!r}: absolute path")
            continue
        if ".." in p.parts:
            problems.append(f"{name!r}: '..' leaves the run folder")
            continue
        if "\0" in name or not p.parts:
            problems.append(f"{name!r}: empty or invalid name")
            continue
        if not (m.isreg() or m.isdir()):
            kind = "link" if (m.issym() or m.islnk()) else "device, fifo or special file"
            target = f" -> {m.linkname!r}" if m.linkname else ""
            problems.append(f"{name!r}: {kind}{target} (bundles hold plain files only)")
            continue
        tops.add(p.parts[0])
        limit = MAX_IMAGE_BYTES if p.name == IMAGE_MEMBER and len(p.parts) == 2 else MAX_MEMBER_BYTES
        if m.size > limit:
            problems.append(f"{name!r}: {m.size} bytes (limit {limit})")
    if len(tops) > 1:
        problems.append(f"members under {len(tops)} top folders ({', '.join(sorted(tops)[:3])}); a bundle holds one run")
    if problems:
        raise RunError(
            f"bundle {source} is refused: it is not a safe run bundle",
            "only import bundles made by `reproexec export`; ask the sender for a fresh one",
            details=problems[:20],
        )
    if not tops:
        raise RunError(f"bundle {source} is empty", "export the run again")
    return next(iter(tops))


def import_bundle(
    bundle: Path, runs_dir: Path, load_image: Callable[[IO[bytes]], object] | None = None
) -> tuple[RunRecord, bool]:
    """Check and unpack a bundle into the run store; return the run and whether it held an image.

    A saved image is streamed to `load_image` (docker load) straight from the bundle, never copied
    into the run store; without `load_image` it is skipped."""
    if not bundle.is_file():
        raise RunError(f"bundle {bundle} does not exist", "pass the .tar.gz written by `reproexec export`")
    runs_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(bundle, "r:*") as tar:
            members = tar.getmembers()
            run_id = check_members(members, str(bundle))
            dest = runs_dir / run_id
            image_member = next((m for m in members if m.name == f"{run_id}/{IMAGE_MEMBER}"), None)
            if not dest.exists():
                _unpack(tar, [m for m in members if m is not image_member], run_id, runs_dir, dest, str(bundle))
            # Only a bundle whose run checked out gets its image loaded.
            if image_member is not None and load_image is not None:
                src = tar.extractfile(image_member)
                assert src is not None
                load_image(src)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise RunError(f"bundle {bundle} cannot be read: {e}", "the file is damaged or not a tar archive") from None
    return load_run(str(dest)), image_member is not None


def _unpack(tar: tarfile.TarFile, members: list[tarfile.TarInfo], run_id: str, runs_dir: Path, dest: Path, source: str) -> None:
    """Unpack into a private staging folder, check every sha256, then move into place at once."""
    staging = Path(tempfile.mkdtemp(dir=runs_dir, prefix=".import-"))
    try:
        for m in members:
            target = staging / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with open(target, "xb") as f:  # "x": never through anything already there
                shutil.copyfileobj(src, f, 1 << 20)
        _check_artifacts(staging / run_id, source)
        os.replace(staging / run_id, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_artifacts(folder: Path, source: str) -> None:
    try:
        record = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise RunError(f"bundle {source} has no readable {RUN_JSON}", "export the run again") from None
    expected: dict[str, str] = record.get("artifacts") or {}
    bad = []
    for rel, digest in sorted(expected.items()):
        p = folder / rel
        if not p.is_file():
            bad.append(f"{rel}: missing")
            continue
        with open(p, "rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() != digest:
                bad.append(f"{rel}: sha256 differs from run.json")
    if bad:
        raise RunError(f"bundle {source} does not match its own run.json", "the bundle was altered; do not use it", details=bad[:20])
