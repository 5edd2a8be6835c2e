"""A run's recipe (recipe/ in its run folder) rebuilds the recorded image with a later reproexec:
the recorded tag, the recorded reproexec inside; what is missing or altered is named."""

import gzip
import io
import json
import shutil
import tarfile

import pytest
from fakes import FakeEngine
from runfixtures import loaded

from reproexec.env import spec as imagespec
from reproexec.env.build import build_image, image_record, plan_build
from reproexec.env.recipe import RECIPE_DIR, plan_from_recipe, recipe_entries, write_recipe
from reproexec.errors import BuildError, EngineError, RunError


@pytest.fixture
def recorded_run(project):
    """A run folder as `reproexec run` leaves it: its image built, its record and its recipe."""
    tmp, engine = project
    plan = plan_build(loaded(tmp), engine)
    image = image_record(plan, build_image(plan, engine))
    run_dir = tmp / "runs" / "r1"
    write_recipe(plan.context, run_dir / RECIPE_DIR)
    (run_dir / "Dockerfile").write_text(plan.dockerfile)
    (run_dir / "requirements.lock").write_text(plan.spec.lock.text)
    return tmp, engine, run_dir, image


def machine_b(engine: FakeEngine) -> FakeEngine:
    """Another engine with the same base (same layers, another id) and nothing else."""
    b = FakeEngine()
    base = engine.images["reproexec-base:bookworm"]
    b.add_image("reproexec-base:bookworm", image_id="sha256:" + "b" * 64, layers=base.layers)
    b.freeze = engine.freeze
    return b


def upgrade(tmp, monkeypatch):
    """What the next release of reproexec looks like: another wheel of its own, another hash schema."""
    other = tmp / "reproexec-0.2.0-py3-none-any.whl"
    other.write_bytes(b"reproexec, the next release")
    monkeypatch.setenv("REPROEXEC_WHEEL", str(other))
    monkeypatch.setattr(imagespec, "HASH_SCHEMA", imagespec.HASH_SCHEMA + 1)


def test_a_later_reproexec_rebuilds_the_recorded_tag_from_the_recipe(recorded_run, monkeypatch):
    tmp, engine, run_dir, image = recorded_run
    upgrade(tmp, monkeypatch)
    b = machine_b(engine)
    assert plan_build(loaded(tmp), b).tag != image["tag"]  # today's reproexec would make another image

    plan = plan_from_recipe(image, run_dir, b, source="run r1")
    assert plan.tag == image["tag"] and plan.inputs == image["hash_inputs"]
    result = build_image(plan, b)
    assert result.tag == image["tag"] and not result.cached
    staged = b.builds[0]
    assert "selfwheel/reproexec-0.1.0-py3-none-any.whl" in staged["members"]  # the recorded reproexec goes in
    assert "selfwheel/reproexec-0.2.0-py3-none-any.whl" not in staged["members"]
    assert json.loads(b.builds[1]["labels"]["org.reproexec.hash-inputs"]) == image["hash_inputs"]
    entries = recipe_entries(run_dir, image, source="run r1")
    assert [e.arcname for e in entries] == sorted(a for a, _, _ in image["hash_inputs"]["context"])


def test_an_altered_recipe_or_record_is_refused_with_the_file_named(recorded_run):
    tmp, engine, run_dir, image = recorded_run
    lock = run_dir / RECIPE_DIR / "requirements.lock"
    lock.write_text(lock.read_text() + "\n# edited\n")
    with pytest.raises(RunError, match="its recipe does not match its record") as e:
        plan_from_recipe(image, run_dir, machine_b(engine), source="run r1")
    assert any(d.startswith("recipe/requirements.lock: sha256") for d in e.value.details)

    altered = {**image, "hash_inputs": {**image["hash_inputs"], "flavour": "cuda"}}
    with pytest.raises(RunError, match="the recorded build inputs hash to .* not to the recorded image"):
        plan_from_recipe(altered, run_dir, machine_b(engine), source="run r1")

    (run_dir / RECIPE_DIR / "Dockerfile").unlink()
    (run_dir / RECIPE_DIR / "Dockerfile").symlink_to(run_dir / "Dockerfile")  # a link is never followed
    with pytest.raises(RunError) as e:
        recipe_entries(run_dir, image, source="run r1")
    assert any(d.startswith("recipe/Dockerfile:") for d in e.value.details)


