"""`reproexec gc`: what no run in the store uses goes, what a run uses stays."""

import json

import pytest
from fakes import FakeEngine

from reproexec.engine import ImageInfo
from reproexec.env.gc import apply_gc, plan_gc


def _image(engine, tag, n, created, labels=None, size=1000):
    info = ImageInfo(
        id=f"sha256:{n * 64}",
        tags=(tag,) if tag else (),
        repo_digests=(),
        labels=labels or {},
        size=size,
        created=created,
    )
    engine.images[tag or info.id] = info
    engine.images[info.id] = info
    return info


def _run(runs, name, image_tag=None, code_image=None):
    (runs / name).mkdir(parents=True)
    record = {
        "schema": 1,
        "run_id": name,
        "status": "succeeded",
        "started_at": "2026-11-25T10:00:00+00:00",
        "reproexec_version": "0.1.0",
        "image": {"tag": image_tag, "id": "sha256:" + "f" * 64, "content_hash": image_tag.split(":")[1]}
        if image_tag
        else None,
        "runtime": {"image": code_image},
    }
    (runs / name / "run.json").write_text(json.dumps(record))


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROEXEC_CACHE", str(tmp_path / "cache"))


def test_only_images_no_run_uses_are_removed(tmp_path):
    engine, runs = FakeEngine(), tmp_path / "runs"
    used = _image(engine, "reproexec-env:" + "a" * 64, "a", created=10)
    code = _image(engine, "reproexec-code:" + "b" * 64, "b", created=11)
    old = _image(engine, "reproexec-env:" + "c" * 64, "c", created=5, size=6_000_000_000)
    new = _image(engine, "reproexec-env:" + "d" * 64, "d", created=20)
    stage = _image(engine, None, "e", created=9, labels={"org.reproexec.base.suite": "bookworm"}, size=9_000_000_000)
    other = _image(engine, "someone-elses:latest", "9", created=1)
    _run(runs, "r1", used.tags[0], code.tags[0])

    plan = plan_gc(engine, runs, keep_last=1)
    assert {i.ref for i in plan.keep} == {used.tags[0], code.tags[0], new.tags[0]}
    assert {i.ref for i in plan.remove} == {old.tags[0], stage.id}
    assert plan.bytes == 15_000_000_000
    assert apply_gc(engine, plan) == []
    assert set(engine.removed) == {old.tags[0], stage.id}
    assert engine.image(used.tags[0]) and engine.image(other.tags[0])  # never someone else's
    assert {i.ref for i in plan_gc(engine, runs, keep_last=0).remove} == {new.tags[0]}


def test_a_base_rootfs_a_run_needs_for_its_recipe_is_kept_and_said_so(tmp_path):
    """A run rebuilt from its recipe on another engine (or after its image went) needs its base's
    rootfs; so does `export --with-base`. gc keeps those, says why, and removes the rest."""
    engine, runs = FakeEngine(), tmp_path / "runs"
    store = tmp_path / "cache" / "rootfs"
    store.mkdir(parents=True)
    needed, base, stale = "1" * 64, "2" * 64, "3" * 64
    for sha in (needed, base, stale):
        (store / f"{sha}.tar.gz").write_bytes(b"x" * 10)
    _image(engine, "reproexec-base:bookworm", "b", created=1, labels={"org.reproexec.base.rootfs-sha256": base})
    _run(runs, "r1", "reproexec-env:" + "a" * 64)
    record = json.loads((runs / "r1" / "run.json").read_text())
    record["image"]["base"] = {"reference": "reproexec-base:bookworm", "layers": [f"sha256:{needed}"]}
    (runs / "r1" / "run.json").write_text(json.dumps(record))

    plan = plan_gc(engine, runs)
    kept = {i.id: i.why for i in plan.keep if i.kind == "rootfs"}
    assert kept == {
        needed: "base rootfs a run in the store was built on (rerun from its recipe, --with-base)",
        base: "base rootfs of a base image on this engine (export --with-base)",
    }
    assert [i.id for i in plan.remove if i.kind == "rootfs"] == [stale]
    assert apply_gc(engine, plan) == []
    assert sorted(p.name for p in store.iterdir()) == [f"{needed}.tar.gz", f"{base}.tar.gz"]
