"""Base images: resolve the config's base to what it contains, or make one offline that is the same everywhere.

Users with a registry pin a base by digest (`python:3.11-slim-bookworm@sha256:...`). Air-gapped
sites have no registry: `bootstrap_base` builds a minimal Debian root filesystem with mmdebstrap
and imports it (`docker import`), or imports a rootfs / `docker save` tarball brought in on a disk.

**Reproducible.** mmdebstrap with a fixed SOURCE_DATE_EPOCH writes the same rootfs tar, bit for
bit, from the same packages (it clamps every mtime, leaves out /etc/machine-id, the logs and the
caches). The image's sources.list always names Debian's canonical mirror, whichever mirror the
packages came from, so the host's apt setup does not leak into the layer. `docker import` of the
tar gives a layer whose diff_id *is* the tar's sha256, on every machine; only the image id (which
stamps the import time) differs, so the content hash of a run image names the base by its layers
(`BaseImage.content_id`), never by that id. The tar is kept gzipped in reproexec's cache under its
sha256 (`base_rootfs`), so it can travel with a run (`import_base_rootfs` on the other side).

**Untrusted tars.** A rootfs tar from elsewhere is checked before anything is imported
(`check_rootfs_members`), with these rules: member names are relative and stay inside the root;
a symbolic link's target, resolved from its folder (an absolute one from the root), stays inside
the root, and a hard link names a member that came before it; character devices only as the
standard nodes Debian's bootstrap tools create in /dev (null, zero, full, random, urandom, tty,
console, ptmx, with their usual device numbers); no block devices, FIFOs or other special files;
setuid/setgid only on regular files in the folders Debian installs such programs to (/usr/bin,
/usr/sbin, /usr/lib, /usr/libexec, /bin, /sbin; setgid folders such as /var/mail are harmless and
allowed). Anything else is refused with the member named; nothing is imported half-way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reproexec.engine import Engine, ImageInfo
from reproexec.env.spec import BaseImage
from reproexec.errors import EngineError, ReproexecError
from reproexec.fsutil import cache_dir, sha256_file, write_atomic
from reproexec.labels import (
    DEFAULT_BASE,
    LABEL_EPOCH,
    LABEL_MIRROR,
    LABEL_PACKAGES,
    LABEL_ROOTFS,
    LABEL_SUITE,
    ROOTFS_REPOSITORY,
)
from reproexec.runtime.environment import parse_dpkg_status

# What every run image needs from its base: Python with venv (3.11 on bookworm) and CA certs.
BASE_PACKAGES = ("ca-certificates", "python3", "python3-venv")
# 2024-01-01T00:00:00Z: every file's mtime in the rootfs is clamped to this unless --source-date-epoch.
DEFAULT_SOURCE_DATE_EPOCH = 1704067200
CANONICAL_MIRROR = "http://deb.debian.org/debian"
BASE_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


MAX_ROOTFS_BYTES = int(os.environ.get("REPROEXEC_MAX_ROOTFS", 8 * 1024**3))
_DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
LogFn = Callable[[str], None]


def resolve_base(reference: str, engine: Engine) -> BaseImage:
    if _DIGEST_RE.search(reference):
        info = engine.image(reference) or engine.pull(reference)
        return _base_image(reference, info, "digest")
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
            else "make it offline with `reproexec base bootstrap --arch arm64`"
            if reference == default_base("arm64")
            else f"make it with `reproexec base bootstrap --tag {shlex.quote(reference)}`, load it with `docker load -i FILE`, "
            "or pin a registry image by digest (name@sha256:...)"
        )
        raise EngineError(f"base image {reference} is not on this machine (env.base_image)", hint)
    return _base_image(reference, info, "content")


def _base_image(reference: str, info: ImageInfo, pinned_by: str) -> BaseImage:
    if not info.layers:
        raise EngineError(
            f"the Docker engine reports no layers for base image {reference} ({info.id})",
            "remake it with `reproexec base bootstrap --force` (or load it again)",
        )
    return BaseImage(
        reference=reference,
        image_id=info.id,
        pinned_by=pinned_by,  # type: ignore[arg-type]
        layers=tuple(info.layers),
        config=dict(info.config),
    )


def find_base(engine: Engine, inputs: Mapping[str, Any], *, source: str, packages: Mapping[str, str]) -> BaseImage:
    """The base a recorded build used (`inputs`: its hash inputs), found on this machine by its
    recorded layers and config: under its recorded name, its content tag or its rootfs tag, or
    imported (checked) from the rootfs tar in reproexec's cache. `packages` are the Debian packages
    the recorded image held, to name what moved when only another base of that name is here."""
    recorded = inputs["base_image"]
    want = BaseImage(
        reference=str(recorded["reference"]),
        image_id="",
        pinned_by=recorded["pinned_by"],
        layers=tuple(inputs["base_layers"]),
        config=dict(inputs["base_config"]),
    )
    rootfs = want.layers[0].removeprefix("sha256:") if len(want.layers) == 1 else None
    names = [want.reference, want.pinned] + ([f"{ROOTFS_REPOSITORY}:{rootfs}"] if rootfs else [])
    for name in names:
        info = engine.image(name) or (
            engine.pull(name) if name == want.reference and want.pinned_by == "digest" else None
        )
        if info is not None and tuple(info.layers) == want.layers and dict(info.config) == want.config:
            return dataclasses.replace(want, image_id=info.id)
    cached = rootfs_store() / f"{rootfs}.tar.gz" if rootfs else None
    if cached is not None and cached.is_file():
        result = import_base_rootfs(engine, cached, rootfs or "", f"{ROOTFS_REPOSITORY}:{rootfs}")
        info = engine.image(result.image_id)
        if info is not None and dict(info.config) == want.config:
            return dataclasses.replace(want, image_id=info.id)
    other = engine.image(want.reference)
    moved = _moved_packages(packages, other.labels.get(LABEL_PACKAGES, "") if other else "")
    raise EngineError(
        f"{source} was built on a base that is not on this machine: {want.reference} with "
        + (f"rootfs sha256 {rootfs[:12]}" if rootfs else f"layers {', '.join(want.layers)[:100]}")
        + (
            f"; {want.reference} here is another base"
            + (f" (Debian packages moved on: {', '.join(moved[:8])})" if moved else "")
            if other is not None
            else ""
        ),
        "bring the base with the run: `reproexec export RUN --with-base` on the machine that made it, and rerun "
        "that bundle (or `reproexec base bootstrap --from-tar ROOTFS.tar`); `export --with-image` brings the whole image",
    )


def _moved_packages(recorded: Mapping[str, str], label: str) -> list[str]:
    here = dict(item.split("=", 1) for item in label.split() if "=" in item)
    return [
        f"{name} {recorded[name]} → {here[name]}"
        for name in sorted(set(recorded) & set(here))
        if recorded[name] != here[name]
    ]


@dataclass(frozen=True)
class BaseResult:
    tag: str
    image_id: str
    created: bool
    source: str
    rootfs_sha256: str | None = None  # = the image's one layer diff_id, for bases made from a rootfs tar


def default_base(arch: str = "amd64") -> str:
    """The tag `reproexec base bootstrap` gives the base it makes for `arch`."""
    return DEFAULT_BASE if arch == "amd64" else f"{DEFAULT_BASE}-{arch}"


def bootstrap_base(
    engine: Engine,
    *,
    tag: str | None = None,
    arch: str = "amd64",
    suite: str = "bookworm",
    mirror: str | None = None,
    include: tuple[str, ...] = (),
    from_tar: Path | None = None,
    force: bool = False,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    on_log: LogFn | None = None,
) -> BaseResult:
    tag = tag or default_base(arch)
    repository, version = split_tag(tag)
    existing = engine.image(tag)
    if existing and not force:
        return BaseResult(
            tag=tag,
            image_id=existing.id,
            created=False,
            source="already present",
            rootfs_sha256=existing.labels.get(LABEL_ROOTFS),
        )
    if from_tar is not None:
        return _from_tar(engine, from_tar, repository, version, tag)

    mirror = mirror or host_debian_mirror()
    packages = tuple(sorted(set(BASE_PACKAGES) | set(include)))
    with _workdir() as tmp:
        archive = tmp / "rootfs.tar"
        rootfs_tar(
            archive,
            suite=suite,
            mirror=mirror,
            packages=packages,
            source_date_epoch=source_date_epoch,
            arch=arch,
            on_log=on_log,
        )
        digest = sha256_file(archive)
        labels = {LABEL_SUITE: suite, LABEL_MIRROR: mirror, LABEL_EPOCH: str(source_date_epoch)}
        image_id = _import_checked(engine, archive, digest, repository, version, labels)
        _store_rootfs(archive, digest)
    return BaseResult(
        tag=tag,
        image_id=image_id,
        created=True,
        rootfs_sha256=digest,
        source=f"mmdebstrap {suite} {arch} ({', '.join(packages)}) from {mirror}, SOURCE_DATE_EPOCH={source_date_epoch}",
    )


def rootfs_tar(
    out: Path,
    *,
    suite: str,
    mirror: str,
    packages: Iterable[str],
    source_date_epoch: int,
    arch: str = "amd64",
    on_log: LogFn | None = None,
) -> None:
    """A minimal Debian root filesystem as a tar, bit-identical for the same packages and epoch.
    Another architecture's (arm64 on amd64) runs its packages' scripts under qemu-user (binfmt_misc)."""
    if shutil.which("mmdebstrap") is None:
        raise EngineError("mmdebstrap is not installed", "apt-get install mmdebstrap (Debian's package)")
    if os.geteuid() != 0:
        raise EngineError("mmdebstrap needs root to build a root filesystem", "run this command as root")
    debs = cache_dir() / "debs"  # .debs kept between bootstraps; apt checks each against the signed index
    debs.mkdir(parents=True, exist_ok=True)
    sources = f"deb {CANONICAL_MIRROR} {suite} main"
    cmd = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        "--mode=root",
        "--format=tar",
        f"--architectures={arch}",
        f"--include={','.join(sorted(packages))}",
        "--dpkgopt=force-unsafe-io",  # no fsync per file: the tar is written once at the end anyway
        "--skip=essential/unlink",
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
        f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
        f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
        f"--customize-hook=echo '{sources}' > \"$1\"/etc/apt/sources.list",
        suite,
        str(out),
        mirror,
    ]
    if on_log:
        on_log(
            f"mmdebstrap {suite} from {mirror} with {', '.join(sorted(packages))} (SOURCE_DATE_EPOCH={source_date_epoch})"
        )
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch), "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        foreign = "arch-test" in proc.stderr or "binfmt" in proc.stderr or "qemu" in proc.stderr
        raise EngineError(
            f"mmdebstrap of {suite} {arch} from {mirror} failed",
            "another architecture's rootfs needs qemu-user: apt-get install qemu-user-static binfmt-support "
            "arch-test (scripts/setup.sh does this)"
            if foreign
            else "check that the mirror answers (`apt-get update`) and the suite exists; pass --mirror URL",
            details=[ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-12:],
        )


def _from_tar(engine: Engine, path: Path, repository: str, version: str, tag: str) -> BaseResult:
    if not path.is_file():
        raise EngineError(f"--from-tar {path} is not a file", "pass a rootfs tarball or a `docker save` file")
    try:
        with tarfile.open(path) as tar:
            names = set(tar.getnames()[:10000])
    except (tarfile.TarError, OSError, EOFError) as e:
        raise EngineError(f"--from-tar {path} is not a tar archive: {e}") from None
    if "manifest.json" in names or "./manifest.json" in names:  # `docker save` output
        ids = engine.load(path)
        if len(ids) != 1:
            raise EngineError(f"{path} holds {len(ids)} images; a base needs exactly one", "save one image per file")
        engine.tag(ids[0], repository, version)
        return BaseResult(tag=tag, image_id=ids[0], created=True, source=f"docker load {path}")
    with _workdir() as tmp:
        archive, digest = _uncompressed_copy(path, tmp / "rootfs.tar")
        image_id = _import_checked(engine, archive, digest, repository, version, {})
        _store_rootfs(archive, digest)
    return BaseResult(tag=tag, image_id=image_id, created=True, source=f"rootfs import {path}", rootfs_sha256=digest)


# -- the rootfs tar as a travelling, content-addressed file --------------------------------------
def rootfs_store() -> Path:
    return cache_dir() / "rootfs"


def base_rootfs(engine: Engine, reference: str) -> tuple[Path, str]:
    """(gzipped rootfs tar in the cache, sha256 of the uncompressed tar) of a base made from a rootfs.

    The sha256 is the base's layer diff_id, the same on every machine; `import_base_rootfs` checks it.
    """
    info = engine.image(reference)
    if info is None:
        raise EngineError(f"base image {reference} is not on this machine", "make it with `reproexec base bootstrap`")
    if len(info.layers) != 1 or not info.layers[0].startswith("sha256:"):
        raise EngineError(
            f"base image {reference} has {len(info.layers)} layers; only a base made from one rootfs tar can travel as one",
            "bring the run image instead (`export --with-image`), or remake the base with `reproexec base bootstrap`",
        )
    digest = info.layers[0].removeprefix("sha256:")
    path = rootfs_store() / f"{digest}.tar.gz"
    if not path.is_file() and _rootfs_from_engine(engine, reference, digest) is None:
        raise EngineError(
            f"the rootfs of base image {reference} (sha256 {digest[:12]}) is not in reproexec's cache ({rootfs_store()})",
            "make the base on this machine with `reproexec base bootstrap --force`, or import its tar with "
            "`reproexec base bootstrap --from-tar FILE`",
        )
    return path, digest


def _rootfs_from_engine(engine: Engine, reference: str, digest: str) -> Path | None:
    """The base's one layer read back from the engine (`docker save`) into the cache, when its bytes
    hash to the layer's diff_id: a lost cache (a cleaned home, another REPROEXEC_CACHE) is not a lost
    base. None when the engine gives no such layer."""
    with _workdir() as tmp:
        saved = tmp / "image.tar"
        with open(saved, "wb") as out:
            engine.save(reference, out)
        with tarfile.open(saved) as tar:
            for m in tar:
                # Docker 20.10 names the layer <id>/layer.tar; the OCI layout of newer engines, by digest
                if not m.isfile() or not (m.name.endswith("/layer.tar") or m.name == f"blobs/sha256/{digest}"):
                    continue
                if m.size > MAX_ROOTFS_BYTES:  # the bound every rootfs read has (REPROEXEC_MAX_ROOTFS)
                    continue
                src = tar.extractfile(m)
                assert src is not None  # a regular file
                layer = tmp / "layer.tar"
                with open(layer, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                if sha256_file(layer) == digest:
                    return _store_rootfs(layer, digest)
    return None


def import_base_rootfs(engine: Engine, path: Path, expected_sha256: str, tag: str) -> BaseResult:
    """Import an untrusted rootfs tar (plain or gzipped) as `tag`, after checking that its uncompressed
    sha256 is `expected_sha256` and every member passes the rules in this module's docstring."""
    if not _SHA256_RE.match(expected_sha256):
        raise EngineError(f"recorded base rootfs id {expected_sha256!r} is not a sha256", "the record is damaged")
    repository, version = split_tag(tag)
    existing = engine.image(tag)
    if existing is not None and tuple(existing.layers) == (f"sha256:{expected_sha256}",):
        digest = _rootfs_digest(path)  # still read: a damaged or altered file is refused, not waved through
        if digest != expected_sha256:
            raise _rootfs_mismatch(path, digest, expected_sha256)
        return BaseResult(
            tag=tag, image_id=existing.id, created=False, source="already present", rootfs_sha256=expected_sha256
        )
    if existing is not None:
        raise EngineError(
            f"{tag} already names another base on this machine (layers {', '.join(existing.layers)[:80]}…)",
            f"import under another tag (e.g. {repository}:rootfs-{expected_sha256[:12]}); the existing one is left as it is",
        )
    with _workdir() as tmp:
        archive, digest = _uncompressed_copy(path, tmp / "rootfs.tar")
        if digest != expected_sha256:
            raise _rootfs_mismatch(path, digest, expected_sha256)
        image_id = _import_checked(engine, archive, digest, repository, version, {})
        _store_rootfs(archive, digest)
    return BaseResult(tag=tag, image_id=image_id, created=True, source=f"rootfs import {path}", rootfs_sha256=digest)