def test_a_run_made_before_recipes_rebuilds_when_its_reproexec_wheel_is_at_hand(
    recorded_run, isolated_cache, monkeypatch
):
    tmp, engine, run_dir, image = recorded_run
    wheel = run_dir / RECIPE_DIR / "selfwheel" / "reproexec-0.1.0-py3-none-any.whl"
    kept = isolated_cache / "self" / "abc" / wheel.name  # the cache of wheels this machine built
    kept.parent.mkdir(parents=True)
    shutil.copy(wheel, kept)
    shutil.rmtree(run_dir / RECIPE_DIR)  # a run folder of run.json schema 1: Dockerfile and lockfile only
    upgrade(tmp, monkeypatch)

    plan = plan_from_recipe(image, run_dir, machine_b(engine), source="run r1")
    assert plan.tag == image["tag"] and plan.spec.self_wheel.path == kept

    kept.unlink()
    with pytest.raises(BuildError) as e:
        plan_from_recipe(image, run_dir, machine_b(engine), source="run r1")
    assert "was made before run folders kept reproexec's own wheel" in e.value.message
    assert "reproexec-0.1.0-py3-none-any.whl" in e.value.message and "REPROEXEC_WHEEL" in (e.value.hint or "")


def rootfs_tar(tmp) -> tuple[bytes, str]:
    import hashlib

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/os-release")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"ID=debian"))
    return buf.getvalue(), hashlib.sha256(buf.getvalue()).hexdigest()


def test_the_base_is_found_by_its_layers_or_imported_from_the_cached_rootfs(project, isolated_cache):
    tmp, engine = project
    data, sha = rootfs_tar(tmp)
    engine.add_image("reproexec-base:bookworm", layers=[f"sha256:{sha}"])
    plan = plan_build(loaded(tmp), engine)
    image = image_record(plan, build_image(plan, engine))
    run_dir = tmp / "r1"
    write_recipe(plan.context, run_dir / RECIPE_DIR)

    b = FakeEngine()  # machine B: no base at all, but the rootfs in reproexec's cache
    b.freeze = engine.freeze
    (isolated_cache / "rootfs").mkdir()
    (isolated_cache / "rootfs" / f"{sha}.tar.gz").write_bytes(gzip.compress(data))
    rebuilt = plan_from_recipe(image, run_dir, b, source="run r1")
    assert rebuilt.tag == image["tag"]
    assert b.imports[0]["tag"] == f"reproexec-base-rootfs:{sha}"  # a tag from the checked content, not the record
    assert rebuilt.spec.base.image_id == b.images[f"reproexec-base-rootfs:{sha}"].id


def test_a_missing_base_names_the_debian_packages_that_moved(recorded_run):
    tmp, engine, run_dir, image = recorded_run
    (run_dir / "environment.json").write_text(
        json.dumps({"debian_packages": {"libc6": "2.36-9+deb12u10", "zlib1g": "1"}})
    )
    b = FakeEngine()
    b.add_image(
        "reproexec-base:bookworm",
        layers=["sha256:" + "7" * 64],
        labels={"org.reproexec.base.debian-packages": "libc6=2.36-9+deb12u13 zlib1g=1"},
    )
    with pytest.raises(EngineError) as e:
        plan_from_recipe(image, run_dir, b, source="run r1")
    assert "was built on a base that is not on this machine: reproexec-base:bookworm" in e.value.message
    assert "Debian packages moved on: libc6 2.36-9+deb12u10 → 2.36-9+deb12u13" in e.value.message
    assert "--with-base" in (e.value.hint or "")


def test_an_image_built_another_way_is_named_by_its_hash_schema(recorded_run):
    tmp, engine, run_dir, image = recorded_run
    inputs = {**image["hash_inputs"], "schema": 2}
    digest = imagespec.content_hash(inputs)
    old = {**image, "hash_inputs": inputs, "content_hash": digest, "tag": imagespec.image_tag(digest)}
    with pytest.raises(BuildError, match="built the way hash schema 2 builds, which this reproexec does not replay"):
        plan_from_recipe(old, run_dir, machine_b(engine), source="run r1")


def test_a_tag_not_built_by_reproexec_is_not_a_cache_hit(project):
    """Only build_image tags reproexec-env:<hash>, with its labels; anything else under that tag
    (a manual `docker tag`, an old bundle import) is refused, not run."""
    tmp, engine = project
    plan = plan_build(loaded(tmp), engine)
    engine.add_image(plan.tag, labels={"org.reproexec.content-hash": plan.content_hash})
    with pytest.raises(BuildError, match="does not carry the labels reproexec's build of it gives"):
        build_image(plan, engine)


def test_wheels_that_cannot_be_had_say_how_to_rebuild_anyway(recorded_run, isolated_cache, monkeypatch):
    tmp, engine, run_dir, image = recorded_run
    shutil.rmtree(isolated_cache / "resolved")  # machine B: no wheel cache, and pip reaches no index
    shutil.rmtree(isolated_cache / "wheels")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(BuildError) as e:
        plan_from_recipe(image, run_dir, machine_b(engine), source="run r1")
    assert e.value.message.startswith("run r1: the recorded wheels cannot be had on this machine (pip could not")
    assert "PIP_FIND_LINKS" in e.value.hint and "--with-image" in e.value.hint
    assert "re-lock" not in e.value.hint  # the locking hint is wrong for someone rebuilding a recorded run
