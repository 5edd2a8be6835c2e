"""File helpers, one of each: the atomic write and the file hash every module uses.

`write_atomic` gives one guarantee everywhere: the bytes go to a temporary file in the same
folder (created exclusively, never through a link), are fsynced, renamed over the target, and the
folder is fsynced; on any failure (a full disk included) the temporary file is removed, so no
half-written file and no `.tmp` is ever left behind. No code outside this module needs the
runtime's third-party libraries, so the trainer inside the container uses it too.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def write_atomic(path: Path | str, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably (see the module docstring)."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


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


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