def _rootfs_mismatch(path: Path, digest: str, expected: str) -> EngineError:
    return EngineError(
        f"base rootfs {path} does not match its recorded id: sha256 {digest[:16]}…, recorded {expected[:16]}…",
        "the file was altered or damaged; do not use it (export the run again on the machine it came from)",
    )


def _import_checked(
    engine: Engine, archive: Path, digest: str, repository: str, version: str, labels: dict[str, str]
) -> str:
    """Check the tar's members, import it, and make sure Docker made exactly the layer we checked."""
    packages, arch = _checked_rootfs(archive)
    labels = {**labels, LABEL_ROOTFS: digest, LABEL_PACKAGES: " ".join(f"{n}={v}" for n, v in packages)}
    changes = [
        f"ENV {BASE_ENV}",
        'CMD ["python3"]',
        "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())),
    ]
    image_id = engine.import_rootfs(archive, repository, version, changes, architecture=arch)
    info = engine.image(image_id)
    layers = tuple(info.layers) if info else ()
    if layers != (f"sha256:{digest}",):
        engine.remove_image(f"{repository}:{version}")
        raise EngineError(
            f"Docker imported {archive.name} as layers {list(layers)}, not the checked sha256:{digest}",
            "report this: the engine changed the root filesystem while importing it",
        )
    return image_id


