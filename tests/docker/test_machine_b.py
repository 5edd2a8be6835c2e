"""Same numbers on another machine, and with another release: a run exported --with-base reruns
identical on a second Docker engine with no images, its own wheel cache and its own run store
(markers: docker, slow). This is also the suite's rerun-after-losing-everything test: image, base,
caches and store are all new. And a run made by another build of reproexec (a git worktree with a
change to its source: what every upgrade looks like) reruns identical with this one, rebuilt from
the run's recipe to the recorded tag, and the reverse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
from needs import REPO
from runfixtures import write_config
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.config import load_config
from reproexec.runs.execute import execute_run
from reproexec.runs.prepare import RunOptions

runner = CliRunner()


@pytest.fixture(scope="module")
def cache_b(tmp_path_factory):
    """Machine B's reproexec cache, shared by this module's tests (B's ~3 GB of wheels are downloaded
    once) and removed after it: pytest keeps its temp folders."""
    cache = tmp_path_factory.mktemp("cache-b")
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="module")
def other_release(tmp_path_factory):
    """Another build of reproexec: a git worktree of this checkout (its committed state, plus any
    uncommitted change to tracked files) with one more commit that changes reproexec's source, so its
    version and its wheel differ, as the next release's would. Installed as a user installs a
    release: its wheel, by pip, into its own venv (offline: its dependencies are this venv's, reached
    by a .pth after its own site-packages), with REPROEXEC_WHEEL naming that wheel for the image;
    the host side needs no torch."""
    import sysconfig

    where = tmp_path_factory.mktemp("release") / "other"
    git = ["git", "-C", str(REPO)]
    state = subprocess.run([*git, "stash", "create"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([*git, "worktree", "add", "--detach", str(where), state or "HEAD"], capture_output=True, check=True)
    trainer = where / "reproexec" / "runtime" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\n# another release: a change to reproexec's own source\n")
    subprocess.run(
        ["git", "-C", str(where), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "another release"],
        check=True,
    )
    venv = where.parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "--no-input"]
    dist = where.parent / "dist"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(where)], check=True
    )
    (wheel,) = dist.glob("reproexec-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--no-index", str(wheel)], check=True)
    yield where
    subprocess.run([*git, "worktree", "remove", "--force", str(where)], capture_output=True)


def reproexec_of(release, *args, env=None):
    """The CLI of another build of reproexec (the `reproexec` of its own venv), in a fresh process."""
    (wheel,) = (release.parent / "dist").glob("reproexec-*.whl")
    environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "PYTHONPATH"}
    environ["REPROEXEC_WHEEL"] = str(wheel)
    return subprocess.run(
        [str(release.parent / "venv" / "bin" / "reproexec"), *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=release,
    )


def test_a_with_base_bundle_rebuilds_the_recorded_image_and_reruns_identical_on_machine_b(
    docker_engine, base_image, demo_snapshot, machine_b, cache_b, tmp_path, monkeypatch
):
    # machine A: a short demo run, exported with its base's rootfs only
    cfg = write_config(tmp_path, demo_snapshot, train={"epochs": 1, "max_steps": 6})
    run = execute_run(load_config(cfg), RunOptions(runs_dir=tmp_path / "runs-a"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    recorded = json.loads((run.run_dir / "run.json").read_text())["image"]
    bundle = tmp_path / "run.tar.gz"
    r = runner.invoke(
        app, ["export", run.run_id, "-o", str(bundle), "--with-base", "--runs-dir", str(tmp_path / "runs-a")]
    )
    assert r.exit_code == 0, r.output + r.stderr
    with tarfile.open(bundle) as tar:
        (base,) = [m for m in tar.getmembers() if m.name.endswith("/base.tar.gz")]
        assert not any(m.name.endswith("/image.tar") for m in tar.getmembers())
    assert base.size < 150 * 1024**2  # the rootfs (~80 MB), not a multi-GB image

    # machine B: another engine, nothing in common but the bundle and the dataset
    monkeypatch.setenv("DOCKER_HOST", machine_b.host)
    monkeypatch.setenv("REPROEXEC_CACHE", str(cache_b))
    store = tmp_path / "runs-b"
    r = runner.invoke(app, ["rerun", str(bundle), "--data", str(demo_snapshot), "--runs-dir", str(store)])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"identical (rerun of {run.run_id})" in r.stdout

    from reproexec.engine import connect

    b = connect()
    assert b.image(recorded["tag"]) is not None  # rebuilt to the recorded content hash, not loaded
    rootfs = recorded["base"]["layers"][0].removeprefix("sha256:")
    assert b.image(f"reproexec-base-rootfs:{rootfs}").layers == tuple(recorded["base"]["layers"])
    assert b.image(recorded["base"]["reference"]) is None  # never a tag the bundle names

    # still machine B, with the host's own CPU-math variables set and another CPU set: still identical
    for name, value in {
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_CBWR": "AVX",
        "ATEN_CPU_CAPABILITY": "default",
        "OMP_NUM_THREADS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    r = runner.invoke(app, ["rerun", run.run_id, "--cpuset", "1", "--runs-dir", str(store)])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"identical (rerun of {run.run_id})" in r.stdout
    new = max(
        (p for p in store.iterdir() if p.name != run.run_id and not p.name.startswith(".")),
        key=lambda p: json.loads((p / "run.json").read_text())["started_at"],
    )
    rec = json.loads((new / "run.json").read_text())
    assert rec["resources"]["cpuset"] == "1" and rec["verdict"] == "identical" and rec["rerun_of"] == run.run_id
    assert json.loads((new / "comparison.json").read_text())["comparison"]["verdict"] == "identical"
    assert 'id="verdict">identical<' in (new / "comparison.html").read_text()


def test_a_run_made_by_another_release_reruns_identical_with_this_one_and_the_reverse(
    docker_engine, base_image, demo_snapshot, machine_b, cache_b, other_release, tmp_path, monkeypatch
):
    from reproexec._version import version, version_of_checkout

    theirs = version_of_checkout(other_release)
    assert theirs != version()  # two builds never share a version string
    r = reproexec_of(other_release, "--version")
    assert r.returncode == 0 and theirs in r.stdout, r.stdout + r.stderr  # its own venv runs its own build
    cfg = write_config(tmp_path, demo_snapshot, train={"epochs": 1, "max_steps": 6})

    # the other release makes a run on machine A and exports it with its base
    r = reproexec_of(other_release, "run", str(cfg), "--runs-dir", str(tmp_path / "runs-other"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (other_run,) = [p for p in (tmp_path / "runs-other").iterdir() if not p.name.startswith(".")]
    recorded = json.loads((other_run / "run.json").read_text())
    assert recorded["reproexec_version"] == theirs and recorded["image"]["reproexec"]["version"] == theirs
    assert (other_run / "recipe" / "selfwheel" / recorded["image"]["reproexec"]["wheel"]).is_file()
    bundle = tmp_path / "other.tar.gz"
    r = reproexec_of(
        other_release,
        "export",
        other_run.name,
        "-o",
        str(bundle),
        "--with-base",
        "--runs-dir",
        str(tmp_path / "runs-other"),
    )
    assert r.returncode == 0, r.stderr[-3000:]

    # this release reruns it on machine B: the recorded tag, rebuilt from the recipe; identical
    monkeypatch.setenv("DOCKER_HOST", machine_b.host)
    monkeypatch.setenv("REPROEXEC_CACHE", str(cache_b))
    store = tmp_path / "runs-b"
    r = runner.invoke(app, ["rerun", str(bundle), "--data", str(demo_snapshot), "--runs-dir", str(store)])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"identical (rerun of {other_run.name})" in r.stdout
    assert f"was made by reproexec {theirs}" in r.stderr and "the recorded reproexec trains inside it" in r.stderr
    from reproexec.engine import connect

    b = connect()
    assert b.image(recorded["image"]["tag"]) is not None
    (rerun,) = [p for p in store.iterdir() if p.name not in (other_run.name,) and not p.name.startswith(".")]
    mine = json.loads((rerun / "run.json").read_text())
    assert mine["image"]["tag"] == recorded["image"]["tag"] and mine["image"]["reproexec"]["version"] == theirs
    assert mine["reproexec_version"] == version()  # only the host side is this release
    assert (rerun / "recipe" / "selfwheel" / recorded["image"]["reproexec"]["wheel"]).is_file()

    # the reverse: this release's run, rerun by the other release on B with the image gone from B
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.delenv("REPROEXEC_CACHE")
    run = execute_run(load_config(cfg), RunOptions(runs_dir=tmp_path / "runs-mine"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    mine_tag = json.loads((run.run_dir / "run.json").read_text())["image"]["tag"]
    bundle = tmp_path / "mine.tar.gz"
    r = runner.invoke(
        app, ["export", run.run_id, "-o", str(bundle), "--with-base", "--runs-dir", str(tmp_path / "runs-mine")]
    )
    assert r.exit_code == 0, r.output + r.stderr
    if b.image(mine_tag) is not None:  # the first test of this module rebuilt it on B
        b.remove_image(mine_tag)
    r = reproexec_of(
        other_release,
        "rerun",
        str(bundle),
        "--data",
        str(demo_snapshot),
        "--runs-dir",
        str(tmp_path / "runs-b2"),
        env={"DOCKER_HOST": machine_b.host, "REPROEXEC_CACHE": str(cache_b)},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"identical (rerun of {run.run_id})" in r.stdout
    assert b.image(mine_tag) is not None


def test_a_base_that_does_not_match_its_record_is_refused_and_nothing_is_imported(
    docker_engine, base_image, demo_snapshot, machine_b, tmp_path, monkeypatch
):
    import gzip
    import hashlib
    import io

    from reproexec.errors import ReproexecError
    from reproexec.runs.bundle import import_bundle

    files = {"summary.json": b"{}"}
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as t:
        info = tarfile.TarInfo("etc/os-release")
        info.size = 3
        t.addfile(info, io.BytesIO(b"x=1"))
    claimed = hashlib.sha256(b"another rootfs").hexdigest()
    record = {
        "schema": 1,
        "run_id": "r-base",
        "status": "succeeded",
        "started_at": "2026-11-25T10:00:00+00:00",
        "reproexec_version": "0.1.0",
        "artifacts": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
        "image": {
            "tag": "reproexec-env:" + "1" * 64,
            "id": "sha256:" + "2" * 64,
            "content_hash": "1" * 64,
            "base": {"reference": "reproexec-test-base:b", "layers": [f"sha256:{claimed}"]},
        },
    }
    path = tmp_path / "b.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {
            "run.json": json.dumps(record).encode(),
            **files,
            "base.tar.gz": gzip.compress(rootfs.getvalue()),
        }.items():
            info = tarfile.TarInfo(f"r-base/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setenv("DOCKER_HOST", machine_b.host)
    from reproexec.engine import connect

    b = connect()
    with pytest.raises(ReproexecError, match="does not match its recorded id"):
        import_bundle(path, tmp_path / "store", lambda: b)
    assert b.image("reproexec-test-base:b") is None


def test_a_base_whose_cached_rootfs_is_gone_still_travels_read_back_from_the_engine(
    docker_engine, base_image, isolated_cache
):
    """The base is in the engine but reproexec's cache lost its rootfs (a cleaned home, another
    REPROEXEC_CACHE): `export --with-base` still has it, read back by `docker save` and checked."""
    import gzip
    import hashlib

    from reproexec.env.base import base_rootfs

    assert not (isolated_cache / "rootfs").exists()
    path, digest = base_rootfs(docker_engine, base_image.tag)
    assert path.parent == isolated_cache / "rootfs" and path.name == f"{digest}.tar.gz"
    assert docker_engine.image(base_image.tag).layers == (f"sha256:{digest}",)
    assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == digest
