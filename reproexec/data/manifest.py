"""Dataset snapshots: the manifest, its id, `snapshot` and the `verify_snapshot` gate.

A snapshot is a folder of plain files plus two files reproexec writes at its top level:

``manifest.json``
    ``{"version": 1, "count": N, "excludes": [GLOB, ...], "files": [{"relpath", "bytes", "sha256"}, ...]}``
    with files sorted by relpath (POSIX separators, names exactly as the filesystem gives them, no
    Unicode normalization; UTF-8). When reading, ``version`` and ``excludes`` may be left out and
    the files may come in any order, so ``{"count": N, "files": [...]}`` as a few lines of Python
    write it (walk the folder, hash each file) is a manifest as it is.
``SHA256SUMS``
    The same hashes in coreutils format, so ``cd DIR && sha256sum -c SHA256SUMS`` checks the
    snapshot without reproexec.

Neither file is ever part of the manifest.

**Manifest id.** The sha256 (hex) of the canonical manifest: the UTF-8 bytes of ::

    json.dumps({"excludes": sorted(set(excludes)), "files": files_sorted_by_relpath},
               sort_keys=True, separators=(",", ":"), ensure_ascii=False)

where each file is ``{"bytes": int, "relpath": str, "sha256": lowercase hex}``. ``count`` and
``version`` are not hashed (count is implied by files); excludes are, because the same folder
snapshotted with different excludes is a different dataset. Key order, whitespace and entry order
of the file on disk do not change the id.

**Excludes.** A glob (fnmatch, case-sensitive) containing ``/`` matches the whole relpath (``*``
crosses folders); one without ``/`` matches a file or folder name at any depth. An excluded folder is
skipped whole. Excludes are recorded in the manifest and applied again by verify, so excluded files
are never reported as unexpected; nothing else is ever left out silently.

**Symlinks** are refused, whether they point inside the snapshot or out of it: a snapshot is plain
files, and a link is one more way for the bytes read at training time to differ from those hashed.
Fifos, sockets, device files, unreadable files and paths a manifest cannot hold (`relpath_problem`:
a backslash, a control character, a name that is not UTF-8, ...) are refused too, each naming the path.

Manifests are untrusted input: ``load_manifest`` checks the file's size, its JSON and every entry
(relpath inside the snapshot, no duplicates, sha256 format, sizes, count) and reports all problems
at once.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from string import ascii_letters
from typing import Any, NamedTuple

from reproexec.data import hashing
from reproexec.errors import DataError
from reproexec.fsutil import UnreadableFile, read_bounded, write_atomic
from reproexec.fsutil import relpath_problem as fsutil_relpath_problem

MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
RESERVED_NAMES = (MANIFEST_NAME, SUMS_NAME)
MANIFEST_VERSION = 1
MAX_DETAILS = 50  # an error lists at most this many lines, then "... and N more"
# The most of a manifest reproexec reads (it is read whole, and parsed it takes ~3.5x its size in
# memory): 256 MiB is ~1.5 million files of ImageNet-style names (~176 bytes an entry), ImageNet-1k
# included. A larger one is refused before it is read, unless REPROEXEC_MAX_MANIFEST_BYTES says more.
MAX_MANIFEST_BYTES = 256 * 1024**2
MANIFEST_LIMIT_ENV = "REPROEXEC_MAX_MANIFEST_BYTES"
MAX_FILE_BYTES = (1 << 63) - 1  # st_size is a signed 64-bit number
MAX_RELPATH_BYTES = 4096  # PATH_MAX on Linux: no longer path can be opened

# progress(description, total_items, bytes_total=...) -> context manager yielding advance(items, bytes).
# `reproexec.console.progress` has this shape; the core never prints, the CLI passes that in.
ProgressFactory = Callable[..., AbstractContextManager[Callable[[int, int], None]]]

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_TOP_KEYS = {"version", "count", "excludes", "files"}
_ENTRY_KEYS = {"relpath", "bytes", "sha256"}
_REGEN = "regenerate it with `reproexec data snapshot DIR`"


class FileEntry(NamedTuple):
    relpath: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class DatasetManifest:
    """What a snapshot holds. `files` are sorted by relpath; `excludes` sorted and unique."""

    files: tuple[FileEntry, ...]
    excludes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(sorted(self.files)))  # relpaths are unique: sorts by relpath
        object.__setattr__(self, "excludes", tuple(sorted(set(self.excludes))))

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def canonical_bytes(self) -> bytes:
        """The exact bytes the manifest id hashes (see the module docstring)."""
        body = {
            "excludes": list(self.excludes),
            "files": [{"bytes": f.bytes, "relpath": f.relpath, "sha256": f.sha256} for f in self.files],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @cached_property
    def manifest_id(self) -> str:
        import hashlib

        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def to_json(self) -> str:
        """manifest.json text: human-readable, sorted, stable for the same content."""
        files = [{"relpath": f.relpath, "bytes": f.bytes, "sha256": f.sha256} for f in self.files]
        doc = {"version": MANIFEST_VERSION, "count": self.count, "excludes": list(self.excludes), "files": files}
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    def sha256sums(self) -> str:
        """SHA256SUMS text that `sha256sum -c` accepts (names needing escapes are refused earlier)."""
        return "".join(f"{f.sha256}  {f.relpath}\n" for f in self.files)


@dataclass(frozen=True)
class SnapshotResult:
    root: Path
    manifest: DatasetManifest
    manifest_path: Path
    sums_path: Path

    @property
    def manifest_id(self) -> str:
        return self.manifest.manifest_id


@dataclass
class VerifyReport:
    """The outcome of checking a folder against its manifest. Every list is sorted by relpath."""

    root: Path
    manifest_path: Path
    manifest_id: str
    quick: bool
    checked_files: int = 0
    checked_bytes: int = 0
    missing: list[str] = field(default_factory=list)
    resized: list[tuple[str, int, int]] = field(default_factory=list)  # (relpath, manifest bytes, disk bytes)
    changed: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (relpath in manifest, relpath on disk)
    irregular: list[tuple[str, str]] = field(default_factory=list)  # (relpath, what is wrong)
    manifest: DatasetManifest | None = None  # the manifest checked against, as read for this check

    @property
    def ok(self) -> bool:
        return not any(self.counts().values())

    def counts(self) -> dict[str, int]:
        kinds = ("missing", "resized", "changed", "unexpected", "renamed", "irregular")
        return {kind: len(getattr(self, kind)) for kind in kinds}

    def problems(self) -> list[str]:
        """One line per problem, grouped by kind; the lines DataError shows."""
        s = _shown
        lines = [f"missing: {s(r)}" for r in self.missing]
        lines += [f"resized: {s(r)} ({exp} bytes in the manifest, {got} on disk)" for r, exp, got in self.resized]
        lines += [f"changed: {s(r)} (sha256 differs from the manifest)" for r in self.changed]
        lines += [f"renamed: {s(new)} (renamed from {s(old)}; same sha256)" for old, new in self.renamed]
        lines += [f"unexpected: {s(r)} (not in the manifest)" for r in self.unexpected]
        lines += [f"not a plain file: {s(r)} ({why})" for r, why in self.irregular]
        return lines

    def raise_for_problems(self) -> None:
        """Raise one DataError listing every problem (capped at MAX_DETAILS lines); no-op when ok."""
        if self.ok:
            return
        summary = ", ".join(f"{n} {kind}" for kind, n in self.counts().items() if n)
        what = "sizes" if self.quick else "contents"
        raise DataError(
            f"{self.root}: snapshot does not match {self.manifest_path} ({what} checked): {summary}",
            "restore the files listed above; if the change is intended, take a new snapshot with "
            "`reproexec data snapshot DIR` (that gives a new manifest id)",
            details=_capped(self.problems()),
        )


def load_manifest(path: str | os.PathLike[str]) -> DatasetManifest:
    """Read and validate a manifest file; every problem is reported at once, naming the entry."""
    path = Path(path)
    return manifest_from_dict(_manifest_json(path), str(path))


def manifest_limit() -> int:
    """The most bytes of a manifest reproexec reads: MAX_MANIFEST_BYTES, or REPROEXEC_MAX_MANIFEST_BYTES."""
    text = os.environ.get(MANIFEST_LIMIT_ENV, "").strip()
    if not text:
        return MAX_MANIFEST_BYTES
    if not text.isdecimal() or int(text) < 1:
        raise DataError(
            f"{MANIFEST_LIMIT_ENV}={text!r} is not a number of bytes",
            f"set it to a whole number of bytes, e.g. {2 * MAX_MANIFEST_BYTES}, or unset it",
        )
    return int(text)


def _manifest_json(path: Path) -> Any:
    """The JSON of a manifest file, its bytes and text dropped once parsed (a manifest of a million
    files is a few hundred MB of them)."""
    limit = manifest_limit()
    try:
        raw = read_bounded(path, limit)  # never blocks: a FIFO in its place must not hang the gate
    except FileNotFoundError:
        raise DataError(
            f"manifest {path} does not exist",
            "take a snapshot first (`reproexec data snapshot DIR`) or pass --manifest FILE",
        ) from None
    except UnreadableFile as e:
        if e.errno == errno.EFBIG:
            raise DataError(
                f"manifest {path} is larger than {limit:,} bytes, the most reproexec reads",
                f"a manifest of {MAX_MANIFEST_BYTES // 1024**2} MiB lists ~1.5 million files; if this one is a "
                f"snapshot you trust, raise the limit with {MANIFEST_LIMIT_ENV}=BYTES; otherwise {_REGEN}",
            ) from None
        raise DataError(f"manifest {path} is not a regular file", "pass the manifest.json file") from None
    except OSError as e:
        raise DataError(f"manifest {path} cannot be read: {e.strerror or e}", "pass a readable manifest.json") from None
    try:
        text = raw.decode("utf-8")
        del raw  # one copy of the file at a time beside the parsed objects
        return json.loads(text)
    except UnicodeDecodeError as e:
        raise DataError(f"manifest {path} is not UTF-8 text: {e.reason} at byte {e.start}", _REGEN) from None
    except json.JSONDecodeError as e:
        raise DataError(
            f"manifest {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}", _REGEN
        ) from None
    except RecursionError:
        raise DataError(f"manifest {path} nests lists or objects too deeply to be a manifest", _REGEN) from None
    except ValueError:  # json's only other refusal: an integer of more digits than Python converts
        raise DataError(f"manifest {path} holds a number too long to be a size or a count", _REGEN) from None


def manifest_from_dict(doc: Any, source: str = "manifest") -> DatasetManifest:
    if not isinstance(doc, dict):
        raise DataError(
            f"manifest {source}: the top level must be an object with 'count' and 'files', not {_jtype(doc)}", _REGEN
        )
    errors: list[str] = []
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        errors.append(
            f"unknown top-level key(s): {', '.join(map(_short, unknown))}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    version = doc.get("version", MANIFEST_VERSION)
    if not (_is_int(version) and version == MANIFEST_VERSION):
        errors.append(f"version = {_short(version)}: this reproexec reads version {MANIFEST_VERSION}")
    excludes = doc.get("excludes", [])
    if not isinstance(excludes, list) or not all(isinstance(x, str) for x in excludes):
        errors.append(f"excludes = {_short(excludes)}: must be a list of glob strings")
        excludes = []
    else:
        errors += [f"excludes: {msg}" for msg in map(_exclude_problem, excludes) if msg]
    files = doc.get("files")
    entries: list[FileEntry] = []
    if not isinstance(files, list):
        errors.append(
            "files: required list is missing" if files is None else f"files: must be a list, not {_jtype(files)}"
        )
    else:
        seen: dict[str, int] = {}
        for i, item in enumerate(files):
            entry = _entry(i, item, seen, excludes, errors)
            if entry is not None:
                entries.append(entry)
        count = doc.get("count")
        if "count" not in doc:
            errors.append("count: required field is missing")
        elif not _is_int(count):
            errors.append(f"count = {_short(count)}: must be an integer")
        elif count != len(files):
            errors.append(f"count = {_short(count)} but files lists {len(files)} entries")
    if errors:
        n = len(errors)
        raise DataError(
            f"manifest {source}: {n} problem{'s' if n != 1 else ''}; refusing to use it",
            "a manifest is checked as untrusted input; " + _REGEN + " from the dataset you trust",
            details=_capped(errors),
        )
    return DatasetManifest(tuple(entries), tuple(excludes))


def _entry(i: int, item: Any, seen: dict[str, int], excludes: Sequence[str], errors: list[str]) -> FileEntry | None:
    """files[i] as a FileEntry, or None with its problems appended to `errors`."""
    if not isinstance(item, dict):
        errors.append(f"files[{i}]: must be an object with relpath, bytes, sha256, not {_jtype(item)}")
        return None
    problems = []
    if item.keys() != _ENTRY_KEYS:
        unknown = sorted(item.keys() - _ENTRY_KEYS)
        if unknown:
            problems.append(f"unknown key(s) {', '.join(map(_short, unknown))}; allowed: bytes, relpath, sha256")
        problems += [f"{key} is missing" for key in sorted(_ENTRY_KEYS - item.keys())]
    rel, size, digest = item.get("relpath"), item.get("bytes"), item.get("sha256")
    if "relpath" in item:
        why = relpath_problem(rel)
        if why:
            problems.append(f"relpath {why}")
        elif rel in seen:
            problems.append(f"duplicate relpath, also files[{seen[rel]}]")
        else:
            seen[rel] = i
            if excludes and _excluded(rel, excludes):  # verify could never find it
                problems.append("relpath matches an exclude pattern, so it cannot be in the snapshot")
    if "bytes" in item:
        if not (_is_int(size) and size >= 0):
            problems.append(f"bytes = {_short(size)}: must be a non-negative integer")
        elif size > MAX_FILE_BYTES:
            problems.append(f"bytes = {_short(size)}: larger than any file can be ({MAX_FILE_BYTES:,})")
    if "sha256" in item and not (isinstance(digest, str) and _SHA256_RE.fullmatch(digest)):
        problems.append(f"sha256 = {_short(digest)}: must be 64 lowercase hex digits")
    if problems:
        where = f"files[{i}] ({_short(rel)})" if isinstance(rel, str) else f"files[{i}]"
        errors += [f"{where}: {p}" for p in problems]
        return None
    return FileEntry(rel, size, digest)


def relpath_problem(rel: Any) -> str | None:
    """Why `rel` cannot be a file's path in a snapshot, or None: the one check of a relative path
    (fsutil.relpath_problem), a name every OS can hold, and no name reproexec writes itself."""
    if not isinstance(rel, str):
        return f"must be a string, not {_jtype(rel)}"
    if "\\" in rel:  # a snapshot is read on other machines: keep its names portable
        return "holds a backslash; use '/' as the separator"
    if rel[1:2] == ":" and rel[0] in ascii_letters:
        return "starts with a drive letter; it must be relative to the snapshot folder"
    problem = fsutil_relpath_problem(rel)
    if problem is not None:
        return problem.replace("the folder", "the snapshot folder")
    if rel in RESERVED_NAMES:
        return f"names {rel}, which reproexec writes itself and is never part of a manifest"
    return None


def _excluded(rel: str, excludes: Sequence[str]) -> bool:
    """The file, or a folder above it, matches an exclude."""
    parts = rel.split("/")
    return any(hashing.is_excluded("/".join(parts[: k + 1]), parts[k], excludes) for k in range(len(parts)))


def _exclude_problem(pattern: str) -> str | None:
    if not pattern:
        return "empty pattern"
    if "\x00" in pattern or "\\" in pattern:
        return f"{pattern!r}: no NUL or backslash; use '/' as the separator"
    if pattern.startswith("/") or ".." in pattern.split("/"):
        return f"{pattern!r}: patterns are relative to the snapshot folder (no leading '/', no '..')"
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _jtype(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


def _short(v: Any) -> str:
    """A value for an error line: at most 60 characters, and never a whole (maybe deep) list or object."""
    if isinstance(v, (list, dict)):
        return "[...]" if isinstance(v, list) else "{...}"
    text = repr(v) if isinstance(v, str) else json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_DETAILS:
        return lines
    return lines[:MAX_DETAILS] + [f"... and {len(lines) - MAX_DETAILS} more"]


def _unnamable(relpaths: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Split paths found on disk into those a manifest can hold and (path, why) for the rest."""
    good, bad = [], []
    for rel in relpaths:
        why = relpath_problem(rel)
        if why is None:
            good.append(rel)
        else:
            bad.append((rel, f"path {why}; rename it"))
    return good, bad