def _store_rootfs(archive: Path, digest: str) -> Path:
    """Keep the tar gzipped under its sha256 (mtime 0 and no file name in the gzip header)."""
    final = rootfs_store() / f"{digest}.tar.gz"
    if not final.is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(final, gzip.compress(archive.read_bytes(), compresslevel=6, mtime=0))
    return final


def _uncompressed_copy(path: Path, out: Path) -> tuple[Path, str]:
    """Write `path` (tar or tar.gz) uncompressed to `out`, hashing what is written."""
    with open(out, "wb") as dst:
        return out, _rootfs_digest(path, dst)


def _rootfs_digest(path: Path, copy_to: IO[bytes] | None = None) -> str:
    """sha256 of `path` (tar or tar.gz) uncompressed, read once (and copied on the way); oversized,
    damaged or non-gzip input refused."""
    h, total = hashlib.sha256(), 0
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as src:
            while chunk := src.read(1024 * 1024):
                total += len(chunk)
                if total > MAX_ROOTFS_BYTES:
                    raise EngineError(
                        f"rootfs {path} is larger than {MAX_ROOTFS_BYTES} bytes uncompressed",
                        "a base root filesystem is a few hundred MB; set REPROEXEC_MAX_ROOTFS to allow more",
                    )
                h.update(chunk)
                if copy_to is not None:
                    copy_to.write(chunk)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise EngineError(f"rootfs {path} cannot be read: {e}", "the file is damaged or not a tar archive") from None
    return h.hexdigest()


