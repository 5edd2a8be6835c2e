"""reproexec's version: one string that names the build exactly, never the clock.

In a git checkout the version comes from git (setuptools-scm): `0.1.dev112+g67258c75`, the commit
distance and the commit; a tree with uncommitted changes adds a hash of the sources that go into the
wheel (`+g67258c75.s3f9a0c1d2e`), so two different builds never share a version string. Neither
part depends on the date (setuptools-scm's default local part for a dirty tree does): the version is
inside reproexec's wheel, the wheel is part of every image's content hash, and a version that
changed at midnight would be a cache miss for every run. Installed from a wheel, the version is the
one the wheel's metadata carries.

This file is also hatchling's version source (pyproject.toml: `[tool.hatch.version]`), loaded by
path while the wheel is built, so it imports nothing from reproexec.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

# What goes into reproexec's wheel (pyproject's packages + force-include + readme): the sources
# whose hash names a dirty tree's build and keys the cache of built wheels (env/selfwheel.py).
WHEEL_TOP_FILES = ("pyproject.toml", "README.md", "Dockerfile.cpu", "Dockerfile.cuda")
WHEEL_TREES = ("reproexec", "templates")
# A checkout without git metadata (a source archive) is named by its sources alone.
_NO_GIT = "0+src"


def checkout_root() -> Path | None:
    """The source checkout this module lives in, or None when reproexec is installed from a wheel."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        if pyproject.is_file() and 'name = "reproexec"' in pyproject.read_text(encoding="utf-8"):
            return root
    except OSError:
        pass
    return None


def source_hash(root: Path) -> str:
    """sha256 over the wheel's source files (relative path and content, in path order)."""
    files = list(WHEEL_TOP_FILES)
    for tree in WHEEL_TREES:
        files += [
            p.relative_to(root).as_posix()
            for p in (root / tree).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
    return tree_sha256(root, files)


def tree_sha256(root: Path, relpaths: Iterable[str]) -> str:
    """The one folder hash (the wheel's sources here, a code folder outside git in codebox): sha256
    over the files `relpaths` (POSIX, relative to `root`), in path order, each as its path's bytes
    (surrogateescape: a name that is not UTF-8 hashes as the bytes it is), a NUL and the sha256 of
    its content, read in chunks, so a file of any size costs no memory. OSError naming the file if
    one cannot be read or is not a regular file (opened without blocking: a FIFO never hangs)."""
    h = hashlib.sha256()
    for rel in sorted(relpaths):
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        path = root / rel
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(path))
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def version_of_checkout(root: Path) -> str:
    """The version of the checkout at `root`, from git; from its sources alone without git."""
    try:
        from setuptools_scm import get_version

        return get_version(root=str(root), version_scheme="guess-next-dev", local_scheme=lambda v: _local_part(v, root))
    except (ImportError, LookupError, OSError):
        return f"{_NO_GIT}.{source_hash(root)[:12]}"


def _local_part(scm_version: object, root: Path) -> str:
    node = getattr(scm_version, "node", None)
    if not node:
        return ""
    local = f"+{node[:9]}"  # "g" and 8 hex digits of the commit
    if getattr(scm_version, "dirty", False) and _wheel_sources_changed(root):
        local += f".s{source_hash(root)[:10]}"
    return local


def _wheel_sources_changed(root: Path) -> bool:
    """Whether the files that go into the wheel differ from the commit: an edited test or benchmark
    leaves the version (and so every image tag) as it is. True when git cannot tell."""
    import subprocess

    paths = ["--", *WHEEL_TOP_FILES, *WHEEL_TREES]
    try:
        diff = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", *paths], capture_output=True)
        new = subprocess.run(
            ["git", "-C", str(root), "ls-files", "--others", "--exclude-standard", *paths],
            capture_output=True,
            text=True,
        )
    except OSError:
        return True
    return diff.returncode != 0 or bool(new.stdout.strip())


@functools.cache
def version() -> str:
    """This reproexec's version (see the module docstring)."""
    root = checkout_root()
    if root is not None and (root / ".git").exists():
        return version_of_checkout(root)
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("reproexec")
    except PackageNotFoundError:
        return version_of_checkout(root) if root is not None else "0+unknown"
