"""Base images: resolve the config's base to a pinned one, or make one offline.

Users with a registry pin a base by digest (`python:3.11-slim-bookworm@sha256:...`). Air-gapped
sites have no registry: `bootstrap_base` builds a minimal Debian root filesystem with debootstrap
from the host's configured Debian mirror and imports it (`docker import`), or imports a rootfs /
`docker save` tarball brought in on a disk. Either way the build pins the base by what it is
(digest or image id), never by a moving tag.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reproexec.engine import Engine
from reproexec.errors import EngineError, ReproexecError
from reproexec.imagespec import BaseImage
from reproexec.wheels import cache_dir

DEFAULT_BASE = "reproexec-base:bookworm"
# What every run image needs from its base: Python with venv (3.11 on bookworm) and CA certs.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
_DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")


def resolve_base(reference: str, engine: Engine) -> BaseImage:
    if _DIGEST_RE.search(reference):
        info = engine.image(reference) or engine.pull(reference)
        return BaseImage(reference=reference, image_id=info.id, pinned_by="digest")
    if "@" in reference:
        raise ReproexecError(
            f"env.base_image {reference!r} has a malformed digest",
            "write it as name@sha256:<64 hex digits>",
        )
    info = engine.image(reference)
    if info is None:
        hint = (
            "make it offline with `reproexec base bootstrap`"
            if reference == DEFAULT_BASE
            else f"make it with `reproexec base bootstrap --tag {reference}`, load it with `docker load -i FILE`, "
            "or pin a registry image by digest (name@sha256:...)"
        )
        raise EngineError(f"base image {reference} is not on this machine (env.base_image)", hint)
    return BaseImage(reference=reference, image_id=info.id, pinned_by="image id")


@dataclass(frozen=True)
class BaseResult:
    tag: str
    image_id: str
    created: bool
    source: str


def bootstrap_base(
    engine: Engine,
    *,
    tag: str = DEFAULT_BASE,
    suite: str = "bookworm",
    mirror: str | None = None,
    include: tuple[str, ...] = (),
    from_tar: Path | None = None,
    force: bool = False,
    on_log: Callable[[str], None] | None = None,
) -> BaseResult:
    repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    existing = engine.image(tag)
    if existing and not force:
        return BaseResult(tag=tag, image_id=existing.id, created=False, source="already present")
    if from_tar is not None:
        return _from_tar(engine, from_tar, repository, version, tag)

    if shutil.which("debootstrap") is None:
        raise EngineError("debootstrap is not installed", "apt-get install debootstrap (Debian's package)")
    if os.geteuid() != 0:
        raise EngineError("debootstrap needs root to build a root filesystem", "run this command as root")
    mirror = mirror or host_debian_mirror()
    packages = sorted(set(BASE_PACKAGES) | set(include))
    work_root = cache_dir() / "tmp"
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_root, prefix="rootfs-") as tmp:
        rootfs, archive = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(rootfs), mirror]
        if on_log:
            on_log(" ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EngineError(
                f"debootstrap of {suite} from {mirror} failed",
                "check that the mirror answers (`apt-get update`) and the suite exists; pass --mirror URL",
                details=[ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-12:],
            )
        # apt's downloaded .debs are not part of the image.
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], check=True)
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["python3"]',
            f'LABEL org.reproexec.base.suite="{suite}" org.reproexec.base.mirror="{mirror}" '
            f'org.reproexec.base.packages="{",".join(packages)}"',
        ]
        image_id = engine.import_rootfs(archive, repository, version, changes)
    return BaseResult(tag=tag, image_id=image_id, created=True, source=f"debootstrap {suite} from {mirror}")


def _from_tar(engine: Engine, path: Path, repository: str, version: str, tag: str) -> BaseResult:
    if not path.is_file():
        raise EngineError(f"--from-tar {path} is not a file", "pass a rootfs tarball or a `docker save` file")
    try:
        with tarfile.open(path) as tar:
            names = set(tar.getnames()[:10000])
    except tarfile.TarError as e:
        raise EngineError(f"--from-tar {path} is not a tar archive: {e}") from None
    if "manifest.json" in names or "./manifest.json" in names:  # `docker save` output
        ids = engine.load(path)
        if len(ids) != 1:
            raise EngineError(f"{path} holds {len(ids)} images; a base needs exactly one", "save one image per file")
        engine.tag(ids[0], repository, version)
        return BaseResult(tag=tag, image_id=ids[0], created=True, source=f"docker load {path}")
    image_id = engine.import_rootfs(path, repository, version, ['CMD ["python3"]'])
    return BaseResult(tag=tag, image_id=image_id, created=True, source=f"rootfs import {path}")


def host_debian_mirror() -> str:
    """The Debian mirror this host's apt uses (deb822 .sources or one-line sources.list)."""
    candidates = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for block in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", block, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", block, re.M)
            if uris and suites and "/debian" in uris.group(1) and "security" not in uris.group(1):
                return uris.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)/?\s+\S+", text, re.M):
            return m.group(1)
    return "http://deb.debian.org/debian"
