"""Lockfiles: exact versions with sha256 hashes.

Resolving is pip-tools' job (`pip-compile --generate-hashes`), run with the same pip configuration
as the user's pip, so local indexes (e.g. a disk mirror with torch) are used as pip would use them.
Reading is reproexec's own and strict: a lockfile reproexec builds from must pin every package with
`==` and carry at least one sha256 per package; anything looser is refused before a build starts.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reproexec.errors import LockError

_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class LockedRequirement:
    name: str  # canonical (PEP 503) name
    version: str
    hashes: tuple[str, ...]  # hex digests, sorted
    marker: str | None
    line: int

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Lockfile:
    path: Path
    text: str
    requirements: tuple[LockedRequirement, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def get(self, name: str) -> LockedRequirement | None:
        from packaging.utils import canonicalize_name

        key = canonicalize_name(name)
        return next((r for r in self.requirements if r.name == key), None)

    def missing(self, names: list[str]) -> list[str]:
        return [n for n in names if self.get(n) is None]

    def text_of(self, reqs: Iterable[LockedRequirement]) -> str:
        """This lockfile's own lines for these pins (continuations joined, comments dropped)."""
        lines = dict(logical_lines(self.text))
        return "".join(lines[r.line] + "\n" for r in reqs)


def read_lock(path: str | Path) -> Lockfile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(
            f"lockfile {path} does not exist",
            f"create it with `reproexec lock requirements.in -o {path}`",
        ) from None
    return parse_lock(text, path)


def parse_lock(text: str, path: Path) -> Lockfile:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    problems: list[str] = []
    reqs: list[LockedRequirement] = []
    for lineno, logical in logical_lines(text):
        try:  # shlex only where quoting or escapes need it: it costs ~10 ms a line, str.split ~1 µs
            tokens = shlex.split(logical) if any(c in logical for c in "'\"\\") else logical.split()
        except ValueError as e:
            problems.append(f"line {lineno}: cannot be split ({e})")
            continue
        req_tokens = [t for t in tokens if not t.startswith("-")]
        options = [t for t in tokens if t.startswith("-")]
        hashes: list[str] = []
        bad_option = False
        for opt in options:
            if opt.startswith("--hash="):
                value = opt[len("--hash=") :]
                if not _HASH_RE.match(value):
                    problems.append(f"line {lineno}: hash {value!r} is not sha256:<64 hex digits>")
                hashes.append(value.split(":", 1)[1])
            else:
                problems.append(f"line {lineno}: option {opt!r} is not allowed in a lockfile")
                bad_option = True
        if bad_option:
            continue
        spec = " ".join(req_tokens)
        try:
            req = Requirement(spec)
        except InvalidRequirement as e:
            problems.append(f"line {lineno}: {spec!r} is not a requirement ({e})")
            continue
        specs = list(req.specifier)
        if req.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            problems.append(f"line {lineno}: {spec!r} is not pinned to one exact version (name==version)")
            continue
        if not hashes:
            problems.append(f"line {lineno}: {req.name}=={specs[0].version} has no --hash=sha256:...")
            continue
        reqs.append(
            LockedRequirement(
                name=canonicalize_name(req.name),
                version=specs[0].version,
                hashes=tuple(sorted(set(hashes))),
                marker=str(req.marker) if req.marker else None,
                line=lineno,
            )
        )
    seen: dict[str, int] = {}
    for r in reqs:
        if r.name in seen and r.marker is None:
            problems.append(f"line {r.line}: {r.name} is pinned twice (first on line {seen[r.name]})")
        seen.setdefault(r.name, r.line)
    if not reqs and not problems:
        problems.append("no requirements at all")
    if problems:
        raise LockError(
            f"lockfile {path} cannot be used for a reproducible build",
            f"regenerate it with `reproexec lock requirements.in -o {path}` (exact pins with sha256 hashes)",
            details=problems,
        )
    return Lockfile(path=path, text=text, requirements=tuple(sorted(reqs, key=lambda r: r.name)))


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations and drop comments, keeping the first physical line number."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for i, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not buf:
            start = i
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            out.append((start, buf.strip()))
        buf = ""
    if buf.strip():
        out.append((start, buf.strip()))
    return out


@dataclass(frozen=True)
class LockResult:
    lockfile: Lockfile
    resolver: str


def compile_lock(requirements_in: str | Path, output: str | Path, *, upgrade: bool = False) -> LockResult:
    """Resolve `requirements_in` into a hashed lockfile with pip-tools."""
    requirements_in, output = Path(requirements_in), Path(output)
    if not requirements_in.is_file():
        raise LockError(f"requirements file {requirements_in} does not exist", "pass a requirements.in file")
    try:
        import piptools  # noqa: F401
    except ImportError:
        raise LockError("pip-tools is not installed", "pip install pip-tools") from None
    cmd = [
        sys.executable, "-m", "piptools", "compile",
        "--generate-hashes",   # every package pinned to its sha256
        "--allow-unsafe",      # pin setuptools/pip too: --require-hashes refuses unpinned ones
        "--strip-extras",
        "--no-header",         # no timestamp or command line: same inputs, same bytes
        "--no-emit-index-url",  # indexes are this machine's business, not the lock's
        "--no-emit-find-links",
        "--resolver=backtracking",
        "--quiet",
        "-o", str(output),
    ]  # fmt: skip
    if upgrade:
        cmd.append("--upgrade")
    cmd.append(str(requirements_in))
    env = dict(os.environ, CUSTOM_COMPILE_COMMAND=f"reproexec lock {requirements_in} -o {output}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-15:]
        raise LockError(
            f"pip-tools could not resolve {requirements_in}",
            "fix the conflicting or unavailable requirements named above",
            details=tail,
        )
    return LockResult(lockfile=read_lock(output), resolver=_piptools_version())


def _piptools_version() -> str:
    from importlib.metadata import version

    return f"pip-tools {version('pip-tools')}"