# -- the rules for an untrusted rootfs ------------------------------------------------------------
# Character devices a Debian bootstrap creates in /dev, with their standard (major, minor).
DEBIAN_DEV_NODES = {
    "dev/null": (1, 3),
    "dev/zero": (1, 5),
    "dev/full": (1, 7),
    "dev/random": (1, 8),
    "dev/urandom": (1, 9),
    "dev/tty": (5, 0),
    "dev/console": (5, 1),
    "dev/ptmx": (5, 2),
}
# Where Debian installs setuid/setgid programs (passwd, su, mount, unix_chkpwd, dbus helpers...).
SETID_DIRS = ("usr/bin/", "usr/sbin/", "usr/lib/", "usr/libexec/", "bin/", "sbin/")


def check_rootfs_members(archive: Path) -> list[tuple[str, str]]:
    """Refuse a rootfs tar that breaks a rule (see the module docstring); return its Debian packages
    as sorted (name, version) pairs, read from var/lib/dpkg/status (empty if it has none)."""
    return _checked_rootfs(archive)[0]


def _checked_rootfs(archive: Path) -> tuple[list[tuple[str, str]], str]:
    """check_rootfs_members, and the platform the rootfs is for (amd64, arm64): its C library's
    Debian architecture (amd64 where the tar has no dpkg status to say)."""
    problems: list[str] = []
    seen: set[str] = set()
    status: bytes | None = None
    try:
        with tarfile.open(archive, "r:") as tar:
            for m in tar:
                name, problem = _check_member(m, seen)
                if problem:
                    problems.append(f"{m.name}: {problem}")
                    if len(problems) >= 20:
                        break
                    continue
                seen.add(name)
                if name == "var/lib/dpkg/status" and m.isreg() and m.size < 64 * 1024**2:
                    f = tar.extractfile(m)
                    status = f.read() if f else None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise EngineError(f"rootfs {archive} is not a readable tar archive: {e}", "the file is damaged") from None
    if problems:
        raise EngineError(
            f"rootfs tar refused: {len(problems)}{'+' if len(problems) >= 20 else ''} member(s) break the rules for a base image",
            "a base must be a plain root filesystem (see `reproexec base bootstrap --help`); do not use this file",
            details=problems,
        )
    text = status.decode("utf-8", "replace") if status else ""
    packages = sorted(parse_dpkg_status(text).items())
    libc = re.search(r"^Package: libc6\n(?:[^\n]+\n)*?Architecture: ([\w-]+)$", text, re.M)
    return packages, libc.group(1) if libc else "amd64"


