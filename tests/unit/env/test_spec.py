"""The rendered Dockerfile (golden), the build context and the content hash."""

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from needs import REPO

from reproexec.env.context import write_context
from reproexec.env.lock import parse_lock
from reproexec.env.spec import (
    LARGE_WHEEL_BYTES,
    BaseImage,
    ImageSpec,
    build_context,
    content_hash,
    hash_inputs,
    render_dockerfile,
)
from reproexec.env.wheels import Wheel

GOLDEN = REPO / "tests" / "golden"
BASE_ID = "sha256:" + "1" * 64
BASE_LAYERS = ("sha256:" + "4" * 64,)
BASE_CONFIG = {"Cmd": ["python3"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
LOCK_TEXT = (
    "numpy==2.4.6 \\\n    --hash=sha256:" + "a" * 64 + "\n"
    "torch==2.14.1 \\\n    --hash=sha256:" + "b" * 64 + "\n    # via torchvision\n"
)


def make_spec(tmp: Path, **changes) -> ImageSpec:
    wheel = tmp / "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"numpy wheel")
    large = tmp / "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl"
    with open(large, "wb") as f:
        f.truncate(LARGE_WHEEL_BYTES)  # sparse: a large wheel as far as the spec can tell
    me = tmp / "reproexec-0.1.0-py3-none-any.whl"
    me.write_bytes(b"reproexec wheel")
    spec = ImageSpec(
        flavour="cpu",
        base=BaseImage(
            reference="reproexec-base:bookworm",
            image_id=BASE_ID,
            pinned_by="content",
            layers=BASE_LAYERS,
            config=BASE_CONFIG,
        ),
        lock=parse_lock(LOCK_TEXT, Path("requirements.lock")),
        wheels=(
            Wheel("numpy", "2.4.6", wheel.name, "a" * 64, wheel),
            Wheel("torch", "2.14.1", large.name, "b" * 64, large),
        ),
        self_wheel=Wheel("reproexec", "0.1.0", me.name, "c" * 64, me),
        apt_packages=(),
        cublas_workspace_config=":4096:8",
    )
    return dataclasses.replace(spec, **changes)


def inputs_of(spec: ImageSpec) -> dict:
    df = render_dockerfile(spec)
    return hash_inputs(spec, df, build_context(spec, df))


def tag_of(spec: ImageSpec) -> str:
    return content_hash(inputs_of(spec))


@pytest.mark.parametrize("flavour", ["cpu", "cuda"])
def test_rendered_dockerfile_matches_golden(tmp_path, flavour):
    spec = make_spec(tmp_path, flavour=flavour)
    text = render_dockerfile(spec)
    golden = GOLDEN / f"Dockerfile.{flavour}"
    if os.environ.get("REPROEXEC_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered Dockerfile.{flavour} changed; review, then REPROEXEC_UPDATE_GOLDEN=1"


def test_dockerfile_is_one_chain_with_served_wheels_hashed_and_not_root(tmp_path):
    text = render_dockerfile(make_spec(tmp_path))
    assert len(re.findall(r"^FROM ", text, re.M)) == 1  # no stage holds a second copy of the environment
    spec = make_spec(tmp_path)
    assert f"FROM reproexec-base-content:{spec.base.content_id.removeprefix('sha256:')}\n" in text
    assert BASE_ID.removeprefix("sha256:") not in text  # no machine-local id anywhere in the hashed text
    assert "--no-index" in text and "--require-hashes" in text
    assert "--find-links http://127.0.0.1:8000/ --trusted-host 127.0.0.1" in text  # the build's own server
    assert not re.search(r"^(COPY|ADD) .*wheels/ ", text, re.M)  # no wheel is ever a layer
    assert text.index("requirements.lock") < text.index("selfwheel/")  # reproexec above the environment
    assert "USER 10001:10001" in text
    assert "CUBLAS_WORKSPACE_CONFIG=:4096:8" in text and "PYTHONHASHSEED=0" in text


def test_digest_base_is_pinned_by_digest(tmp_path):
    ref = "python:3.11-slim-bookworm@sha256:" + "2" * 64
    spec = make_spec(tmp_path, base=BaseImage(reference=ref, image_id=BASE_ID, pinned_by="digest"))
    assert f"FROM {ref}\n" in render_dockerfile(spec)


def test_apt_packages_are_sorted_and_need_the_build_network(tmp_path):
    spec = make_spec(tmp_path, apt_packages=("zlib1g=1:1.2.13", "libgomp1=12.2.0-14"))
    assert "install -y --no-install-recommends libgomp1=12.2.0-14 zlib1g=1:1.2.13" in render_dockerfile(spec)
    assert spec.build_network == "wheels+outside" and make_spec(tmp_path).build_network == "wheels-only"


def test_context_tar_is_normalized_and_byte_identical(tmp_path):
    spec = make_spec(tmp_path)
    df = render_dockerfile(spec)
    entries = build_context(spec, df)
    a, b = io.BytesIO(), io.BytesIO()
    write_context(entries, a)
    os.utime(spec.self_wheel.path, (1, 1))  # a file's timestamp must not matter
    write_context(build_context(spec, df), b)
    assert a.getvalue() == b.getvalue()
    a.seek(0)
    with tarfile.open(fileobj=a) as tar:
        members = tar.getmembers()
    assert [m.name for m in members if m.isfile()] == sorted(m.name for m in members if m.isfile())
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    assert f"selfwheel/{spec.self_wheel.filename}" in [m.name for m in members]
    assert not [m.name for m in members if m.name.startswith("wheels")]  # served to the build, not sent


def test_hash_is_stable_across_processes(tmp_path):
    here = tag_of(make_spec(tmp_path))
    code = (
        "import sys, pathlib; sys.path[:0] = ['tests', 'tests/unit/env']; import test_spec as t; "
        f"print(t.tag_of(t.make_spec(pathlib.Path({str(tmp_path)!r}))))"
    )
    env = dict(os.environ, PYTHONHASHSEED="random")
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
        for _ in range(2)
    }
    assert runs == {here}


def test_every_input_changes_the_tag(tmp_path):
    spec = make_spec(tmp_path)
    other_wheel = dataclasses.replace(spec.wheels[0], sha256="d" * 64)  # numpy's, small
    variants = {
        "base layers": dict(base=dataclasses.replace(spec.base, layers=("sha256:" + "3" * 64,))),
        "base config": dict(base=dataclasses.replace(spec.base, config={**BASE_CONFIG, "User": "1000"})),
        "lockfile": dict(lock=parse_lock(LOCK_TEXT + "# comment\n", Path("requirements.lock"))),
        "wheel": dict(wheels=(other_wheel, spec.wheels[1])),
        "reproexec wheel": dict(self_wheel=dataclasses.replace(spec.self_wheel, sha256="e" * 64)),
        "flavour": dict(flavour="cuda"),
        "apt": dict(apt_packages=("libgomp1=12.2.0-14",)),
        "cublas": dict(cublas_workspace_config=":16:8"),
    }
    tags = {name: tag_of(dataclasses.replace(spec, **change)) for name, change in variants.items()}
    tags["original"] = tag_of(spec)
    assert len(set(tags.values())) == len(tags), json.dumps(tags, indent=1)


def test_the_same_base_imported_on_two_machines_gives_the_same_tag(tmp_path):
    """`docker import` of one rootfs tar gives the same diff_id everywhere but a new image id each time."""
    here = make_spec(tmp_path)
    there = dataclasses.replace(here, base=dataclasses.replace(here.base, image_id="sha256:" + "9" * 64))
    assert tag_of(there) == tag_of(here)
    assert render_dockerfile(there) == render_dockerfile(here)


def test_a_base_with_other_layers_gives_another_tag(tmp_path):
    here = make_spec(tmp_path)
    moved_on = "sha256:" + "5" * 64  # the mirror moved on: another rootfs, another diff_id
    there = dataclasses.replace(here, base=dataclasses.replace(here.base, layers=(moved_on,)))
    assert tag_of(there) != tag_of(here)
    assert inputs_of(there)["base_layers"] == [moved_on]
    assert render_dockerfile(there) != render_dockerfile(here)  # FROM names the content tag


def test_large_wheels_get_a_layer_that_a_small_pin_change_keeps(tmp_path):
    """torch & co. are installed first from requirements.large.lock: changing numpy changes neither
    that file nor the Dockerfile up to it, so Docker reuses the large layer; changing torch does."""
    spec = make_spec(tmp_path)
    text = render_dockerfile(spec)
    large_step = text.index("COPY requirements.large.lock")
    assert large_step < text.index("COPY requirements.lock") < text.index("selfwheel/")
    assert "--no-deps" in text[large_step : text.index("COPY requirements.lock")]

    def context(s: ImageSpec) -> dict[str, str]:
        return {e.arcname: e.sha256 for e in build_context(s, render_dockerfile(s))}

    here = context(spec)
    large_lock = parse_lock(spec.lock.text_of([spec.lock.get("torch")]), Path("requirements.large.lock"))
    assert [(r.name, r.version, r.hashes) for r in large_lock.requirements] == [("torch", "2.14.1", ("b" * 64,))]
    numpy_changed = make_spec(
        tmp_path, lock=parse_lock(LOCK_TEXT.replace("numpy==2.4.6", "numpy==2.4.5"), Path("r.lock"))
    )
    torch_changed = make_spec(
        tmp_path, lock=parse_lock(LOCK_TEXT.replace("torch==2.14.1", "torch==2.14.0"), Path("r.lock"))
    )
    assert context(numpy_changed)["requirements.large.lock"] == here["requirements.large.lock"]
    assert context(numpy_changed)["requirements.lock"] != here["requirements.lock"]
    assert render_dockerfile(numpy_changed)[:large_step] == text[:large_step]
    assert context(torch_changed)["requirements.large.lock"] != here["requirements.large.lock"]

    small_only = make_spec(
        tmp_path, lock=parse_lock(LOCK_TEXT.split("torch")[0], Path("r.lock")), wheels=spec.wheels[:1]
    )
    assert "requirements.large.lock" not in render_dockerfile(small_only)
    assert "requirements.large.lock" not in context(small_only)
