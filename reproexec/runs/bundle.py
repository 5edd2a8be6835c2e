"""Run bundles: one tar(.gz) holding a run folder (and optionally its image) for another machine.

A bundle holds exactly what its run.json lists (plus run.json and, with --with-image, the image).
A bundle from elsewhere is untrusted input. Importing refuses, before anything is written outside
a private temporary folder: absolute names, `..`, names outside the run's one top folder, every
link, device, fifo or other non-regular member (no "safe" links: filter bypasses were still being
fixed in 2025), oversized members, too many members or bytes for the limits and the free disk, a
run.json that is not valid (types, ids, paths, schema), files it does not list, and files whose
sha256 differs from it. Only then is the folder moved into the run store, never over another run.
An image is loaded without the tags it carries and tagged only once it proved to be the recorded one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from reproexec.engine import Engine
from reproexec.errors import AttestationError, RunError
from reproexec.fsutil import cache_dir, is_disk_full, piped, relpath_problem, sha256_file
from reproexec.labels import BUNDLE_REPOSITORY, LABEL_HASH, ROOTFS_REPOSITORY
from reproexec.runs.attest import Verification, verify_folder
from reproexec.runs.store import BESIDE_RUN_JSON, MAX_RUN_JSON_BYTES, RUN_JSON, RunRecord, load_run, parse_run_json

IMAGE_MEMBER = "image.tar"
BASE_MEMBER = "base.tar.gz"  # --with-base: the base's rootfs (tens of MB), not the whole run image
_BASE_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_.-]+$")
MAX_MEMBER_BYTES = int(os.environ.get("REPROEXEC_BUNDLE_MAX_MEMBER", 8 * 1024**3))  # one run file
MAX_BUNDLE_BYTES = int(os.environ.get("REPROEXEC_BUNDLE_MAX_BYTES", 16 * 1024**3))  # all run files
MAX_IMAGE_BYTES = int(os.environ.get("REPROEXEC_BUNDLE_MAX_IMAGE", 32 * 1024**3))  # image.tar
MAX_MEMBERS = 100_000


@dataclass(frozen=True)
class ExportResult:
    path: Path
    run_id: str
    files: int
    bytes: int
    with_image: bool
    with_base: bool = False
    base_bytes: int = 0


def export_run(
    record: RunRecord, out: Path, *, engine: Engine | None = None, with_image: bool = False, with_base: bool = False
) -> ExportResult:
    """One tar(.gz) of the run folder; with_image adds the saved run image (for sites that cannot reach
    a package index), with_base adds only the base's rootfs: the other machine rebuilds the run image
    from it and the lockfile's wheels, to the recorded tag."""
    if record.status in ("running",):
        raise RunError(f"run {record.run_id} is still running", "wait for it to finish, then export")
    if with_image and with_base:
        raise RunError(
            "--with-image and --with-base: choose one",
            "--with-base is the light one; --with-image needs no package index",
        )
    base_file = _base_of(record, engine) if with_base else None
    image = (record.data.get("image") or {}).get("tag") if with_image else None
    if with_image and (not image or engine is None):
        raise RunError(f"run {record.run_id} has no image to save (local runtime?)", "export without --with-image")
    mode = "w:gz" if out.name.endswith((".tar.gz", ".tgz")) else "w"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    files = total = 0
    image_file = None
    try:
        if image and mode != "w":  # a gzip stream cannot go back to write the size: save first
            image_file = tempfile.NamedTemporaryFile(dir=out.parent, prefix=".image-", suffix=".tar", delete=False)
            with image_file:
                engine.save(image, image_file)  # type: ignore[union-attr]
        with tarfile.open(tmp, mode, format=tarfile.PAX_FORMAT) as tar:
            for rel in [RUN_JSON, *sorted(record.data.get("artifacts") or {})]:
                p = record.path / rel
                if p.is_symlink() or not p.is_file():
                    raise RunError(
                        f"run {record.run_id}: {rel} is listed in run.json but is not a file",
                        "the run folder was altered",
                    )
                tar.add(p, arcname=f"{record.run_id}/{rel}", recursive=False, filter=_normalize)
                files += 1
                total += p.stat().st_size
            for rel in BESIDE_RUN_JSON:  # the attestation and its signer's public key, when the run has them
                p = record.path / rel
                if p.is_file() and not p.is_symlink():
                    tar.add(p, arcname=f"{record.run_id}/{rel}", recursive=False, filter=_normalize)
                    files += 1
            if image_file is not None:
                tar.add(image_file.name, arcname=f"{record.run_id}/{IMAGE_MEMBER}", filter=_normalize)
            elif image:
                _add_streamed(tar, f"{record.run_id}/{IMAGE_MEMBER}", lambda f: engine.save(image, f))  # type: ignore[union-attr]
            if base_file is not None:
                tar.add(base_file, arcname=f"{record.run_id}/{BASE_MEMBER}", filter=_normalize)
        os.replace(tmp, out)
    except OSError as e:
        if not is_disk_full(e):
            raise
        need = (
            "the image's size"
            if image and mode == "w"
            else "twice the image's size (saved, then packed)"
            if image
            else "the run folder's size"
        )
        raise RunError(
            f"disk full while writing {out}: nothing was written",
            f"free space on {out.parent} (about {need}), or export to another disk with -o",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
        if image_file is not None:
            Path(image_file.name).unlink(missing_ok=True)
    return ExportResult(
        path=out,
        run_id=record.run_id,
        files=files,
        bytes=total,
        with_image=with_image,
        with_base=with_base,
        base_bytes=base_file.stat().st_size if base_file else 0,
    )


def _base_of(record: RunRecord, engine: Engine | None) -> Path:
    """The gzipped rootfs of the run's base, checked to be the base the run was built on."""
    from reproexec.env.base import base_rootfs, rootfs_store

    base = ((record.data.get("image") or {}).get("base")) or {}
    layers = base.get("layers") or []
    if engine is None or not base.get("reference"):
        raise RunError(f"run {record.run_id} has no image base to bring (local runtime?)", "export without --with-base")
    if len(layers) != 1:
        raise RunError(
            f"run {record.run_id}'s base {base['reference']} has {len(layers)} recorded layers; only a base made "
            "from one rootfs (`reproexec base bootstrap`) can travel as one",
            "export --with-image instead",
        )
    cached = rootfs_store() / f"{str(layers[0]).removeprefix('sha256:')}.tar.gz"
    if cached.is_file():  # kept when the base was made or imported here, whatever it is called now
        return cached
    path, digest = base_rootfs(engine, base["reference"])
    if f"sha256:{digest}" != layers[0]:
        raise RunError(
            f"{base['reference']} on this machine is not the base run {record.run_id} was built on "
            f"(rootfs {digest[:12]}, recorded {layers[0].removeprefix('sha256:')[:12]})",
            "export --with-image, or export from a machine that still has the recorded base",
        )
    return path


def _add_streamed(tar: tarfile.TarFile, arcname: str, fill: Callable[[IO[bytes]], None]) -> None:
    """Append a member whose size is known only once it is written (`docker save` streams an image
    of unknown length), with no temporary copy: a header with size 0, the data, then the header
    rewritten in place with the real size. GNU headers hold any size in the same 512 bytes. Needs
    an uncompressed archive in a seekable file."""
    f = tar.fileobj
    assert f is not None
    start = f.tell()
    info = _normalize(tarfile.TarInfo(arcname))
    header = info.tobuf(tarfile.GNU_FORMAT)
    if len(header) != tarfile.BLOCKSIZE:
        raise ValueError(f"member name too long for an in-place header: {arcname}")
    f.write(header)
    size = 0

    class _Counting:
        def write(self, b: bytes) -> int:
            nonlocal size
            size += len(b)
            return f.write(b)

    fill(_Counting())  # type: ignore[arg-type]
    f.write(tarfile.NUL * (-size % tarfile.BLOCKSIZE))
    end = f.tell()
    info.size = size
    f.seek(start)
    f.write(info.tobuf(tarfile.GNU_FORMAT))
    f.seek(end)
    tar.offset = end  # tarfile pads the archive's end from its own count of what was written
    tar.members.append(info)


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
        problem = relpath_problem(name.removesuffix("/") if m.isdir() else name)
        if problem is not None:
            problems.append(f"{name!r}: {problem}")
            continue
        if not (m.isreg() or m.isdir()):
            kind = "link" if (m.issym() or m.islnk()) else "device, fifo or special file"
            target = f" -> {m.linkname!r}" if m.linkname else ""
            problems.append(f"{name!r}: {kind}{target} (bundles hold plain files only)")
            continue
        tops.add(p.parts[0])
        limit = MAX_IMAGE_BYTES if p.name in (IMAGE_MEMBER, BASE_MEMBER) and len(p.parts) == 2 else MAX_MEMBER_BYTES
        if m.size > limit:
            problems.append(f"{name!r}: {m.size} bytes (limit {limit})")
    if len(tops) > 1:
        problems.append(
            f"members under {len(tops)} top folders ({', '.join(sorted(tops)[:3])}); a bundle holds one run"
        )
    if problems:
        raise RunError(
            f"bundle {source} is refused: it is not a safe run bundle",
            "only import bundles made by `reproexec export`; ask the sender for a fresh one",
            details=problems[:20],
        )
    if not tops:
        raise RunError(f"bundle {source} is empty", "export the run again")
    return next(iter(tops))


@dataclass(frozen=True)
class OpenedBundle:
    tar: tarfile.TarFile
    members: list[tarfile.TarInfo]
    by_name: dict[str, tarfile.TarInfo]
    run_id: str
    record: dict[str, Any]  # run.json, validated
    raw: bytes  # run.json's bytes


@contextlib.contextmanager
def open_bundle(bundle: Path) -> Iterator[OpenedBundle]:
    """A bundle from elsewhere, opened as untrusted input (for import, verify and env diff alike):
    every member checked (check_members), run.json read bounded and validated, its run id the
    bundle's. A damaged, truncated or non-tar file is a RunError, never a traceback."""
    if not bundle.is_file():
        raise RunError(f"bundle {bundle} does not exist", "pass the .tar.gz written by `reproexec export`")
    try:
        with tarfile.open(bundle, "r:*") as tar:
            members = tar.getmembers()
            run_id = check_members(members, str(bundle))
            by_name = {m.name.rstrip("/"): m for m in members}
            meta = by_name.get(f"{run_id}/{RUN_JSON}")
            src = tar.extractfile(meta) if meta is not None and meta.isreg() else None
            if src is None:
                raise RunError(f"bundle {bundle} has no {run_id}/{RUN_JSON}", "export the run again")
            raw = src.read(MAX_RUN_JSON_BYTES + 1)
            record = parse_run_json(raw, f"{bundle}:{run_id}/{RUN_JSON}")
            if record["run_id"] != run_id:
                raise RunError(
                    f"bundle {bundle}: run.json says run {record['run_id']!r}, the bundle holds {run_id!r}",
                    "the bundle was altered; do not use it",
                )
            yield OpenedBundle(tar, members, by_name, run_id, record, raw)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise RunError(
            f"bundle {bundle} cannot be read: {e or type(e).__name__}",
            "the file is damaged, truncated or not a tar archive",
        ) from None
    except OSError as e:
        if is_disk_full(e):
            raise
        raise RunError(
            f"bundle {bundle} cannot be read: {e or type(e).__name__}",
            "the file is damaged, truncated or not a tar archive",
        ) from None


@contextlib.contextmanager
def unpacked(bundle: Path) -> Iterator[Path]:
    """A bundle's run folder (its image and base left out) unpacked into a private temporary folder,
    after the member and listing checks, for `reproexec verify` to read as it reads a run folder."""

    with open_bundle(bundle) as b:
        extras = [
            m for m in (b.by_name.get(f"{b.run_id}/{IMAGE_MEMBER}"), b.by_name.get(f"{b.run_id}/{BASE_MEMBER}")) if m
        ]
        _check_listing(b.members, b.record, b.run_id, extras, str(bundle))
        (cache_dir() / "tmp").mkdir(parents=True, exist_ok=True)
        _check_room(b.members, cache_dir() / "tmp", str(bundle))
        with tempfile.TemporaryDirectory(dir=cache_dir() / "tmp", prefix="verify-") as tmp:
            _unpack(b.tar, [m for m in b.members if m.isreg() and m not in extras], Path(tmp))
            yield Path(tmp) / b.run_id


@dataclass(frozen=True)
class ImportResult:
    record: RunRecord
    image: str | None  # the image id loaded (and checked), if the bundle held one
    already_present: bool  # the same run (byte-identical run.json) was already in the store
    base: str | None = None  # the base tag imported (or found, with the recorded content), --with-base
    verification: Verification | None = None  # what was checked of the run (and who signed it)


def import_bundle(
    bundle: Path, runs_dir: Path, engine: Callable[[], Engine] | None = None, *, signed_by: str | None = None
) -> ImportResult:
    """Check a bundle as untrusted input, then add its run to the store (and load its image).

    Before anything is written: every member safe (check_members), the run.json valid (schema,
    id, paths, types), the files exactly those run.json lists (plus the image), the total size
    within MAX_BUNDLE_BYTES and the free disk. The files are unpacked into a private folder and
    checked as `reproexec verify` checks a run (every sha256, the attestation against the files and
    run.json, the signature; with `signed_by`, signed by that key) before the folder is moved into
    place; a run already in the store is never overwritten (the same run is fine; a different run under the same id is refused). A
    saved image is loaded without any of its own tags, accepted only if it is the image run.json
    records (image id and content-hash label), and only then tagged `reproexec-bundle:<hash>`.
    `engine` connects to Docker; it is called only when the bundle holds an image."""
    with open_bundle(bundle) as b:
        tar, members, by_name, run_id, record = b.tar, b.members, b.by_name, b.run_id, b.record
        if record["status"] == "running":
            raise RunError(f"bundle {bundle}: run {run_id} is still running", "export it again when it has finished")
        image_member = by_name.get(f"{run_id}/{IMAGE_MEMBER}")
        base_member = by_name.get(f"{run_id}/{BASE_MEMBER}")
        base_sha = _recorded_base(record, str(bundle)) if base_member is not None else None
        _check_listing(members, record, run_id, [m for m in (image_member, base_member) if m is not None], str(bundle))
        _check_room(members, runs_dir, str(bundle))
        dest = runs_dir / run_id
        present = (dest / RUN_JSON).is_file()
        if present:
            if sha256_file(dest / RUN_JSON, follow_symlinks=False) != hashlib.sha256(b.raw).hexdigest():
                raise RunError(
                    f"a different run {run_id} is already in {runs_dir}; the bundle was not imported",
                    f"import into another run store (--runs-dir), or remove {dest} if it should be replaced",
                )
        if (image_member is not None or base_member is not None) and engine is None:
            raise RunError(
                f"bundle {bundle} holds an image or a base but no Docker engine was given", "connect to Docker"
            )
        with _staged(runs_dir) as staging:
            if not present:  # unpacked and checked beside the store, moved in only once all else is checked
                _unpack(tar, [m for m in members if m.isreg() and m not in (image_member, base_member)], staging)
            verified = check_run(dest if present else staging / run_id, f"bundle {bundle}", signed_by=signed_by)
            loaded = None
            if image_member is not None:
                img = tar.extractfile(image_member)
                assert img is not None and engine is not None
                loaded = load_image_checked(engine(), img, record.get("image") or {}, str(bundle))
            base_tag = None
            if base_member is not None:
                assert engine is not None
                base_tag = _import_base(engine(), tar, base_member, base_sha or "")
            if not present:
                try:
                    os.rename(staging / run_id, dest)  # fails if dest appeared meanwhile (never replaced)
                except OSError as e:
                    raise RunError(
                        f"run {run_id} appeared in {runs_dir} during the import: {e.strerror}", "import it again"
                    ) from None
    return ImportResult(
        record=load_run(str(dest)), image=loaded, already_present=present, base=base_tag, verification=verified
    )


@contextlib.contextmanager
def _staged(runs_dir: Path) -> Iterator[Path]:
    """A private folder in the run store (the same file system, so the final move is one rename),
    removed with whatever is left in it."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=runs_dir, prefix=".import-"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _recorded_base(record: dict, source: str) -> str:
    base = (record.get("image") or {}).get("base") if isinstance(record.get("image"), dict) else None
    layers = base.get("layers") if isinstance(base, dict) else None
    ref = base.get("reference") if isinstance(base, dict) else None
    if not (
        isinstance(layers, list)
        and len(layers) == 1
        and isinstance(layers[0], str)
        and re.fullmatch(r"sha256:[0-9a-f]{64}", layers[0])
        and isinstance(ref, str)
        and _BASE_TAG_RE.match(ref)
    ):
        raise RunError(
            f"bundle {source} holds a base but its run.json records no one-layer base with a plain tag",
            "the bundle was altered; do not use it",
        )
    return layers[0].removeprefix("sha256:")


def _import_base(engine: Engine, tar: tarfile.TarFile, member: tarfile.TarInfo, sha: str) -> str:
    """The bundle's base rootfs, imported once it proved to be the recorded one (base.import_base_rootfs
    checks its sha256 and every member), and tagged reproexec-base-rootfs:<sha256>: a name derived from
    what was checked, never one the bundle chose. A rebuild finds it by its layer (base.find_base)."""
    from reproexec.env.base import import_base_rootfs

    src = tar.extractfile(member)
    assert src is not None
    (cache_dir() / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir() / "tmp", suffix=".tar.gz") as f:
        shutil.copyfileobj(src, f, 1 << 20)
        f.flush()
        return import_base_rootfs(engine, Path(f.name), sha, f"{ROOTFS_REPOSITORY}:{sha}").tag


def _check_listing(
    members: list[tarfile.TarInfo], record: dict, run_id: str, extras: list[tarfile.TarInfo], source: str
) -> None:
    listed = {f"{run_id}/{rel}" for rel in [RUN_JSON, *BESIDE_RUN_JSON, *(record.get("artifacts") or {})]}
    listed |= {m.name for m in extras}
    image = next((m for m in extras if m.name.endswith(f"/{IMAGE_MEMBER}")), None)
    files = {m.name for m in members if m.isreg()}
    extra = sorted(files - listed)
    if extra:
        raise RunError(
            f"bundle {source} holds files its run.json does not list; nothing was imported",
            "only import bundles made by `reproexec export`",
            details=[f"{n!r}: not listed in run.json" for n in extra[:20]],
        )
    if image is not None and not record.get("image"):
        raise RunError(
            f"bundle {source} holds an image but its run.json records none", "the bundle was altered; do not use it"
        )


def _check_room(members: list[tarfile.TarInfo], runs_dir: Path, source: str) -> None:
    total = sum(m.size for m in members if m.isreg() and not m.name.endswith((f"/{IMAGE_MEMBER}", f"/{BASE_MEMBER}")))
    if total > MAX_BUNDLE_BYTES:
        raise RunError(
            f"bundle {source} unpacks to {total:,} bytes (limit {MAX_BUNDLE_BYTES:,}); nothing was imported",
            "raise REPROEXEC_BUNDLE_MAX_BYTES if you trust this bundle and expected runs this large",
        )
    probe = runs_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if total + 64 * 1024**2 > free:
        raise RunError(
            f"bundle {source} needs {total:,} bytes but {probe} has {free:,} free; nothing was imported",
            "free some space, or import into a run store on a bigger disk (--runs-dir)",
        )


@contextlib.contextmanager
def untagged_image(src: IO[bytes]) -> Iterator[IO[bytes]]:
    """The `docker save` archive in `src`, re-streamed without the names it would tag: RepoTags in
    manifest.json emptied, the legacy `repositories` file dropped, OCI ref-name annotations removed.
    So loading it can never move a tag that already points somewhere on this machine."""

    def rewrite(dst: IO[bytes]) -> None:
        with (
            tarfile.open(fileobj=src, mode="r|") as inner,
            tarfile.open(fileobj=dst, mode="w|", format=tarfile.PAX_FORMAT) as out,
        ):
            for m in inner:
                name = m.name.removeprefix("./")
                if name == "repositories":
                    continue
                if name in ("manifest.json", "index.json") and m.isreg():
                    f = inner.extractfile(m)
                    assert f is not None
                    data = _strip_names(name, f.read(16 * 1024**2 + 1))
                    m.size = len(data)
                    out.addfile(m, io.BytesIO(data))
                else:
                    out.addfile(m, inner.extractfile(m) if m.isreg() else None)

    with piped(rewrite) as stream:
        yield stream


def _strip_names(name: str, data: bytes) -> bytes:
    if len(data) > 16 * 1024**2:
        raise RunError(f"the image's {name} is larger than 16 MiB", "this is not an image `docker save` wrote")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise RunError(f"the image's {name} is not valid JSON", "this is not an image `docker save` wrote") from None
    if name == "manifest.json" and isinstance(doc, list):
        for entry in doc:
            if isinstance(entry, dict):
                entry["RepoTags"] = None
    if name == "index.json" and isinstance(doc, dict):
        for entry in doc.get("manifests") or []:
            if isinstance(entry, dict) and isinstance(entry.get("annotations"), dict):
                for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
                    entry["annotations"].pop(key, None)
    return json.dumps(doc).encode()


def load_image_checked(engine: Engine, src: IO[bytes], expected: dict, source: str) -> str:
    """Load a saved image untagged; keep it only if it is the recorded one (image id and content-hash
    label); then tag it `reproexec-bundle:<content hash>`, never `reproexec-env:` (only a build made
    here tags that: a bundle must not plant the cache hit of a later build). Returns the image id."""
    want_id, want_hash = expected.get("id"), expected.get("content_hash")
    with untagged_image(src) as stream:
        ids = engine.load(stream)
    if ids != [want_id]:
        raise RunError(
            f"the image in bundle {source} is not the one its run.json records ({want_id}); loaded: {', '.join(ids) or 'nothing'}",
            "the bundle was altered; nothing was tagged. Do not use it (`reproexec gc` removes the untagged image)",
        )
    info = engine.image(want_id)
    if info is None or info.labels.get(LABEL_HASH) != want_hash:
        raise RunError(
            f"the image in bundle {source} lacks the recorded content hash {want_hash}",
            "the bundle was altered; nothing was tagged. Do not use it",
        )
    engine.tag(want_id, BUNDLE_REPOSITORY, str(want_hash))
    return want_id


def _unpack(tar: tarfile.TarFile, members: list[tarfile.TarInfo], staging: Path) -> None:
    """Unpack into the private staging folder (checked by the caller before anything moves on)."""
    for m in members:
        target = staging / m.name
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        assert src is not None
        with open(target, "xb") as f:  # "x": never through anything already there
            shutil.copyfileobj(src, f, 1 << 20)


def check_run(folder: Path, source: str, *, signed_by: str | None = None, key: Any = None) -> Verification:
    """A run folder (a bundle's, unpacked; or one in the store) as `reproexec verify` checks it
    (files, attestation, records, signature): RunError if its files do not match its run.json,
    AttestationError if anything else fails. `source` names it in the message ("bundle X")."""
    result = verify_folder(folder, key=key, signed_by=signed_by)
    problem = result.first_problem
    if problem is None:
        return result
    if problem.what == "files":
        raise RunError(
            f"{source} does not match its own run.json",
            "it was altered; do not use it",
            details=problem.problems[:20],
        )
    raise AttestationError(
        f"{source} is refused: {problem.what}: {problem.detail}",
        "it was altered, or is not the run it says; do not use it"
        if problem.what != "signature"
        else "ask the sender for a run signed with the key you trust",
        details=problem.problems[:20],
    )