def _shown(rel: str) -> str:
    """A path as an error line shows it: escaped where it holds what a terminal would act on."""
    return rel if rel.isprintable() else ascii(rel)[1:-1]


def snapshot(
    root: str | os.PathLike[str],
    excludes: Sequence[str] = (),
    progress: ProgressFactory | None = None,
) -> SnapshotResult:
    """Hash every file under root and write root/manifest.json and root/SHA256SUMS atomically."""
    root = _existing_dir(Path(root))
    bad = [msg for msg in map(_exclude_problem, excludes) if msg]
    if bad:
        raise DataError("invalid --exclude pattern(s)", "fix the patterns listed above", details=bad)
    excludes = tuple(sorted(set(excludes)))
    walked = hashing.walk(str(root), excludes, RESERVED_NAMES, with_sizes=True)
    _, unnamable = _unnamable(list(walked.files))
    irregular = sorted(walked.irregular + unnamable)
    if irregular:
        escapes = any(why.endswith(hashing.ESCAPES) for _, why in irregular)
        n = len(irregular)
        raise DataError(
            f"{root}: {n} entr{'ies are' if n != 1 else 'y is'} not plain readable files"
            + (" (a symlink leaves the snapshot)" if escapes else ""),
            "a snapshot holds regular files only: replace symlinks with copies of the files, remove fifos, "
            "sockets and device files, fix permissions or names, or leave entries out with --exclude GLOB",
            details=_capped([f"{_shown(rel)}: {why}" for rel, why in irregular]),
        )
    if not walked.files:
        what = f" after the excludes {', '.join(excludes)}" if excludes else ""
        raise DataError(
            f"{root}: no files to snapshot{what}", "point at the dataset folder; check the --exclude patterns"
        )

    items = list(walked.files.items())
    with _progress(progress, "Hashing", len(items), sum(walked.files.values())) as advance:
        hashed = hashing.hash_files(str(root), items, advance)
    failed = [
        (rel, error or "changed size while it was hashed")
        for (rel, _), (_, digest, error) in zip(items, hashed)
        if digest is None
    ]
    if failed:
        raise DataError(
            f"{root}: {len(failed)} file(s) could not be hashed",
            "make the files readable (and stop writers to the folder), then run the snapshot again",
            details=_capped([f"{_shown(rel)}: {why}" for rel, why in failed]),
        )
    entries = (FileEntry(rel, size, digest) for (rel, _), (size, digest, _) in zip(items, hashed))
    manifest = DatasetManifest(tuple(entries), excludes)  # type: ignore[arg-type]
    # manifest.json last: it is the authority, so if anything fails first the old one still stands.
    sums_path, manifest_path = root / SUMS_NAME, root / MANIFEST_NAME
    for path, text in ((sums_path, manifest.sha256sums()), (manifest_path, manifest.to_json())):
        try:
            write_atomic(path, text)
        except OSError as e:
            raise DataError(
                f"cannot write {path}: {e.strerror or e}", "make the snapshot folder writable (or snapshot a copy)"
            ) from None
    return SnapshotResult(root, manifest, manifest_path, sums_path)


