"""plan_build/build_image against a narrow fake engine: cache hits, refusals, nothing half-tagged."""

import json

import pytest
from fakes import FakeEngine
from runfixtures import loaded

from reproexec.env.build import build_image, plan_build
from reproexec.errors import BuildError, ConfigError, EngineError, LockError


def test_first_build_builds_then_tags_and_second_is_a_cache_hit(project):
    tmp, engine = project
    plan = plan_build(loaded(tmp), engine)
    first = build_image(plan, engine)
    assert not first.cached and first.tag == f"reproexec-env:{plan.content_hash}"
    staged, final = engine.builds
    (served,) = engine.served  # the wheels, served to the staged build only, in a namespace with no way out
    assert staged["tag"] is None and staged["network_mode"] == "container:fake-wheel-server-1"
    assert not served["outside"] and served["port"] == 8000 and served["image"] == plan.spec.base.image_id
    assert served["files"] == sorted(w.filename for w in plan.spec.wheels)
    assert not served["folder"].exists()  # the folder of links is gone after the build
    assert final["network_mode"] == "none"
    assert not any(m.startswith("wheels") for m in staged["members"])  # never sent as build context
    assert final["tag"] == plan.tag  # tagged only in the last step, after the freeze check
    assert final["labels"]["org.reproexec.pip-freeze"].startswith("matplotlib==1.0\n")
    assert json.loads(final["labels"]["org.reproexec.hash-inputs"]) == plan.inputs
    assert sorted(staged["members"])[:3] == ["Dockerfile", "requirements.lock", "selfwheel"]

    again = build_image(plan_build(loaded(tmp), engine), engine)
    assert again.cached and again.tag == first.tag and len(engine.builds) == 2  # no build call


def test_same_base_layers_on_another_machine_give_the_same_tag(project):
    """Machine B imported the same rootfs: same diff_ids, another image id (docker import stamps the time)."""
    tmp, engine_a = project
    layers = ("sha256:" + "4" * 64,)
    engine_a.add_image("reproexec-base:bookworm", image_id="sha256:" + "a" * 64, layers=layers)
    engine_b = FakeEngine()
    engine_b.add_image("reproexec-base:bookworm", image_id="sha256:" + "b" * 64, layers=layers)
    plan_a, plan_b = plan_build(loaded(tmp), engine_a), plan_build(loaded(tmp), engine_b)
    assert plan_a.tag == plan_b.tag and plan_a.dockerfile == plan_b.dockerfile
    assert "sha256:" + "a" * 64 not in json.dumps(plan_a.inputs) + plan_a.dockerfile

    engine_b.add_image("reproexec-base:bookworm", image_id="sha256:" + "b" * 64, layers=("sha256:" + "5" * 64,))
    moved_on = plan_build(loaded(tmp), engine_b)
    assert moved_on.tag != plan_a.tag and moved_on.inputs["base_layers"] == ["sha256:" + "5" * 64]


def test_build_starts_from_the_verified_base_by_its_content_tag(project):
    tmp, engine = project
    plan = plan_build(loaded(tmp), engine)
    build_image(plan, engine)
    content_tag = plan.spec.base.pinned
    assert content_tag.startswith("reproexec-base-content:") and f"FROM {content_tag}\n" in plan.dockerfile
    assert engine.image(content_tag).id == plan.spec.base.image_id
    built = engine.image(plan.tag)
    assert built.layers[: len(plan.spec.base.layers)] == plan.spec.base.layers


def test_a_build_on_another_base_is_refused_untagged(project, monkeypatch):
    tmp, engine = project
    plan = plan_build(loaded(tmp), engine)
    other = engine.add_image("someone-elses:base", layers=("sha256:" + "6" * 64,))
    real_tag = engine.tag

    def retag_to_other(image_id, repository, tag):  # someone moves the content tag under our feet
        real_tag(other.id, repository, tag)

    monkeypatch.setattr(engine, "tag", retag_to_other)
    with pytest.raises(BuildError, match="built on another base than reproexec-base:bookworm") as e:
        build_image(plan, engine)
    assert e.value.details[1] == f"built layers {other.layers[0]}"
    assert engine.image(plan.tag) is None


