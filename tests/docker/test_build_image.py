"""The environment box against the real Docker engine (marker: docker)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.config import LoadedConfig, load_config
from reproexec.env.build import build_image, plan_build
from reproexec.errors import BuildError
from reproexec.fsutil import cache_dir
from reproexec.labels import LABEL_FREEZE, LABEL_HASH

DEMO = "examples/digits/config.yaml"


class CountingEngine:
    """The real engine, with its build calls counted."""

    def __init__(self, engine):
        self._engine, self.build_calls = engine, 0

    def build(self, *args, **kwargs):
        self.build_calls += 1
        return self._engine.build(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._engine, name)


@pytest.fixture(scope="session")
def demo_image(docker_engine, base_image):
    plan = plan_build(load_config(DEMO), docker_engine)
    return plan, build_image(plan, docker_engine)


def test_demo_image_carries_its_hash_and_the_frozen_lock(docker_engine, demo_image):
    plan, result = demo_image
    info = docker_engine.image(result.tag)
    assert info.labels[LABEL_HASH] == plan.content_hash
    assert info.labels["org.reproexec.lock-sha256"] == plan.spec.lock.sha256
    frozen = info.labels[LABEL_FREEZE].splitlines()
    for req in plan.spec.lock.requirements:
        assert any(line.lower().replace("_", "-") == req.pin for line in frozen), req.pin


def test_same_inputs_are_a_cache_hit_with_no_build_call(docker_engine, demo_image):
    plan, result = demo_image
    spy = CountingEngine(docker_engine)
    again = build_image(plan_build(load_config(DEMO), spy), spy)
    assert again.cached and again.tag == result.tag and again.image_id == result.image_id
    assert spy.build_calls == 0


def test_tag_is_the_same_in_another_process(demo_image):
    plan, _ = demo_image
    out = subprocess.run(
        [sys.executable, "-m", "reproexec", "build", DEMO, "--dry-run"], capture_output=True, text=True, check=True
    ).stdout
    assert out.rstrip().splitlines()[-1] == plan.tag


def test_image_runs_torch_as_non_root_with_no_network(docker_engine, demo_image):
    _, result = demo_image
    code = (
        "import os, socket, torch, torchvision\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=3); net = 'online'\n"
        "except OSError:\n    net = 'offline'\n"
        "print(torch.__version__.split('+')[0], torchvision.__version__.split('+')[0], os.getuid(), net)\n"
    )
    run = docker_engine.run_capture(result.tag, ["python", "-c", code])
    assert run.exit_code == 0, run.output
    assert run.output.split() == ["2.14.1", "0.29.1", "10001", "offline"]


def test_tampered_cached_wheel_is_refused_before_any_build(docker_engine, demo_image, tmp_path, monkeypatch):
    plan, _ = demo_image
    # A private copy of the wheel cache (hard links: cheap), with one small wheel tampered.
    cache = tmp_path / "cache"
    subprocess.run(["cp", "-al", str(cache_dir()), str(cache)], check=True)
    for index in (cache / "resolved").glob("*.json"):
        text = index.read_text().replace(str(cache_dir()), str(cache))
        index.unlink()  # a hard link too: writing through it would change the shared cache
        index.write_text(text)
    victim = next(w for w in plan.spec.wheels if w.name == "pyyaml")
    copy = cache / victim.path.relative_to(cache_dir())
    data = copy.read_bytes()
    copy.unlink()  # break the hard link: the shared cache stays intact
    copy.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    monkeypatch.setenv("REPROEXEC_CACHE", str(cache))
    # Another input (cuBLAS workspace) so no image with the new tag exists and a build is needed.
    loaded = load_config(DEMO)
    changed = loaded.config.model_copy(
        update={"determinism": loaded.config.determinism.model_copy(update={"cublas_workspace_config": ":16:8"})}
    )
    spy = CountingEngine(docker_engine)
    new_plan = plan_build(LoadedConfig(config=changed, path=loaded.path), spy)
    with pytest.raises(BuildError) as e:
        build_image(new_plan, spy)
    assert "corrupted or tampered" in e.value.message
    assert e.value.details == [f"{copy}: expected sha256 {victim.sha256}, found {_sha(copy)}"]
    assert spy.build_calls == 0 and docker_engine.image(new_plan.tag) is None


def _sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_build_reports_missing_base_with_the_fix(tmp_path, docker_engine):
    cfg = tmp_path / "config.yaml"
    shutil.copy("examples/digits/requirements.lock", tmp_path / "requirements.lock")
    cfg.write_text("name: t\ndata: {snapshot: d}\nenv: {base_image: 'nope-base:1'}\n")
    r = CliRunner().invoke(app, ["build", str(cfg)])
    assert r.exit_code == 5
    assert "base image nope-base:1 is not on this machine (env.base_image)" in r.stderr
    assert "reproexec base bootstrap --tag nope-base:1" in r.stderr