def verify_snapshot(
    root: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str] | None = None,
    quick: bool = False,
    progress: ProgressFactory | None = None,
) -> VerifyReport:
    """Check root against its manifest: every file's size and (unless quick) sha256.

    Returns a report listing every missing, resized, changed, unexpected and renamed file; call
    `report.raise_for_problems()` to turn a mismatch into one DataError. Raises DataError only
    when the check cannot run (no folder, unreadable or invalid manifest).
    """
    root = _existing_dir(Path(root))
    mpath = Path(manifest_path) if manifest_path is not None else root / MANIFEST_NAME
    manifest = load_manifest(mpath)
    base = str(root)
    walked = hashing.walk(base, manifest.excludes, RESERVED_NAMES, with_sizes=quick)
    on_disk = walked.files
    on_disk.pop(_relpath_inside(root, mpath), None)  # --manifest FILE kept inside the folder under another name
    report = VerifyReport(
        root=root, manifest_path=mpath, manifest_id=manifest.manifest_id, quick=quick, manifest=manifest
    )
    report.irregular = walked.irregular
    irregular = {rel for rel, _ in walked.irregular}
    listed = {f.relpath for f in manifest.files}
    unexpected, unnamable = _unnamable([r for r in on_disk if r not in listed])
    report.irregular += unnamable
    present = [f for f in manifest.files if f.relpath in on_disk]
    missing = [f for f in manifest.files if f.relpath not in on_disk and f.relpath not in irregular]

    if quick:
        for f in present:
            if on_disk[f.relpath] != f.bytes:
                report.resized.append((f.relpath, f.bytes, on_disk[f.relpath]))
            else:
                report.checked_files += 1
    else:
        with _progress(progress, "Verifying", len(present), sum(f.bytes for f in present)) as advance:
            hashed = hashing.hash_files(base, [(f.relpath, f.bytes) for f in present], advance)
        for f, (size, digest, error) in zip(present, hashed):
            if error is not None:
                report.irregular.append((f.relpath, error))
            elif digest is None:
                report.resized.append((f.relpath, f.bytes, size))
            else:
                report.checked_files += 1
                report.checked_bytes += size
                if digest != f.sha256:
                    report.changed.append(f.relpath)
        if missing and unexpected:
            report.renamed = _find_renames(base, missing, unexpected)
            gone, came = {old for old, _ in report.renamed}, {new for _, new in report.renamed}
            missing = [f for f in missing if f.relpath not in gone]
            unexpected = [r for r in unexpected if r not in came]
    report.missing = [f.relpath for f in missing]
    report.unexpected = unexpected
    report.irregular.sort()
    return report


