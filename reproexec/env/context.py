"""Build contexts as normalized tar streams.

Every member gets fixed metadata (uid/gid 0, no owner names, mtime 0, mode 0644/0755) and members
are sorted, so the same files give the same bytes in any process on any machine, and Docker's layer
cache keys (which hash file contents and metadata) stay stable.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from reproexec.fsutil import piped


@dataclass(frozen=True)
class ContextEntry:
    arcname: str
    sha256: str
    size: int
    mode: int = 0o644
    data: bytes | None = None  # small generated files
    path: Path | None = None  # large files (wheels), streamed from disk

    @classmethod
    def from_bytes(cls, arcname: str, data: bytes, mode: int = 0o644) -> ContextEntry:
        return cls(arcname, hashlib.sha256(data).hexdigest(), len(data), mode, data=data)

    @classmethod
    def from_file(cls, arcname: str, path: Path, sha256: str, mode: int = 0o644) -> ContextEntry:
        """`sha256` is the already-verified digest of `path` (wheels are checked before a build)."""
        return cls(arcname, sha256, path.stat().st_size, mode, path=path)


def write_context(entries: list[ContextEntry], out: IO[bytes]) -> None:
    """Write an uncompressed, normalized tar of `entries` (and their parent folders) to `out`."""
    dirs = sorted({str(Path(e.arcname).parents[i]) for e in entries for i in range(len(Path(e.arcname).parts) - 1)})
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            tar.addfile(_info(d, 0, 0o755, tarfile.DIRTYPE))
        for e in sorted(entries, key=lambda e: e.arcname):
            info = _info(e.arcname, e.size, e.mode, tarfile.REGTYPE)
            if e.data is not None:
                tar.addfile(info, io.BytesIO(e.data))
            else:
                assert e.path is not None
                with open(e.path, "rb") as f:
                    tar.addfile(info, f)


@contextmanager
def streamed_context(entries: list[ContextEntry]) -> Iterator[IO[bytes]]:
    """The context tar of `entries` as a stream, written as Docker reads it: a build sends
    gigabytes of wheels without a temporary copy of them on disk."""
    with piped(lambda out: write_context(entries, out)) as stream:
        yield stream


def _info(name: str, size: int, mode: int, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.type = kind
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
