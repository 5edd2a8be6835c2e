"""File helpers, one of each: the atomic write and the file hash every module uses.

`write_atomic` gives one guarantee everywhere: the bytes go to a temporary file in the same
folder (created exclusively, never through a link), are fsynced, renamed over the target, and the
folder is fsynced; on any failure (a full disk included) the temporary file is removed, so no
half-written file and no `.tmp` is ever left behind. No code outside this module needs the
runtime's third-party libraries, so the trainer inside the container uses it too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def open_atomic(path: Path | str, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` when the block ends without an error (see the module
    docstring); on an error, nothing replaces `path` and the temporary file is gone."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path | str, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably (see the module docstring)."""
    with open_atomic(path, mode=mode) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def fsync_dir(folder: Path | str) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems refuse fsync on a folder; the rename itself happened
        if e.errno not in (errno.EINVAL, errno.EROFS):
            raise
    finally:
        os.close(fd)


def dumps_json(obj: Any) -> str:
    """The one JSON form reproexec writes: sorted keys, 2-space indent, a final newline."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def write_json_atomic(path: Path | str, obj: Any) -> None:
    write_atomic(path, dumps_json(obj))


def sha256_file(path: Path | str, *, follow_symlinks: bool = True) -> str:
    """sha256 of a file's bytes. With follow_symlinks=False a link is refused (OSError ELOOP)."""
    flags = os.O_RDONLY | _CLOEXEC | (0 if follow_symlinks else _NOFOLLOW)
    with os.fdopen(os.open(path, flags), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class UnreadableFile(OSError):
    """A file someone else chose that reproexec will not read: not a regular file, or over a limit."""


def read_bounded(path: Path | str, limit: int, *, follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them; UnreadableFile for a device, a
    FIFO, a socket or a folder (opened without blocking, so a FIFO never hangs the caller) or a
    larger file, whatever its `st_size` claims (a device reports 0). With follow_symlinks=False a
    link is refused (OSError ELOOP). Every read of a file from elsewhere (a config, a lockfile, a
    run's output, a bundle's member) goes through here or through a bounded stream."""
    flags = os.O_RDONLY | os.O_NONBLOCK | _CLOEXEC | (0 if follow_symlinks else _NOFOLLOW)
    fd = os.open(path, flags)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
        raise UnreadableFile(errno.EINVAL, f"{kind}, not a regular file", str(path))
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(errno.EFBIG, f"larger than the limit of {limit:,} bytes", str(path))
    return data


# Limits on what reproexec reads of a file a run (or a bundle) wrote; README's reliability section.
MAX_JSON_BYTES = 64 * 1024**2  # one JSON file (run.json has its own, lower, limit)
MAX_JSONL_BYTES = 256 * 1024**2  # one metrics file
MAX_JSONL_ROWS = 1_000_000  # rows of one metrics file (a row is ~100 bytes, ~1 KB once parsed)


def load_json(path: Path | str, limit: int = MAX_JSON_BYTES) -> Any:
    """JSON from a file someone else wrote: a regular file (no link followed), at most `limit`
    bytes. OSError if it cannot be read so; ValueError if it is not JSON, not UTF-8, or nested too
    deeply to parse (a RecursionError is a ValueError here)."""
    data = read_bounded(path, limit, follow_symlinks=False)
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None


def read_json_object(path: Path | str, limit: int = MAX_JSON_BYTES) -> dict[str, Any] | None:
    """A JSON object a run may have written, or None when the file is missing, unreadable, not JSON
    or not an object: what a run left is read, never trusted to be well-formed."""
    try:
        doc = load_json(path, limit)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_jsonl_objects(
    path: Path | str, *, limit: int = MAX_JSONL_BYTES, max_rows: int = MAX_JSONL_ROWS
) -> tuple[list[dict[str, Any]], str | None]:
    """The JSON-object lines of a metrics file a run wrote (blank lines skipped), and the first
    problem met, in words: a line that is not a JSON object (named by its number; the rows before and
    after it are kept), more than `max_rows` rows or `limit` bytes (the rest is not read). A missing
    or unreadable file gives no rows and its problem."""
    try:
        data = read_bounded(path, limit, follow_symlinks=False)
    except FileNotFoundError:
        return [], None
    except UnreadableFile as e:
        if e.errno != errno.EFBIG:
            return [], f"{Path(path).name}: {e.strerror}"
        with os.fdopen(os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC), "rb") as f:
            data = f.read(limit)
        data = data[: data.rfind(b"\n") + 1]
        problem: str | None = f"{Path(path).name} is larger than {limit:,} bytes: only its first rows were read"
    except OSError as e:
        return [], f"{Path(path).name}: {e.strerror or e}"
    else:
        problem = None
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(io.BytesIO(data), 1):  # line by line: no second copy of the file as a list
        if not line.strip():
            continue
        if len(rows) >= max_rows:
            problem = problem or f"{Path(path).name} has more than {max_rows:,} rows: only the first were read"
            break
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif problem is None:
            problem = f"{Path(path).name} line {n} is not a JSON object (the other rows were kept)"
    return rows, problem


def canonical_sha256(obj: Any) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys, no spaces, ASCII): the one form every
    content hash reproexec computes over a document takes (image tags, base content ids, cell ids,
    run fingerprints), so the same inputs hash the same in any process, on any machine. (A dataset's
    manifest id keeps its own, older form: data/manifest.py.)"""
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    ).hexdigest()


MAX_PATH_BYTES = 4096  # PATH_MAX on Linux: no longer path can be opened


def cache_dir() -> Path:
    """reproexec's cache on this machine (wheels, base rootfs, its own wheels, smoke snapshots):
    $REPROEXEC_CACHE, else $XDG_CACHE_HOME/reproexec, else ~/.cache/reproexec."""
    env = os.environ.get("REPROEXEC_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "reproexec"


def relpath_problem(rel: str) -> str | None:
    """Why `rel` cannot be a path inside a folder someone else wrote, or None: the one check of a
    relative path (a manifest's entries and names found on disk, a run's artifacts, a bundle's
    members, a recipe's files, a config's folders): relative, normalized, inside the folder, no
    control character, NUL or lone surrogate, not longer than a path Linux opens. A backslash or
    'C:' is a legal POSIX name (code may hold one); manifests refuse them for portability."""
    if not rel:
        return "is empty"
    printable = rel.isprintable()  # False for every control character and lone surrogate
    if not printable and "\x00" in rel:
        return "holds a NUL character"
    if rel[0] == "/":
        return "is absolute; it must be relative to the folder"
    parts = rel.split("/")
    if ".." in parts:
        return "contains '..'; it must stay inside the folder"
    if "" in parts or "." in parts:
        return "has an empty or '.' component; write it normalized (a/b.png)"
    if not printable and any(c < " " or c == "\x7f" for c in rel):
        return "holds a control character"
    if not printable and any("\ud800" <= c <= "\udfff" for c in rel):  # JSON can carry them; no file name can
        return "holds a lone surrogate (\\ud800-\\udfff), which is not a character; file names are UTF-8"
    if len(rel) > MAX_PATH_BYTES // 4 and len(rel.encode("utf-8")) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES:,} bytes, the longest path Linux opens"
    return None


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def piped(write: Callable[[BinaryIO], None]) -> Iterator[BinaryIO]:
    """A stream to read what `write(out)` writes, produced by a thread as it is read: gigabytes go
    from one API to another (a build context to Docker, a saved image through a filter) with no
    temporary copy on disk. A reader that stops early closes the pipe and the writer ends on the
    broken pipe. An error of the writer's is raised here, in place of the reader's own error
    (a short stream is only its symptom)."""
    r, w = os.pipe()
    reader, writer = os.fdopen(r, "rb"), os.fdopen(w, "wb")
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with writer:
                write(writer)
        except BrokenPipeError:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the reader's side
            failure.append(e)

    thread = threading.Thread(target=produce, name="piped", daemon=True)
    thread.start()
    try:
        yield reader
    except BaseException:
        reader.close()
        thread.join()
        if failure:
            raise failure[0] from None
        raise
    reader.close()
    thread.join()
    if failure:
        raise failure[0]