def class_folders(root: str | os.PathLike[str], parent: str) -> list[str]:
    """The class folders in `root`/`parent` (data.train_dir or data.val_dir) as the trainer sees them
    on disk, sorted: every sub-folder whose name does not start with '.'. None at all gives [] (the
    caller says what that means); DataError names every class folder that holds no file at any
    depth (hidden files do not count, the trainer skips them), and a `parent` that is missing, not
    a folder or unreadable.

    A manifest lists files, never folders, so an empty class folder passes verify_snapshot; the
    trainer would still count it as a class and fail once the run has started."""
    folder = Path(root) / parent
    where = "check data.train_dir / data.val_dir, or the snapshot"
    try:
        classes = sorted(e.name for e in os.scandir(folder) if not e.name.startswith(".") and e.is_dir())
        empty = [name for name in classes if not _holds_a_file(folder / name)]
    except FileNotFoundError as e:
        raise DataError(
            f"{_shown(str(e.filename or folder))} does not exist",
            f"the snapshot needs {parent}/<class>/<image> folders; {where}",
        ) from None
    except NotADirectoryError:
        raise DataError(
            f"{_shown(str(folder))} is not a folder", f"the snapshot needs {parent}/<class>/<image> folders; {where}"
        ) from None
    except OSError as e:
        raise DataError(
            f"cannot list {_shown(str(e.filename or folder))}: {e.strerror or e}", "make the snapshot readable"
        ) from None
    if empty:
        n = len(empty)
        raise DataError(
            f"{_shown(str(folder))}: {n} class folder{'s hold' if n != 1 else ' holds'} no files",
            f"the trainer counts every folder in {parent}/ as a class: put the class's images in it and take a "
            "new snapshot (`reproexec data snapshot DIR`), or remove the empty folder",
            details=_capped([f"{_shown(f'{parent}/{name}/')}: empty" for name in empty]),
        )
    return classes


