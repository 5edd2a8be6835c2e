"""Same numbers on another machine: a run exported --with-base reruns identical on a second Docker
engine with no images, its own wheel cache and its own run store (markers: docker, slow). This is
also the suite's rerun-after-losing-everything test: image, base, caches and store are all new."""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest
from runfixtures import write_config
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.config import load_config
from reproexec.run import RunOptions, execute_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]
runner = CliRunner()


def test_a_with_base_bundle_rebuilds_the_recorded_image_and_reruns_identical_on_machine_b(
    docker_engine, base_image, demo_snapshot, machine_b, tmp_path, monkeypatch
):
    # machine A: a short demo run, exported with its base's rootfs only
    cfg = write_config(tmp_path, demo_snapshot, train={"epochs": 1, "max_steps": 6})
    run = execute_run(load_config(cfg), RunOptions(runs_dir=tmp_path / "runs-a"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    recorded = json.loads((run.run_dir / "run.json").read_text())["image"]
    bundle = tmp_path / "run.tar.gz"
    r = runner.invoke(app, ["export", run.run_id, "-o", str(bundle), "--with-base", "--runs-dir", str(tmp_path / "runs-a")])
    assert r.exit_code == 0, r.output + r.stderr
    with tarfile.open(bundle) as tar:
        (base,) = [m for m in tar.getmembers() if m.name.endswith("/base.tar.gz")]
        assert not any(m.name.endswith("/image.tar") for m in tar.getmembers())
    assert base.size < 150 * 1024**2  # the rootfs (~80 MB), not a multi-GB image

    # machine B: another engine, nothing in common but the bundle and the dataset
    monkeypatch.setenv("DOCKER_HOST", machine_b.host)
    monkeypatch.setenv("REPROEXEC_CACHE", str(tmp_path / "cache-b"))
    store = tmp_path / "runs-b"
    r = runner.invoke(app, ["rerun", str(bundle), "--data", str(demo_snapshot), "--runs-dir", str(store)])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"identical (rerun of {run.run_id})" in r.stdout

    from reproexec.engine import connect

    b = connect()
    assert b.image(recorded["tag"]) is not None  # rebuilt to the recorded content hash, not loaded
    assert b.image(recorded["base"]["reference"]).layers == tuple(recorded["base"]["layers"])

    # still machine B, with the host's own CPU-math variables set and another CPU set: still identical
    for name, value in {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "AVX", "ATEN_CPU_CAPABILITY": "default",
                        "OMP_NUM_THREADS": "2"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    r = runner.invoke(app, ["rerun", run.run_id, "--cpuset", "1", "--runs-dir", str(store)])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"identical (rerun of {run.run_id})" in r.stdout
    new = max((p for p in store.iterdir() if p.name != run.run_id and not p.name.startswith(".")),
              key=lambda p: json.loads((p / "run.json").read_text())["started_at"])
    rec = json.loads((new / "run.json").read_text())
    assert rec["resources"]["cpuset"] == "1" and rec["verdict"] == "identical" and rec["rerun_of"] == run.run_id
    assert json.loads((new / "comparison.json").read_text())["comparison"]["verdict"] == "identical"
    assert 'id="verdict">identical<' in (new / "comparison.html").read_text()
    shutil.rmtree(tmp_path / "cache-b")  # B's ~3 GB of wheels: pytest keeps its temp folders


def test_a_base_that_does_not_match_its_record_is_refused_and_nothing_is_imported(
    docker_engine, base_image, demo_snapshot, machine_b, tmp_path, monkeypatch
):
    import gzip
    import hashlib
    import io

    from reproexec.bundle import import_bundle
    from reproexec.errors import ReproexecError

    files = {"summary.json": b"{}"}
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as t:
        info = tarfile.TarInfo("etc/os-release")
        info.size = 3
        t.addfile(info, io.BytesIO(b"x=1"))
    claimed = hashlib.sha256(b"another rootfs").hexdigest()
    record = {
        "schema": 1, "run_id": "r-base", "status": "succeeded", "started_at": "2026-11-25T10:00:00+00:00",
        "reproexec_version": "0.1.0", "artifacts": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
        "image": {"tag": "reproexec-env:" + "1" * 64, "id": "sha256:" + "2" * 64, "content_hash": "1" * 64,
                  "base": {"reference": "reproexec-test-base:b", "layers": [f"sha256:{claimed}"]}},
    }  # fmt: skip
    path = tmp_path / "b.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {"run.json": json.dumps(record).encode(), **files, "base.tar.gz": gzip.compress(rootfs.getvalue())}.items():
            info = tarfile.TarInfo(f"r-base/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setenv("DOCKER_HOST", machine_b.host)
    from reproexec.engine import connect

    b = connect()
    with pytest.raises(ReproexecError, match="does not match its recorded id"):
        import_bundle(path, tmp_path / "store", lambda: b)
    assert b.image("reproexec-test-base:b") is None
