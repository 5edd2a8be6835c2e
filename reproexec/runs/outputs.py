"""What a run's process wrote, taken into the run folder as untrusted input.

The training process (a container, or with `--runtime local` a subprocess) never sees the run
folder: it writes into a private staging folder. When it has exited, the host walks that folder
without following anything (directory file descriptors, `O_NOFOLLOW`, `lstat`) and moves each
plain file into the run folder, as the run's owner, with plain permissions (0644, or 0755 when the
owner could execute it). What it refuses stays behind and is deleted with the staging folder:

- symbolic links (never followed; recorded with their target, the run is not failed for them:
  training scripts often link `latest.pth`)
- devices, fifos and sockets
- files with the setuid or setgid bit, and hard links (a file with more than one name)
- files over the per-file limit, more files or bytes than the limits allow, folders nested too deep
- names that are not UTF-8 or hold control characters
- names of reproexec's own records at the top level (run.json, config.yaml, ...): a run cannot
  forge what reproexec says about it

Everything refused except links makes the run `failed` ("unsafe outputs"); all of it is named in
run.json. The sha256 of every file taken in is computed on the way, so run.json needs no second
read of the outputs.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 32


@dataclass(frozen=True)
class Limits:
    file_bytes: int = 64 * 1024**3
    total_bytes: int = 256 * 1024**3
    files: int = 100_000


@dataclass
class Intake:
    files: dict[str, str] = field(default_factory=dict)  # relpath -> sha256, as taken in
    bytes: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)  # {"path", "why"}: the run fails
    links: list[dict[str, str]] = field(default_factory=list)  # {"path", "target"}: not taken in
    entries: int = 0  # files, folders and everything else seen

    @property
    def unsafe(self) -> bool:
        return bool(self.refused)

    def record(self) -> dict[str, object]:
        return {"files": len(self.files), "bytes": self.bytes, "refused": self.refused, "links": self.links}


def make_staging(staging: Path, owner: tuple[int, int] | None, subdirs: tuple[str, ...] = ()) -> Path:
    """The folder the run's process may write, created fresh (never reused), owned by the uid:gid
    the process runs as when the host is root, inside a parent only the host can enter; `subdirs`
    are made ready in it (e.g. metrics/ for $REPROEXEC_METRICS)."""
    parent = staging.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(parent, 0o700)
    staging.mkdir(mode=0o700)
    for folder in [staging, *(staging / s for s in subdirs)]:
        folder.mkdir(mode=0o700, exist_ok=True)
        if owner is not None and os.geteuid() == 0:
            os.chown(folder, *owner)
    return staging


def remove_tree(path: Path) -> None:
    """Delete a staging folder without following any link in it (shutil.rmtree's fd-based walk)."""
    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux always has it
        raise RuntimeError("this platform cannot delete untrusted folders safely")
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass


def take_outputs(
    staging: Path, run_dir: Path, *, owner: tuple[int, int], reserved: frozenset[str], limits: Limits = Limits()
) -> Intake:
    """Move what the run wrote in `staging` into `run_dir` (see the module docstring)."""
    intake = Intake()
    src = os.open(staging, _DIR_FLAGS)
    dst = os.open(run_dir, _DIR_FLAGS)
    try:
        _walk(src, dst, "", 0, intake, owner, reserved, limits)
    finally:
        os.close(src)
        os.close(dst)
    return intake


def _walk(
    src: int,
    dst: int,
    prefix: str,
    depth: int,
    intake: Intake,
    owner: tuple[int, int],
    reserved: frozenset[str],
    limits: Limits,
) -> None:
    for name in sorted(os.listdir(src)):
        rel = prefix + name
        intake.entries += 1
        if intake.entries > limits.files:
            if intake.entries == limits.files + 1:
                intake.refused.append({"path": rel, "why": f"more than {limits.files:,} files and folders"})
            continue
        why = _name_problem(name)
        if why:
            intake.refused.append({"path": rel.encode("utf-8", "backslashreplace").decode(), "why": why})
            continue
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            intake.links.append({"path": rel, "target": os.readlink(name, dir_fd=src)})
        elif stat.S_ISDIR(st.st_mode):
            if depth + 1 >= MAX_DEPTH:
                intake.refused.append({"path": rel, "why": f"folders nested more than {MAX_DEPTH} deep"})
                continue
            if depth == 0 and name in reserved:
                intake.refused.append({"path": rel, "why": "a reproexec record has this name"})
                continue
            _take_dir(src, dst, name, rel, depth, intake, owner, reserved, limits)
        elif stat.S_ISREG(st.st_mode):
            _take_file(src, dst, name, rel, depth, intake, owner, reserved, limits)
        else:
            intake.refused.append({"path": rel, "why": "a device, fifo or socket"})


def _take_dir(
    src: int,
    dst: int,
    name: str,
    rel: str,
    depth: int,
    intake: Intake,
    owner: tuple[int, int],
    reserved: frozenset[str],
    limits: Limits,
) -> None:
    sub_src = os.open(name, _DIR_FLAGS, dir_fd=src)
    try:
        try:
            os.mkdir(name, 0o755, dir_fd=dst)
        except FileExistsError:
            pass
        sub_dst = os.open(name, _DIR_FLAGS, dir_fd=dst)  # O_NOFOLLOW: only a real folder of ours
        try:
            if os.geteuid() == 0:
                os.fchown(sub_dst, *owner)
            _walk(sub_src, sub_dst, rel + "/", depth + 1, intake, owner, reserved, limits)
        finally:
            os.close(sub_dst)
    finally:
        os.close(sub_src)


def _take_file(
    src: int,
    dst: int,
    name: str,
    rel: str,
    depth: int,
    intake: Intake,
    owner: tuple[int, int],
    reserved: frozenset[str],
    limits: Limits,
) -> None:
    def refuse(why: str) -> None:
        intake.refused.append({"path": rel, "why": why})

    if depth == 0 and name in reserved:
        return refuse("a reproexec record has this name")
    fd = os.open(name, _FILE_FLAGS, dir_fd=src)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return refuse("not a plain file")
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            return refuse("setuid/setgid bit set")
        if st.st_nlink != 1:
            return refuse(f"a hard link ({st.st_nlink} names for one file)")
        if st.st_size > limits.file_bytes:
            return refuse(f"{st.st_size:,} bytes (limit {limits.file_bytes:,} per file)")
        if intake.bytes + st.st_size > limits.total_bytes:
            return refuse(f"over the limit of {limits.total_bytes:,} bytes for all of a run's outputs")
        os.fchmod(fd, 0o755 if st.st_mode & stat.S_IXUSR else 0o644)
        if os.geteuid() == 0:
            os.fchown(fd, *owner)
        with os.fdopen(os.dup(fd), "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        copied = False
        try:
            os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            _copy(fd, name, dst)  # staging on another filesystem: copy what was checked
            copied = True
        moved = os.stat(name, dir_fd=dst, follow_symlinks=False)
        same = (moved.st_dev, moved.st_ino) == (st.st_dev, st.st_ino)
        if not stat.S_ISREG(moved.st_mode) or not (copied or same):
            raise OSError(errno.EIO, f"{rel} changed while it was taken in")
        intake.files[rel] = digest
        intake.bytes += st.st_size
    finally:
        os.close(fd)
    return None


def _copy(fd: int, name: str, dst: int) -> None:
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dst)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while os.sendfile(out, fd, None, 1 << 30):
            pass
        os.fsync(out)
    finally:
        os.close(out)


def _name_problem(name: str) -> str | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "the name holds control characters"
    return None