def _holds_a_file(folder: Path) -> bool:
    """Whether a file the trainer would read (one not named .*) is anywhere under `folder`; it stops
    at the first. Links are not followed into (verify refuses them anyway)."""
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif not e.name.startswith(".") and e.is_file():
                    return True
    return False


def _find_renames(root: str, missing: Sequence[FileEntry], unexpected: Sequence[str]) -> list[tuple[str, str]]:
    """Pair each missing file with an unexpected file of the same size and sha256."""
    by_size: dict[int, list[FileEntry]] = {}
    for f in missing:
        by_size.setdefault(f.bytes, []).append(f)
    candidates = []
    for rel in unexpected:
        try:
            size = os.lstat(os.path.join(root, rel)).st_size
        except OSError:
            continue
        if size in by_size:
            candidates.append((rel, size))
    pairs = []
    used: set[str] = set()
    for (rel, _), (size, digest, _) in zip(candidates, hashing.hash_files(root, candidates)):
        for f in by_size.get(size, []):
            if digest == f.sha256 and f.relpath not in used:
                used.add(f.relpath)
                pairs.append((f.relpath, rel))
                break
    return sorted(pairs, key=lambda p: p[1])


def _relpath_inside(root: Path, path: Path) -> str | None:
    try:
        return Path(os.path.realpath(path)).relative_to(os.path.realpath(root)).as_posix()
    except ValueError:
        return None


