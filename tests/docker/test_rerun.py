"""`reproexec rerun` and `env diff` on the real engine: "another machine", honestly on one host."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile

import pytest
from runfixtures import write_config
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.config import load_config
from reproexec.env.context import ContextEntry, write_context
from reproexec.runs.execute import execute_run
from reproexec.runs.prepare import RunOptions

runner = CliRunner()


@pytest.fixture(scope="module")
def original(docker_engine, base_image, demo_snapshot, tmp_path_factory):
    folder = tmp_path_factory.mktemp("origin")
    cfg = write_config(folder, demo_snapshot, train={"epochs": 2})
    run = execute_run(load_config(cfg), RunOptions(runs_dir=folder / "runs"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    bundle = folder / "run.tar.gz"
    r = runner.invoke(app, ["export", run.run_id, "-o", str(bundle), "--runs-dir", str(folder / "runs")])
    assert r.exit_code == 0, r.output
    return run, bundle


def _edit_bundle(src, dst, edit, edit_record=lambda record: None, keep_attestation=False):
    """Rewrite one file of a bundle (and run.json, with edit_record) and keep run.json's sha256
    consistent: a deliberate edit, made the way an author of such a run would record it, who drops
    the run's attestation (it attests the run as it was) unless keep_attestation."""
    with tarfile.open(src) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    run_id = members[0][0].name.split("/")[0]
    files = {m.name: data for m, data in members}
    name, new = edit(run_id, files)
    files[name] = new
    record = json.loads(files[f"{run_id}/run.json"])
    record["artifacts"][name.split("/", 1)[1]] = hashlib.sha256(new).hexdigest()
    edit_record(record)
    files[f"{run_id}/run.json"] = json.dumps(record).encode()
    dropped = () if keep_attestation else (f"{run_id}/attestation.intoto.json", f"{run_id}/attestation.pub")
    with tarfile.open(dst, "w:gz") as tar:
        for m, _ in members:
            if m.name in dropped:
                continue
            data = files[m.name]
            if data is not None:
                m.size = len(data)
                tar.addfile(m, __import__("io").BytesIO(data))


def test_an_edited_thread_count_differs_and_env_diff_names_it(original, tmp_path):
    run, bundle = original

    def threads_2(run_id, files):
        name = f"{run_id}/config.resolved.json"
        cfg = json.loads(files[name])
        cfg["determinism"]["threads"] = 2
        return name, json.dumps(cfg).encode()

    def recorded_as_2_threads(record):
        record["randomness"]["determinism"]["threads"] = 2
        record["randomness"]["environment"].update(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")

    edited = tmp_path / "edited.tar.gz"
    _edit_bundle(bundle, edited, threads_2, recorded_as_2_threads, keep_attestation=True)  # not the attested run
    r = runner.invoke(app, ["rerun", str(edited), "--runs-dir", str(tmp_path / "refused")])
    assert r.exit_code == 8 and "is refused: attestation: input config.resolved.json" in r.stderr, r.output + r.stderr
    _edit_bundle(bundle, edited, threads_2)  # the config alone: run.json disagrees, refused
    r = runner.invoke(app, ["rerun", str(edited), "--runs-dir", str(tmp_path / "refused")])
    assert r.exit_code == 8 and "records: determinism.threads: run.json 1, config.resolved.json 2" in r.stderr, (
        r.output + r.stderr
    )
    _edit_bundle(bundle, edited, threads_2, recorded_as_2_threads)  # consistently: replayed with 2 threads
    r = runner.invoke(app, ["rerun", str(edited), "--runs-dir", str(tmp_path / "store")])
    assert r.exit_code == 11, r.output + r.stderr
    assert f"differs (rerun of {run.run_id})" in r.stdout
    assert "first difference: step 1, loss" in r.stdout or "first difference: step" in r.stdout
    # what the original's container captured (1 thread) against the rerun's (2): run.json now claims 2 for both
    for key in ("torch.intra_op_threads", "env.OMP_NUM_THREADS"):
        line = next(ln for ln in r.stdout.splitlines() if key in ln)
        assert "│ 1 " in line and "│ 2 " in line and "yes" in line, line


def test_a_changed_dataset_file_is_refused_before_training(original, demo_snapshot, tmp_path):
    run, bundle = original
    data = tmp_path / "data"
    shutil.copytree(demo_snapshot, data)
    victim = sorted((data / "val" / "7").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-1])
    store = tmp_path / "store"
    r = runner.invoke(app, ["rerun", str(bundle), "--data", str(data), "--runs-dir", str(store)])
    assert r.exit_code == 4, r.output + r.stderr
    assert f"resized: {victim.relative_to(data).as_posix()}" in r.stderr
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == [run.run_id]  # only the import


