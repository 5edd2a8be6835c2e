"""Walking a snapshot folder and hashing its files.

Files are opened with O_NOFOLLOW | O_NONBLOCK and checked with fstat, so a symlink or a fifo found
where a file was listed is refused instead of followed or blocked on. Many files are hashed in a
standard-library process pool (between files Python holds the GIL, so threads do not scale), in
batches of small files, and each large file as a task of its own so the cores share them.
benchmarks/bench_verify.py has the figures behind these choices.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import NamedTuple

from reproexec.errors import ReproexecError

CHUNK = 1 << 20  # read size
LARGE = 4 << 20  # a file from this size on is a task of its own
BATCH = 512  # small files per task
POOL_MIN_BYTES = 64 << 20  # with fewer bytes and at most BATCH files, no pool is started

MISSING = "does not exist"
Hashed = tuple[int, str | None, str | None]  # (bytes on disk or -1, sha256 or None, error or None)

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


ESCAPES = ", outside the snapshot"  # ends what is wrong with a symlink that leaves the folder


class WalkResult(NamedTuple):
    files: dict[str, int]  # relpath (POSIX separators) -> size (-1 unless asked for), sorted by relpath
    irregular: list[tuple[str, str]]  # (relpath, what is wrong) for what is not a plain readable file


def is_excluded(relpath: str, name: str, patterns: Sequence[str]) -> bool:
    """A pattern with a '/' matches the whole relpath; one without matches a name at any depth."""
    return any(fnmatchcase(relpath if "/" in p else name, p) for p in patterns)


def walk(
    root: str, excludes: Sequence[str] = (), skip_root_names: Iterable[str] = (), with_sizes: bool = False
) -> WalkResult:
    """Every regular file under root (no symlink followed), and everything else found.

    Names are kept exactly as the filesystem gives them (no Unicode normalization). Excluded entries
    (and `skip_root_names` at the top level) are not looked at; an excluded folder is pruned.
    Sizes cost an lstat per file, so only callers that use them ask.
    """
    files: dict[str, int] = {}
    irregular: list[tuple[str, str]] = []
    skip = frozenset(skip_root_names)
    real_root = os.path.realpath(root)
    stack = [("", root)]
    while stack:
        prefix, path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError as e:
            irregular.append((prefix.rstrip("/") or ".", f"cannot list folder: {e.strerror}"))
            continue
        for entry in entries:
            rel = prefix + entry.name
            if (not prefix and entry.name in skip) or (excludes and is_excluded(rel, entry.name, excludes)):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", entry.path))
                elif entry.is_file(follow_symlinks=False):
                    files[rel] = entry.stat(follow_symlinks=False).st_size if with_sizes else -1
                else:
                    irregular.append((rel, _what_is_it(entry.path, real_root)))
            except OSError as e:
                irregular.append((rel, e.strerror or str(e)))
    return WalkResult(dict(sorted(files.items())), sorted(irregular))


def _what_is_it(path: str, real_root: str) -> str:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        resolved = os.path.realpath(path)
        inside = resolved == real_root or resolved.startswith(real_root.rstrip(os.sep) + os.sep)
        return f"symlink to {os.readlink(path)}" + ("" if inside else ESCAPES)
    if stat.S_ISFIFO(mode):
        return "named pipe (fifo)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return f"not a regular file (mode {stat.filemode(mode)})"


def hash_file(root: str, relpath: str, expected_bytes: int = -1) -> Hashed:
    """(bytes, sha256, None) of one plain file, or why not.

    With `expected_bytes` ≥ 0 a file of another size is not read: (its size, None, None).

    Not fsutil.sha256_file: a path listed in a manifest may be a fifo (open must not block) and
    the size is checked before anything is read; and hashlib.file_digest's 256 KiB buffer per
    call made small files cost 2-3x the CPU (benchmarks/bench_verify.py).
    """
    try:
        fd = os.open(os.path.join(root, relpath), _OPEN_FLAGS)
    except OSError as e:
        return -1, None, _reason(e)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return -1, None, "not a regular file"
        if 0 <= expected_bytes != st.st_size:
            return st.st_size, None, None
        h, left = hashlib.sha256(), st.st_size + 1  # asking for one byte more notices a file that grew
        while left and (chunk := os.read(fd, min(left, CHUNK))):
            h.update(chunk)
            left -= len(chunk)
        if left != 1:
            return st.st_size, None, "changed size while it was hashed"
        return st.st_size, h.hexdigest(), None
    except OSError as e:
        return -1, None, _reason(e)
    finally:
        os.close(fd)


def _reason(e: OSError) -> str:
    import errno

    if e.errno == errno.ELOOP:
        return "is a symlink"
    if e.errno == errno.ENOENT:
        return MISSING
    return e.strerror or str(e)


def _hash_batch(root: str, batch: Sequence[tuple[str, int]]) -> list[Hashed]:
    return [hash_file(root, rel, expected) for rel, expected in batch]


def hash_files(
    root: str,
    items: Sequence[tuple[str, int]],
    advance: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> list[Hashed]:
    """hash_file for each (relpath, expected bytes or -1) item; results in input order.

    `advance(files, bytes)` is called in this thread as tasks finish. Large files go first
    (the longest task first keeps every core busy to the end).
    """
    large = sorted((i for i, (_, n) in enumerate(items) if n >= LARGE), key=lambda i: -items[i][1])
    small = [i for i, (_, n) in enumerate(items) if n < LARGE]
    tasks = [[i] for i in large] + [small[k : k + BATCH] for k in range(0, len(small), BATCH)]
    results: list[Hashed] = [(-1, None, None)] * len(items)

    def store(task: list[int], hashed: list[Hashed]) -> None:
        for i, r in zip(task, hashed):
            results[i] = r
        if advance:
            advance(len(task), sum(r[0] for r in hashed if r[1] is not None))

    cpus = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )  # macOS has no affinity
    workers = min(workers or cpus, len(tasks))
    if workers < 2 or (len(items) <= BATCH and sum(max(n, 0) for _, n in items) < POOL_MIN_BYTES):
        for task in tasks:
            store(task, _hash_batch(root, [items[i] for i in task]))
        return results

    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # On the way out (an error, Ctrl-C) the queued tasks are cancelled and the running ones end.
    pool = ProcessPoolExecutor(workers, initializer=_init_worker)
    try:
        futures = {pool.submit(_hash_batch, root, [items[i] for i in task]): task for task in tasks}
        for future in as_completed(futures):
            store(futures[future], future.result())
    except BrokenProcessPool:
        raise ReproexecError(
            "a hashing worker process ended unexpectedly (killed, or out of memory)",
            "run the command again; if it recurs, look for the out-of-memory killer in the system log",
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _init_worker() -> None:
    """Ctrl-C reaches the whole process group: leave it to the parent, which stops the pool (each
    worker would print a traceback). And die with the parent: a parent killed outright (SIGKILL, or
    SIGTERM unhandled) would leave its workers waiting on the task queue forever."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux only)
    except (OSError, AttributeError):
        pass
