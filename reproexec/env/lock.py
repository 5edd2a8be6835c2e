"""Lockfiles: exact versions with sha256 hashes.

Resolving is pip-tools' job (`pip-compile --generate-hashes`), run with the same pip configuration
as the user's pip, so local indexes (e.g. a disk mirror with torch) are used as pip would use them.
Reading is reproexec's own and strict: a lockfile reproexec builds from must pin every package with
`==` and carry at least one sha256 per package; anything looser is refused before a build starts.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reproexec.errors import LockError
from reproexec.fsutil import UnreadableFile, read_bounded

_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# A lockfile is read whole, so at most this much of it: a CUDA torch stack with every wheel's hash
# is a few hundred KB (examples/digits: 89 KB). Whatever env.lockfile names is read through
# read_bounded, so a device (/dev/zero), a FIFO or a folder is refused, not read or waited on.
MAX_LOCK_BYTES = 16 * 1024**2
# A lockfile of nothing but bad lines is reported by its first problems, not by millions of lines.
MAX_LOCK_PROBLEMS = 50
# One requirement with its continuation lines joined: torch with a hash for each of its ~30 wheels
# is ~3 KB. A longer one is refused unread (shlex over megabytes takes seconds and gigabytes).
MAX_LOGICAL_LINE = 64 * 1024


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
    command = f"`reproexec lock requirements.in -o {path}`"
    elsewhere = "point env.lockfile at the file `reproexec lock` wrote"
    try:
        text = read_bounded(path, MAX_LOCK_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise LockError(f"lockfile {path} does not exist", f"create it with {command}") from None
    except UnreadableFile as e:
        if e.errno == errno.EFBIG:
            raise LockError(
                f"lockfile {path} is larger than {MAX_LOCK_BYTES:,} bytes, the most reproexec reads",
                f"that is not a lockfile of pins and hashes; {elsewhere}",
            ) from None
        raise LockError(
            f"lockfile {path} cannot be read: it is {e.strerror}", f"{elsewhere} (a regular file)"
        ) from None
    except OSError as e:
        raise LockError(
            f"lockfile {path} cannot be read: {e.strerror or e}", f"make it readable, or {elsewhere}"
        ) from None
    except UnicodeDecodeError as e:
        raise LockError(
            f"lockfile {path} is not UTF-8 text: {e.reason} at byte {e.start}", f"regenerate it with {command}"
        ) from None
    return parse_lock(text, path)


def parse_lock(text: str, path: Path) -> Lockfile:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    problems: list[str] = []
    reqs: list[LockedRequirement] = []
    stopped_at = None
    for lineno, logical in logical_lines(text):
        if len(problems) >= MAX_LOCK_PROBLEMS:
            stopped_at = lineno
            break
        if len(logical) > MAX_LOGICAL_LINE:
            problems.append(
                f"line {lineno}: longer than {MAX_LOGICAL_LINE:,} characters with its continuations; not one requirement"
            )
            continue
        try:  # shlex only where quoting or escapes need it: it costs ~30 µs a line, str.split ~0.1 µs
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
                    problems.append(f"line {lineno}: hash {_short(value)} is not sha256:<64 hex digits>")
                hashes.append(value.partition(":")[2])
            else:
                problems.append(f"line {lineno}: option {_short(opt)} is not allowed in a lockfile")
                bad_option = True
        if bad_option:
            continue
        spec = " ".join(req_tokens)
        try:
            req = Requirement(spec)
        except InvalidRequirement as e:  # its first line says what is wrong; the rest repeats the spec
            problems.append(f"line {lineno}: {_short(spec)} is not a requirement ({str(e).splitlines()[0]})")
            continue
        specs = list(req.specifier)
        if req.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            problems.append(f"line {lineno}: {_short(spec)} is not pinned to one exact version (name==version)")
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
        details = problems[:MAX_LOCK_PROBLEMS]
        if stopped_at is not None:
            details.append(
                f"... and more: reading stopped at line {stopped_at}, after the first {MAX_LOCK_PROBLEMS} problems"
            )
        elif len(problems) > MAX_LOCK_PROBLEMS:
            details.append(f"... and {len(problems) - MAX_LOCK_PROBLEMS} more")
        raise LockError(
            f"lockfile {path} cannot be used for a reproducible build",
            f"regenerate it with `reproexec lock requirements.in -o {path}` (exact pins with sha256 hashes)",
            details=details,
        )
    return Lockfile(path=path, text=text, requirements=tuple(sorted(reqs, key=lambda r: r.name)))


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join backslash continuations and drop comments, keeping the first physical line number.
    Lazily, line by line (universal newlines), so a caller that stops early reads no further; a
    joined line stops growing just past MAX_LOGICAL_LINE characters (and is not stripped, so the
    caller sees it is too long)."""
    parts: list[str] = []
    size = start = 0
    for i, raw in enumerate(io.StringIO(text, newline=None), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not parts:
            start = i
        continued = line.endswith("\\")
        if size <= MAX_LOGICAL_LINE:
            part = line[:-1] + " " if continued else line
            parts.append(part)
            size += len(part)
        if continued:
            continue
        joined = "".join(parts)
        if joined.strip():
            yield start, joined.strip() if size <= MAX_LOGICAL_LINE else joined
        parts, size = [], 0
    joined = "".join(parts)
    if joined.strip():
        yield start, joined.strip() if size <= MAX_LOGICAL_LINE else joined


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
        sys.executable,
        "-m",
        "piptools",
        "compile",
        "--generate-hashes",  # every package pinned to its sha256
        "--allow-unsafe",  # pin setuptools/pip too: --require-hashes refuses unpinned ones
        "--strip-extras",
        "--no-header",  # no timestamp or command line: same inputs, same bytes
        "--no-emit-index-url",  # indexes are this machine's business, not the lock's
        "--no-emit-find-links",
        "--resolver=backtracking",
        "--quiet",
        "-o",
        str(output),
    ]
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