def test_env_diff_between_an_image_and_the_same_with_one_package_changed(docker_engine, original, tmp_path):
    run, _ = original
    tag = json.loads((run.run_dir / "run.json").read_text())["image"]["tag"]
    wheels = tmp_path / "w"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels), "six==1.16.0"],
        check=True,
        capture_output=True,
    )
    wheel = next(wheels.glob("*.whl"))
    dockerfile = f"FROM {tag}\nCOPY {wheel.name} /tmp/\nUSER 0\nRUN /opt/venv/bin/python -m pip install --no-index --no-deps /tmp/{wheel.name}\n"
    ctx = tmp_path / "ctx.tar"
    with open(ctx, "wb") as f:
        write_context(
            [
                ContextEntry.from_bytes("Dockerfile", dockerfile.encode()),
                ContextEntry.from_bytes(wheel.name, wheel.read_bytes()),
            ],
            f,
        )
    with open(ctx, "rb") as f:
        docker_engine.build(f, tag="reproexec-test:one-package", labels={}, network_mode="none")
    try:
        r = runner.invoke(app, ["env", "diff", tag, "reproexec-test:one-package", "--json"])
        assert r.exit_code == 0, r.output
        diffs = {d["key"]: d for d in json.loads(r.stdout)["differences"]}
        assert set(diffs) == {"package six", "image.id"}
        assert (diffs["package six"]["a"], diffs["package six"]["b"]) == ("—", "1.16.0")
    finally:
        docker_engine.remove_image("reproexec-test:one-package")


def test_rerun_from_a_with_image_bundle_loads_the_saved_image(docker_engine, original, tmp_path):
    run, _ = original
    tag = json.loads((run.run_dir / "run.json").read_text())["image"]["tag"]
    bundle = tmp_path / "with-image.tar"
    r = runner.invoke(app, ["export", str(run.run_dir), "-o", str(bundle), "--with-image"])
    assert r.exit_code == 0, r.output
    docker_engine.remove_image(tag)
    try:
        r = runner.invoke(app, ["rerun", str(bundle), "--runs-dir", str(tmp_path / "store")])
    finally:
        bundle.unlink()  # 6 GB: do not leave it in pytest's kept temp folders
    assert r.exit_code == 0, r.output + r.stderr
    content = tag.split(":")[1]  # loaded as reproexec-bundle:<hash>, never as the recorded reproexec-env tag
    assert f"image reproexec-bundle:{content} (the recorded one, reused)" in r.stderr
    assert docker_engine.image(tag) is None
    # leave the engine as this test found it (the same image, saved and loaded: the same id and labels),
    # so later tests do not rebuild the demo image from a cold cache
    docker_engine.tag(docker_engine.image(f"reproexec-bundle:{content}").id, *tag.split(":"))
    docker_engine.remove_image(f"reproexec-bundle:{content}", force=False)
    assert "identical" in r.stdout


def test_byo_run_reruns_from_its_bundle_without_the_work_tree(docker_engine, base_image, demo_snapshot, tmp_path):
    from runfixtures import REPO

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "tests" / "scripts" / "example1.py", work / "train.py")
    cfg = write_config(work, demo_snapshot, name="example1", entrypoint=["python", "train.py"])
    run = execute_run(load_config(cfg), RunOptions(runs_dir=work / "runs"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    assert "train.py" in tarfile.open(run.run_dir / "code.tar").getnames()
    result = (run.run_dir / "result.json").read_bytes()
    bundle = tmp_path / "byo.tar.gz"
    r = runner.invoke(app, ["export", run.run_id, "-o", str(bundle), "--runs-dir", str(work / "runs")])
    assert r.exit_code == 0, r.output
    shutil.rmtree(work)  # train.py, the config and the run store are gone: only the bundle is left
    store = tmp_path / "store"

    r = runner.invoke(app, ["rerun", str(bundle), "--runs-dir", str(store), "--runtime", "local"])
    assert r.exit_code == 2 and "a bring-your-own run is rerun in Docker only" in r.stderr

    r = runner.invoke(app, ["rerun", str(bundle), "--runs-dir", str(store)])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"identical (rerun of {run.run_id})" in r.stdout
    # stdout.log (a log), result.json and the seeding record determinism.json (results)
    assert "compared 3 file(s) the entrypoint wrote: 2 result(s) decide" in r.stdout
    new = next(p for p in store.iterdir() if p.name != run.run_id and not p.name.startswith("."))
    assert (new / "result.json").read_bytes() == result
    assert (new / "code.tar").read_bytes() == (store / run.run_id / "code.tar").read_bytes()
    code = json.loads((new / "run.json").read_text())["code"]
    assert (
        code["kind"] == "code.tar"
        and code["tree_sha256"] == hashlib.sha256((new / "code.tar").read_bytes()).hexdigest()
    )
