"""A base pinned by digest in a registry: the normal case for users with a registry, through the
same code path as the offline base. A real registry (Debian's docker-registry) on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
from needs import require
from runfixtures import write_config

from reproexec.config import load_config
from reproexec.env.base import resolve_base
from reproexec.env.build import build_image, plan_build


@pytest.fixture(scope="module")
def local_registry(tmp_path_factory):
    exe = shutil.which("docker-registry")
    if exe is None:
        require("docker-registry (Debian package)", "it is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path_factory.mktemp("registry")
    cfg = root / "config.yml"
    cfg.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "
        + str(root / "store")
        + f"\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen([exe, "serve", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the local registry did not start")
            time.sleep(0.3)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def test_a_digest_pinned_base_is_pulled_pinned_and_built(
    docker_engine, base_image, local_registry, demo_snapshot, tmp_path
):
    repo = f"{local_registry}/reproexec-base"
    _docker("tag", base_image.tag, f"{repo}:bookworm")
    _docker("push", f"{repo}:bookworm")
    digest_ref = next(d for d in docker_engine.image(f"{repo}:bookworm").repo_digests if d.startswith(repo))
    _docker("rmi", f"{repo}:bookworm")  # untag only: the image stays as reproexec-base
    if docker_engine.image(digest_ref) is not None:
        _docker("rmi", digest_ref)
    assert docker_engine.image(digest_ref) is None

    base = resolve_base(digest_ref, docker_engine)  # not here: pulled from the registry by digest
    assert base.pinned_by == "digest" and base.pinned == digest_ref and base.image_id == base_image.image_id

    cfg = load_config(write_config(tmp_path, demo_snapshot, env={"base_image": digest_ref}))
    plan = plan_build(cfg, docker_engine)
    assert f"FROM {digest_ref}\n" in plan.dockerfile
    assert plan.inputs["base_image"] == {"reference": digest_ref, "pinned_by": "digest"}
    assert plan.inputs["base_layers"] == list(docker_engine.image(base_image.tag).layers)  # content, not an id
    result = build_image(plan, docker_engine)
    assert docker_engine.image(result.tag).labels["org.reproexec.base"] == digest_ref
    docker_engine.remove_image(result.tag)
