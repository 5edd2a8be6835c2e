"""The host-side wheelhouse: every wheel of a lockfile, downloaded once, verified, content-addressed.

Containers here cannot reach a package index, and a build should not need one anyway: pip on the
host downloads the wheels for the *image's* Python and platform, each file is checked against the
lockfile's sha256 and stored under its own hash. The build installs them with
`--no-index --require-hashes` while the build has no network.

Cache layout (under `cache_dir()`):
    wheels/<sha[:2]>/<sha>/<filename>     one file per content hash
    resolved/<key>.json                   lockfile + target platform → the wheels chosen
    resolved/choices-<target>.json        one pin (name, version, its sha256 set, marker) + target
                                          platform → the wheel pip chose for it
A changed lockfile downloads only the pins it changed: for an unchanged pin pip would choose the
same file among the same allowed hashes, so the file it chose before is used again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from reproexec.env.lock import LockedRequirement, Lockfile
from reproexec.errors import BuildError, LockError
from reproexec.fsutil import cache_dir, sha256_file, write_atomic


@dataclass(frozen=True)
class TargetPlatform:
    """The Python inside the image, as pip's download flags need it."""

    python_version: str  # "3.11"
    abi: str  # "cp311"
    machine: str  # "x86_64"
    glibc: str | None  # "2.36"

    @property
    def platforms(self) -> list[str]:
        tags: list[str] = []
        if self.glibc:
            major, minor = (int(x) for x in self.glibc.split(".")[:2])
            tags += [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
            tags += [f"{name}_{self.machine}" for m, name in legacy.items() if m <= minor]
        tags.append(f"linux_{self.machine}")
        return tags

    @property
    def key(self) -> str:
        return f"{self.abi}-{self.machine}-glibc{self.glibc}"


# Printed by the base image's python3: what pip download needs to pick the right wheels.
PROBE_SCRIPT = (
    "import json, platform, sys; "
    "print(json.dumps({'python_version': '%d.%d' % sys.version_info[:2], "
    "'abi': 'cp%d%d' % sys.version_info[:2], 'machine': platform.machine(), "
    "'glibc': platform.libc_ver()[1] or None}))"
)


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    filename: str
    sha256: str
    path: Path


def ensure_wheels(
    lock: Lockfile, target: TargetPlatform, *, cache: Path | None = None, on_log: Callable[[str], None] | None = None
) -> list[Wheel]:
    """The lockfile's wheels for `target`, downloading only the pins the cache has no wheel for."""
    cache = cache or cache_dir()
    index = cache / "resolved" / f"{hashlib.sha256((lock.sha256 + target.key).encode()).hexdigest()}.json"
    choices_path = cache / "resolved" / f"choices-{target.key}.json"
    if index.is_file():
        wheels = _read_wheels(json.loads(index.read_text()))
        if all(w.path.is_file() for w in wheels):
            if not choices_path.exists():  # a cache from before the choices were kept: remember them now
                _remember(choices_path, {}, lock.requirements, wheels)
            return wheels
    try:
        choices = json.loads(choices_path.read_text())
    except (OSError, ValueError):
        choices = {}
    known: list[Wheel] = []
    wanted: list[LockedRequirement] = []
    for req in lock.requirements:
        wheel = _cached(choices.get(_pin_key(req)))
        if wheel is not None and wheel.path.is_file():
            known.append(wheel)
        else:
            wanted.append(req)
    if known and wanted and on_log:
        on_log(f"{len(known)} locked wheels are cached; {len(wanted)} changed or new")
    fetched = _download(lock, wanted, target, cache, on_log) if wanted else []
    wheels = sorted(known + fetched, key=lambda w: w.name)
    missing = sorted({r.name for r in lock.requirements} - {w.name for w in wheels})
    if missing:
        raise LockError(f"no wheel was downloaded for: {', '.join(missing)}", "check the lockfile's markers")
    index.parent.mkdir(parents=True, exist_ok=True)
    if fetched:
        _remember(choices_path, choices, wanted, fetched)
    write_atomic(index, json.dumps([_wheel_json(w) for w in wheels], indent=1))
    return wheels


def _remember(path: Path, choices: dict[str, object], reqs: Iterable[LockedRequirement], wheels: list[Wheel]) -> None:
    """Add each pin's chosen wheel to the target's choices file."""
    by_hash = {w.sha256: w for w in wheels}
    chosen = {_pin_key(r): _wheel_json(by_hash[h]) for r in reqs for h in r.hashes if h in by_hash}
    write_atomic(path, json.dumps({**choices, **chosen}, indent=1))


def _pin_key(req: LockedRequirement) -> str:
    """What decides pip's choice of file, besides the target platform: the pin and its allowed hashes."""
    return f"{req.name}=={req.version};{req.marker or ''};{','.join(req.hashes)}"


def _wheel_json(w: Wheel) -> dict[str, str]:
    return {**asdict(w), "path": str(w.path)}


def _read_wheels(items: list[dict[str, str]]) -> list[Wheel]:
    return [Wheel(**{**w, "path": Path(w["path"])}) for w in items]


def _cached(entry: object) -> Wheel | None:
    """A choices entry as a Wheel, or None for a missing or damaged one (downloaded again)."""
    try:
        return _read_wheels([entry])[0]  # type: ignore[list-item]
    except (TypeError, KeyError):
        return None


def _download(
    lock: Lockfile,
    wanted: list[LockedRequirement],
    target: TargetPlatform,
    cache: Path,
    on_log: Callable[[str], None] | None,
) -> list[Wheel]:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    tmp_root = cache / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="download-") as tmp:
        # pip reads the lockfile's own lines for these pins: exactly the text that was hashed and checked.
        reqs = Path(tmp) / "requirements.lock"
        reqs.write_text(lock.text_of(wanted), encoding="utf-8")
        dest = Path(tmp) / "wheels"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "--progress-bar",
            "off",
            "--implementation",
            "cp",
            "--python-version",
            target.python_version,
            "--abi",
            target.abi,
            "--abi",
            "abi3",
            "--abi",
            "none",
            "-d",
            str(dest),
            "-r",
            str(reqs),
        ]
        for p in target.platforms:
            cmd += ["--platform", p]
        if on_log:
            on_log(f"downloading {len(wanted)} locked wheels for {target.key} (pip download)")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            out = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            mismatch = any("THESE PACKAGES DO NOT MATCH THE HASHES" in ln for ln in out)
            raise (BuildError if mismatch else LockError)(
                f"pip could not download the locked wheels for Python {target.python_version} ({target.key})",
                "a wheel's sha256 differs from the lockfile (tampered or re-published file): do not build; "
                "re-lock only if you trust the new file"
                if mismatch
                else "every locked package needs a wheel for the image's Python and platform; re-lock with "
                "the same Python as the base image, or choose a base image whose Python matches the lock",
                details=out[-15:],
            )
        wheels: list[Wheel] = []
        by_name = {r.name: r for r in wanted}
        for f in sorted(dest.iterdir()):
            try:
                name, version, _, _ = parse_wheel_filename(f.name)
            except InvalidWheelFilename:
                raise BuildError(f"pip downloaded {f.name}, which is not a wheel") from None
            req = by_name.get(name)
            digest = sha256_file(f)
            if req is None or digest not in req.hashes:
                raise BuildError(
                    f"downloaded {f.name} (sha256 {digest}) is not allowed by the lockfile",
                    "the index served a file the lockfile does not pin; do not build from it",
                )
            stored = cache / "wheels" / digest[:2] / digest / f.name
            stored.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, stored)
            stored.chmod(0o644)  # public files, served to builds by an unprivileged server, whatever the umask
            wheels.append(Wheel(name=name, version=str(version), filename=f.name, sha256=digest, path=stored))
    return wheels


def verify_wheels(wheels: Iterable[Wheel]) -> None:
    """Hash every cached wheel again; refuse to build from one that changed on disk."""
    bad = []
    for w in wheels:
        actual = sha256_file(w.path) if w.path.is_file() else "missing"
        if actual != w.sha256:
            bad.append(f"{w.path}: expected sha256 {w.sha256}, found {actual}")
    if bad:
        raise BuildError(
            "cached wheels do not match the lockfile's sha256 (corrupted or tampered); nothing was built",
            "delete the listed files and build again to download them afresh",
            details=bad,
        )
