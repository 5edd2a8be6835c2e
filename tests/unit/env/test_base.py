"""Base rootfs tars as untrusted input, their content id, and the base package list (fake engine)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from fakes import FakeEngine

from reproexec.env.base import (
    LABEL_PACKAGES,
    LABEL_ROOTFS,
    base_rootfs,
    bootstrap_base,
    check_rootfs_members,
    import_base_rootfs,
    rootfs_store,
)
from reproexec.errors import EngineError

DPKG_STATUS = b"""Package: libc6
Status: install ok installed
Version: 2.36-9+deb12u10

Package: python3
Status: install ok installed
Version: 3.11.2-1+b1

Package: removed-one
Status: deinstall ok config-files
Version: 1.0
"""


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for k, v in attrs.items():
        setattr(info, k, v)
    return info, data


def a_rootfs(path: Path, *extra: tuple[tarfile.TarInfo, bytes]) -> Path:
    """A small Debian-like rootfs with what mmdebstrap really writes: ./-prefixed names, /dev nodes,
    absolute and relative symlinks, a hard link, setuid programs and setgid folders."""
    members = [
        member("./", tarfile.DIRTYPE, mode=0o755),
        member("./etc/os-release", data=b"ID=debian\n"),
        member("./usr/bin/perl", data=b"perl", mode=0o755),
        member("./usr/bin/perl5.36.0", tarfile.LNKTYPE, linkname="./usr/bin/perl"),
        member("./usr/bin/passwd", data=b"x", mode=0o4755),
        member("./usr/sbin/unix_chkpwd", data=b"x", mode=0o2755),
        member("./var/mail/", tarfile.DIRTYPE, mode=0o2775),
        member("./bin", tarfile.SYMTYPE, linkname="usr/bin"),
        member("./etc/alternatives/pager", tarfile.SYMTYPE, linkname="/usr/bin/less"),
        member("./usr/lib/os-release", tarfile.SYMTYPE, linkname="../../etc/os-release"),
        member("./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        member("./var/lib/dpkg/status", data=DPKG_STATUS),
        *extra,
    ]
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return path


def test_a_debian_like_rootfs_passes_and_its_packages_are_read(tmp_path):
    assert check_rootfs_members(a_rootfs(tmp_path / "ok.tar")) == [
        ("libc6", "2.36-9+deb12u10"),
        ("python3", "3.11.2-1+b1"),
    ]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (
            member("./usr/lib/escape", tarfile.SYMTYPE, linkname="../../../etc/shadow"),
            "symbolic link to '../../../etc/shadow' points outside the root",
        ),
        (
            member("./x", tarfile.SYMTYPE, linkname="/../../root"),
            "symbolic link to '/../../root' points outside the root",
        ),
        (member("../evil", data=b"x"), "path leaves the root"),
        (member("/etc/passwd", data=b"x"), "path leaves the root"),
        (
            member("./etc/hard", tarfile.LNKTYPE, linkname="/etc/shadow"),
            "hard link to '/etc/shadow', which is not an earlier member inside the root",
        ),
        (
            member("./etc/hard", tarfile.LNKTYPE, linkname="./not/there"),
            "hard link to './not/there', which is not an earlier member inside the root",
        ),
        (member("./dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), "block device"),
        (
            member("./dev/null", tarfile.CHRTYPE, devmajor=8, devminor=0),
            "character device 8,0 (only the standard /dev nodes are allowed)",
        ),
        (
            member("./tmp/kmem", tarfile.CHRTYPE, devmajor=1, devminor=2),
            "character device 1,2 (only the standard /dev nodes are allowed)",
        ),
        (member("./tmp/fifo", tarfile.FIFOTYPE), "FIFO"),
        (
            member("./home/user/rootshell", data=b"x", mode=0o4755),
            "setuid/setgid file outside /usr/bin, /usr/sbin, /usr/lib, /usr/libexec, /bin, /sbin",
        ),
        (
            member("./opt/tool", data=b"x", mode=0o2755),
            "setuid/setgid file outside /usr/bin, /usr/sbin, /usr/lib, /usr/libexec, /bin, /sbin",
        ),
    ],
)
def test_members_that_break_a_rule_are_named_and_refused(tmp_path, bad, problem):
    with pytest.raises(EngineError) as e:
        check_rootfs_members(a_rootfs(tmp_path / "bad.tar", bad))
    assert e.value.message.startswith("rootfs tar refused: 1 member(s) break the rules for a base image")
    assert e.value.details == [f"{bad[0].name}: {problem}"]


def test_import_checks_the_recorded_id_then_imports_exactly_that_layer(tmp_path, isolated_cache):
    tar = a_rootfs(tmp_path / "rootfs.tar")
    digest = hashlib.sha256(tar.read_bytes()).hexdigest()
    gz = tmp_path / "rootfs.tar.gz"
    gz.write_bytes(gzip.compress(tar.read_bytes()))
    engine = FakeEngine()
    result = import_base_rootfs(engine, gz, digest, "wt10-base:imported")
    assert result.created and result.rootfs_sha256 == digest
    assert engine.image("wt10-base:imported").layers == (f"sha256:{digest}",)
    (changes,) = [i["changes"] for i in engine.imports]
    assert f'{LABEL_ROOTFS}="{digest}"' in changes[-1]
    assert f'{LABEL_PACKAGES}="libc6=2.36-9+deb12u10 python3=3.11.2-1+b1"' in changes[-1]
    # Kept content-addressed for the next bundle: (path, id) comes back, and the file is the same tar.
    path, again = base_rootfs(engine, "wt10-base:imported")
    assert again == digest and path == rootfs_store() / f"{digest}.tar.gz"
    assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == digest
    # A second import of the same tar is a no-op; a tag that names another base is never moved.
    assert not import_base_rootfs(engine, gz, digest, "wt10-base:imported").created
    engine.add_image("wt10-base:mine", layers=["sha256:" + "9" * 64])
    with pytest.raises(EngineError, match="wt10-base:mine already names another base") as e:
        import_base_rootfs(engine, gz, digest, "wt10-base:mine")
    assert f"wt10-base:rootfs-{digest[:12]}" in e.value.hint
    assert engine.image("wt10-base:mine").layers == ("sha256:" + "9" * 64,)


def test_a_tar_that_does_not_match_its_id_or_the_rules_imports_nothing(tmp_path, isolated_cache):
    tar = a_rootfs(tmp_path / "rootfs.tar")
    engine = FakeEngine()
    with pytest.raises(EngineError, match="does not match its recorded id") as e:
        import_base_rootfs(engine, tar, "0" * 64, "wt10-base:x")
    assert "do not use it" in e.value.hint
    evil = a_rootfs(tmp_path / "evil.tar", member("./usr/lib/x", tarfile.SYMTYPE, linkname="../../../../etc"))
    with pytest.raises(EngineError, match="rootfs tar refused"):
        import_base_rootfs(engine, evil, hashlib.sha256(evil.read_bytes()).hexdigest(), "wt10-base:x")
    assert engine.imports == [] and engine.image("wt10-base:x") is None
    assert not rootfs_store().exists() or not any(rootfs_store().iterdir())


def test_from_tar_rootfs_is_checked_and_kept(tmp_path, isolated_cache):
    tar = a_rootfs(tmp_path / "rootfs.tar")
    engine = FakeEngine()
    result = bootstrap_base(engine, tag="wt10-base:from-tar", from_tar=tar)
    digest = hashlib.sha256(tar.read_bytes()).hexdigest()
    assert result.created and result.rootfs_sha256 == digest and result.source == f"rootfs import {tar}"
    assert base_rootfs(engine, "wt10-base:from-tar")[1] == digest


def test_a_base_without_its_rootfs_in_the_cache_travels_only_if_the_engine_gives_that_layer(isolated_cache):
    import gzip
    import hashlib

    engine = FakeEngine()
    engine.add_image("old-base:1", layers=["sha256:" + "7" * 64])  # `docker save` gives other bytes
    with pytest.raises(EngineError, match=r"rootfs of base image old-base:1 \(sha256 777777777777\) is not in"):
        base_rootfs(engine, "old-base:1")
    assert not list((isolated_cache / "rootfs").glob("*"))  # nothing unchecked kept

    rootfs = b"a rootfs tar's bytes"
    digest = hashlib.sha256(rootfs).hexdigest()
    engine.add_image("kept:1", layers=[f"sha256:{digest}"])
    engine.saved["kept:1"] = rootfs
    path, got = base_rootfs(engine, "kept:1")  # read back from the engine, checked, cached
    assert got == digest and path == isolated_cache / "rootfs" / f"{digest}.tar.gz"
    assert gzip.decompress(path.read_bytes()) == rootfs
    engine.add_image("layered:1", layers=["sha256:" + "7" * 64, "sha256:" + "8" * 64])
    with pytest.raises(EngineError, match="has 2 layers; only a base made from one rootfs tar can travel"):
        base_rootfs(engine, "layered:1")


def test_a_layer_read_back_from_the_engine_is_bounded_like_any_rootfs(isolated_cache, monkeypatch):
    import hashlib

    from reproexec.env import base

    rootfs = b"x" * 64
    digest = hashlib.sha256(rootfs).hexdigest()
    engine = FakeEngine()
    engine.add_image("big:1", layers=[f"sha256:{digest}"])
    engine.saved["big:1"] = rootfs
    monkeypatch.setattr(base, "MAX_ROOTFS_BYTES", 63)
    with pytest.raises(EngineError, match="is not in reproexec's cache"):
        base_rootfs(engine, "big:1")
    monkeypatch.setattr(base, "MAX_ROOTFS_BYTES", 64)
    assert base_rootfs(engine, "big:1")[1] == digest


def test_an_arm64_rootfs_is_imported_as_an_arm64_image_whatever_the_engine_is(tmp_path, isolated_cache):
    """Docker 20.10 labels every `docker import` with its own platform; the rootfs's C library says
    which it is (Debian's Architecture of libc6), and that is what the base is imported as."""
    arm = DPKG_STATUS.replace(b"Version: 2.36-9+deb12u10\n", b"Version: 2.36-9+deb12u10\nArchitecture: arm64\n")
    tar = a_rootfs(tmp_path / "arm.tar")
    with tarfile.open(tar) as src, tarfile.open(tmp_path / "arm64.tar", "w", format=tarfile.GNU_FORMAT) as dst:
        for m in src:
            if m.name == "./var/lib/dpkg/status":
                m.size = len(arm)
                dst.addfile(m, io.BytesIO(arm))
            else:
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    engine = FakeEngine()
    bootstrap_base(engine, tag="arm-base:1", from_tar=tmp_path / "arm64.tar")
    bootstrap_base(engine, tag="amd-base:1", from_tar=tar)
    assert [i["architecture"] for i in engine.imports] == ["arm64", "amd64"]
    assert engine.image("arm-base:1").architecture == "arm64"