def _check_member(m: tarfile.TarInfo, seen: set[str]) -> tuple[str, str | None]:
    raw = m.name
    name = posixpath.normpath(raw.removeprefix("./")) if raw not in (".", "./") else "."
    if raw.startswith("/") or name == ".." or name.startswith("../") or "\x00" in raw:
        return name, "path leaves the root"
    if m.isdir():
        return name, None
    mode = m.mode
    if m.isreg():
        if mode & 0o6000 and not name.startswith(SETID_DIRS):
            return name, f"setuid/setgid file outside {', '.join('/' + d.rstrip('/') for d in SETID_DIRS)}"
        return name, None
    if m.issym():
        base = "" if m.linkname.startswith("/") else posixpath.dirname(name)
        target = posixpath.normpath(posixpath.join(base, m.linkname.lstrip("/")))
        if target == ".." or target.startswith("../"):
            return name, f"symbolic link to {m.linkname!r} points outside the root"
        return name, None
    if m.islnk():
        target = posixpath.normpath(m.linkname.removeprefix("./"))
        if target.startswith(("/", "../")) or target == ".." or target not in seen:
            return name, f"hard link to {m.linkname!r}, which is not an earlier member inside the root"
        return name, None
    if m.ischr():
        if DEBIAN_DEV_NODES.get(name) == (m.devmajor, m.devminor):
            return name, None
        return name, f"character device {m.devmajor},{m.devminor} (only the standard /dev nodes are allowed)"
    if m.isblk():
        return name, "block device"
    if m.isfifo():
        return name, "FIFO"
    return name, f"unsupported member type {m.type!r}"


# -- helpers -----------------------------------------------------------------------------------
def split_tag(tag: str) -> tuple[str, str]:
    repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    return repository, version


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A private temporary folder under reproexec's cache (a rootfs is hundreds of MB: not /tmp)."""
    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix="rootfs-") as tmp:
        yield Path(tmp)


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
    return CANONICAL_MIRROR