def _existing_dir(root: Path) -> Path:
    if not root.exists():
        raise DataError(
            f"dataset folder {root} does not exist", "pass the snapshot folder (the one holding manifest.json)"
        )
    if not root.is_dir():
        raise DataError(f"{root} is not a folder", "pass the snapshot folder (the one holding manifest.json)")
    return root


def _progress(factory: ProgressFactory | None, description: str, total: int, total_bytes: int):  # type: ignore[no-untyped-def]
    if factory is None:
        return nullcontext(lambda n_items, n_bytes: None)
    return factory(description, total, bytes_total=total_bytes)


def snapshot_state(root: Path, manifest: DatasetManifest) -> dict[str, tuple[int, int, int, int] | None]:
    """Size, mtime, ctime and inode of every file of a verified snapshot (one stat each): a file
    written or replaced after verification changes its ctime, which no one but root can set back."""
    out: dict[str, tuple[int, int, int, int] | None] = {}
    for f in manifest.files:
        try:
            st = os.stat(root / f.relpath, follow_symlinks=False)
            out[f.relpath] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        except OSError:
            out[f.relpath] = None
    return out


def snapshot_changes(root: Path, manifest: DatasetManifest, before: dict[str, Any]) -> list[str]:
    """What changed in a snapshot since `before` (snapshot_state when it was verified): files
    written, replaced or removed, and files added."""
    now = snapshot_state(root, manifest)
    changed = [rel for rel, state in before.items() if now.get(rel) != state]
    added = [rel for rel in hashing.walk(str(root), manifest.excludes, RESERVED_NAMES).files if rel not in before]
    return [f"{rel} (changed)" for rel in changed] + [f"{rel} (added)" for rel in added]