def test_tampered_cached_wheel_is_refused_and_nothing_is_built(project, isolated_cache):
    tmp, engine = project
    plan = plan_build(loaded(tmp), engine)
    victim = plan.spec.wheels[0].path
    victim.write_bytes(b"evil")
    with pytest.raises(BuildError) as e:
        build_image(plan, engine)
    assert "corrupted or tampered" in e.value.message and str(victim) in e.value.details[0]
    assert engine.builds == [] and engine.image(plan.tag) is None


def test_failed_build_or_freeze_mismatch_leaves_no_tag(project):
    tmp, engine = project
    plan = plan_build(loaded(tmp), engine)
    engine.freeze = engine.freeze.replace("numpy==1.0", "numpy==9.9")
    with pytest.raises(BuildError, match="differs from the lockfile") as e:
        build_image(plan, engine)
    assert e.value.details == ["numpy: locked 1.0, installed 9.9"]
    engine.fail_build = "pip exited 1"
    with pytest.raises(BuildError, match="pip exited 1"):
        build_image(plan, engine)
    assert engine.image(plan.tag) is None


def test_gpu_needs_cuda_flavour_and_cuda_needs_a_cuda_torch(project):
    tmp, engine = project
    with pytest.raises(ConfigError, match=r"--gpu needs a CUDA image, but .* env.flavour = 'cpu'"):
        plan_build(loaded(tmp), engine, gpu=True)
    with pytest.raises(LockError, match="CPU-only torch"):
        plan_build(loaded(tmp, flavour="cuda"), engine, gpu=True)


def test_missing_base_says_bootstrap(project):
    tmp, engine = project
    with pytest.raises(EngineError) as e:
        plan_build(loaded(tmp, base_image="my-base:1"), engine)
    assert e.value.message == "base image my-base:1 is not on this machine (env.base_image)"
    assert "reproexec base bootstrap --tag my-base:1" in e.value.hint
    with pytest.raises(EngineError, match="could not be pulled"):
        plan_build(loaded(tmp, base_image="python:3.11-slim@sha256:" + "f" * 64), engine)


def test_lockfile_missing_trainer_packages(project):
    tmp, engine = project
    lock = tmp / "requirements.lock"
    lock.write_text("\n".join(b for b in lock.read_text().split("\n") if not b.startswith(("torch==", "pyyaml"))))
    with pytest.raises(LockError, match="lacks packages the run image needs"):
        plan_build(loaded(tmp), engine)


def test_wheels_cached_under_a_strict_umask_are_served_readable(project):
    """The wheel server runs as nobody: a wheel cached 0600 (umask 077) is served world-readable."""
    tmp, engine = project
    plan = plan_build(loaded(tmp), engine)
    for w in plan.spec.wheels:
        w.path.chmod(0o600)
    build_image(plan, engine)
    (served,) = engine.served
    assert served["files"] and all(mode & 0o004 for mode in served["modes"].values()), served["modes"]


def test_arm64_is_named_in_the_hash_inputs_and_gives_its_own_tag(project, isolated_cache):
    """env.arch is part of the content hash: the same lockfile on an arm64 base is another image,
    and says so in its hash inputs; an amd64 base under env.arch arm64 is refused up front."""
    from reproexec.config import LoadedConfig, validate_config

    tmp, engine = project

    def config(**env):
        raw = {"name": "t", "data": {"snapshot": "d"}, "env": env, "determinism": {"cpu_capability": "default"}}
        return LoadedConfig(config=validate_config(raw), path=tmp / "config.yaml")

    amd = plan_build(config(), engine)
    assert amd.inputs["arch"] == "amd64" and amd.inputs["schema"] == 5
    with pytest.raises(ConfigError, match="reproexec-base:bookworm is a linux/amd64 image, but the run is linux/arm64"):
        plan_build(config(arch="arm64"), engine)
    base = engine.images["reproexec-base:bookworm"]
    engine.add_image("reproexec-base:bookworm-arm64", layers=base.layers, architecture="arm64")
    arm = plan_build(config(arch="arm64", base_image="reproexec-base:bookworm-arm64"), engine)
    assert arm.inputs["arch"] == "arm64" and arm.tag != amd.tag
    assert arm.inputs["wheels"] == amd.inputs["wheels"] and arm.inputs["base_layers"] == amd.inputs["base_layers"]