# `--platform` values and the machine their wheels are tagged for; the image's Python is this one's
# (pip-compile assumes that too), its glibc Debian bookworm's (the base's).
LOCK_PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
TARGET_GLIBC = "2.36"


def compile_lock_for(
    requirements_in: str | Path, output: str | Path, platform: str, *, upgrade: bool = False
) -> LockResult:
    """Resolve `requirements_in` for another platform's image (linux/arm64 from an amd64 machine, or
    linux/amd64 from a Mac): pip's resolver with that platform's wheel tags (`pip install --dry-run
    --report --platform ... --only-binary=:all:`), since pip-tools resolves only for the machine it
    runs on. Each pin gets the sha256 of the wheel chosen for that platform. Without --upgrade, the
    versions an existing `output` pins are kept (as constraints), as pip-compile keeps them."""
    import json
    import tempfile

    from packaging.utils import canonicalize_name

    from reproexec.env.wheels import TargetPlatform

    requirements_in, output = Path(requirements_in), Path(output)
    if platform not in LOCK_PLATFORMS:
        raise LockError(
            f"--platform {platform!r} is not one reproexec builds images for",
            f"pass one of {', '.join(LOCK_PLATFORMS)}",
        )
    if not requirements_in.is_file():
        raise LockError(f"requirements file {requirements_in} does not exist", "pass a requirements.in file")
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    target = TargetPlatform(py, f"cp{py.replace('.', '')}", LOCK_PLATFORMS[platform], TARGET_GLIBC)
    with tempfile.TemporaryDirectory(prefix="reproexec-lock-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--report", str(report), "--target", str(Path(tmp) / "none"), "--only-binary=:all:",
            "--implementation", "cp", "--python-version", py, "--abi", target.abi, "--abi", "abi3", "--abi", "none",
        ]  # fmt: skip
        for tag in target.platforms:
            cmd += ["--platform", tag]
        if output.is_file() and not upgrade:
            kept = Path(tmp) / "constraints.txt"
            kept.write_text("".join(f"{r.pin}\n" for r in read_lock(output).requirements), encoding="utf-8")
            cmd += ["-c", str(kept)]
        cmd += ["-r", str(requirements_in)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "is ignored" not in ln]
            raise LockError(
                f"pip could not resolve {requirements_in} for {platform} ({target.key})",
                "every requirement needs a wheel for that platform; fix the requirements named above"
                + ("" if upgrade else ", or pass --upgrade to move off the versions the existing lock pins"),
                details=tail[-15:],
            )
        chosen = json.loads(report.read_text(encoding="utf-8")).get("install") or []
    lines = [
        f"# Locked for {platform} (Python {py}, {target.platforms[0]}) by `reproexec lock {requirements_in} "
        f"--platform {platform} -o {output}`: one wheel per pin, the one that platform installs.\n"
    ]
    for item in sorted(chosen, key=lambda i: canonicalize_name(i["metadata"]["name"])):
        name, ver = canonicalize_name(item["metadata"]["name"]), item["metadata"]["version"]
        digest = ((item.get("download_info") or {}).get("archive_info") or {}).get("hashes", {}).get("sha256")
        if not digest:
            raise LockError(
                f"pip gave no sha256 for {name}=={ver} on {platform}", "lock from an index that serves hashes"
            )
        lines.append(f"{name}=={ver} \\\n    --hash=sha256:{digest}\n")
    text = "".join(lines)
    lock = parse_lock(text, output)  # what is written is what reproexec reads: strict, before it lands
    from reproexec.fsutil import write_atomic

    write_atomic(output, text)
    return LockResult(lockfile=lock, resolver=f"pip {_pip_version()} --dry-run --report ({platform})")


def _pip_version() -> str:
    from importlib.metadata import version

    return version("pip")


def _short(text: str) -> str:
    """A piece of a lockfile for an error line: its repr, at most 60 characters."""
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _piptools_version() -> str:
    from importlib.metadata import version

    return f"pip-tools {version('pip-tools')}"
