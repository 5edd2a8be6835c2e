"""Base images from tarballs (air-gapped sites) and a build that fails, on the real engine."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile

import pytest
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.env.context import ContextEntry, write_context
from reproexec.errors import BuildError

runner = CliRunner()


def test_bootstrap_is_idempotent_and_prints_the_image_id(base_image):
    r = runner.invoke(app, ["base", "bootstrap"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == base_image.image_id
    assert "already exists; nothing to do" in r.stderr


def test_from_tar_loads_a_docker_save_file(docker_engine, base_image, tmp_path):
    saved = tmp_path / "base.tar"
    subprocess.run(["docker", "save", "-o", str(saved), base_image.tag], check=True)
    tag = "reproexec-test-base:saved"
    try:
        r = runner.invoke(app, ["base", "bootstrap", "--from-tar", str(saved), "--tag", tag])
        assert r.exit_code == 0, r.output
        assert r.stdout.strip() == base_image.image_id  # the same image, now also under the new tag
        assert docker_engine.image(tag).id == base_image.image_id
    finally:
        docker_engine.remove_image(tag)


def test_from_tar_imports_a_root_filesystem(docker_engine, tmp_path, isolated_cache):
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        data = b"ID=tiny\n"
        info = tarfile.TarInfo("etc/os-release")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tag = "reproexec-test-base:rootfs"
    try:
        r = runner.invoke(app, ["base", "bootstrap", "--from-tar", str(rootfs), "--tag", tag])
        assert r.exit_code == 0, r.output
        info = docker_engine.image(tag)
        assert info.id == r.stdout.strip()
        digest = hashlib.sha256(rootfs.read_bytes()).hexdigest()
        assert info.layers == (f"sha256:{digest}",)  # the layer is the tar, byte for byte
        assert (isolated_cache / "rootfs" / f"{digest}.tar.gz").is_file()
    finally:
        docker_engine.remove_image(tag)


def test_a_rootfs_with_a_link_out_of_the_root_imports_nothing(docker_engine, tmp_path, isolated_cache):
    rootfs = tmp_path / "evil.tar"
    with tarfile.open(rootfs, "w") as tar:
        link = tarfile.TarInfo("usr/lib/escape")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/shadow"
        tar.addfile(link)
    tag = "reproexec-test-base:evil"
    r = runner.invoke(app, ["base", "bootstrap", "--from-tar", str(rootfs), "--tag", tag])
    assert r.exit_code == 5, r.output
    assert "rootfs tar refused" in r.stderr and "usr/lib/escape: symbolic link to '../../../etc/shadow'" in r.stderr
    assert docker_engine.image(tag) is None


def test_a_failing_build_shows_the_last_lines_of_its_log(docker_engine, base_image):
    dockerfile = f"FROM {base_image.image_id}\nRUN echo 'compiling the thing' && exit 3\n"
    ctx = io.BytesIO()
    write_context([ContextEntry.from_bytes("Dockerfile", dockerfile.encode())], ctx)
    ctx.seek(0)
    with pytest.raises(BuildError) as e:
        docker_engine.build(ctx, tag="reproexec-test:never", labels={}, network_mode="none")
    assert "returned a non-zero code: 3" in e.value.message
    assert any("compiling the thing" in line for line in e.value.details)
    assert docker_engine.image("reproexec-test:never") is None
