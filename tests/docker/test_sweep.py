"""Sweeps end to end: the real Docker engine and a real Slurm cluster (scripts/slurm.sh starts one on
this host). One smoke-sized 2 variants × 2 seeds sweep goes through Slurm and through the local
executor (two cells at a time on their own cpusets); the results must be equal, a resumed sweep
reruns only what is missing, and a cancelled sweep leaves no job and no container behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from needs import REPO, require
from runfixtures import write_config
from typer.testing import CliRunner

from reproexec.cli.app import app

runner = CliRunner()
SMOKE = {"epochs": 1, "max_steps": 4, "batch_size": 16, "log_every": 1}


def _slurm_up() -> None:
    if shutil.which("scontrol") is None:
        require("a Slurm cluster", "`scontrol` is not installed (bash scripts/slurm.sh sets one up)")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if "is UP" not in ping.stdout:
        require("a Slurm cluster", f"the controller is not up ({ping.stdout.strip() or ping.stderr.strip()})")


@pytest.fixture(scope="module")
def slurm_cluster():
    _slurm_up()


def _sweep_file(folder: Path, snapshot: Path, *, max_steps: int = 4, seeds=(0, 1), name="abl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_config(folder, snapshot, name=name, train={**SMOKE, "max_steps": max_steps}, output={"sample_predictions": 0})
    doc = {
        "name": name,
        "base": "config.yaml",
        "seeds": list(seeds),
        "baseline": "plain",
        "metric": "val_acc",
        "variants": {"plain": {}, "rot": {"augment": {"rotation_degrees": 25}}},
        "slurm": {"cpus_per_task": 1, "time": 15, "mem": "4G", "poll_s": 1},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _invoke(*args: str):
    return runner.invoke(app, ["sweep", *args], catch_exceptions=False)


def _record(folder: Path) -> dict:
    [path] = folder.glob("*/sweep.json")
    return json.loads(path.read_text())


def _weights(cell: dict) -> tuple[str, float]:
    summary = json.loads((Path(cell["run_dir"]) / "summary.json").read_text())
    return summary["weights_sha256"], summary["final"]["val_acc"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, demo_snapshot, base_image):
    root = tmp_path_factory.mktemp("sweep")
    return root, _sweep_file(root / "cfg", demo_snapshot)


@pytest.fixture(scope="module")
def slurm_sweep(workspace, slurm_cluster):
    root, sweep = workspace
    r = _invoke(
        str(sweep),
        "--executor",
        "slurm",
        "--runs-dir",
        str(root / "runs-slurm"),
        "--sweeps-dir",
        str(root / "sw-slurm"),
    )
    return r, root / "sw-slurm"


@pytest.fixture(scope="module")
def local_sweep(workspace, docker_engine):
    root, sweep = workspace
    r = _invoke(
        str(sweep), "--parallel", "2", "--runs-dir", str(root / "runs-local"), "--sweeps-dir", str(root / "sw-local")
    )
    return r, root / "sw-local"


@pytest.mark.slurm
def test_a_sweep_through_slurm_runs_every_cell_as_a_job_of_one_array(slurm_sweep):
    r, sweeps = slurm_sweep
    assert r.exit_code == 0, r.output
    rec = _record(sweeps)
    assert rec["status"] == "succeeded" and rec["executor"]["kind"] == "slurm"
    [array] = rec["executor"]["array_job_ids"]
    assert sorted(c["slurm"]["job_id"] for c in rec["cells"]) == [f"{array}_{i}" for i in range(4)]
    for c in rec["cells"]:
        assert c["status"] == "succeeded", c
        assert c["slurm"]["state"] == "COMPLETED" and c["slurm"]["source"].startswith("sacct"), c["slurm"]
        assert c["slurm"]["raw_job_id"] and c["slurm"]["exit_code"] == "0:0"
        run = json.loads((Path(c["run_dir"]) / "run.json").read_text())
        assert run["status"] == "succeeded" and run["image"]["tag"] == rec["image_tag"]
        assert run["data"]["manifest_id"] == rec["manifest_id"] and run["randomness"]["seed"] == c["seed"]
    folder = next(sweeps.iterdir())
    for name in ("report.html", "summary.csv", "summary.md", "sweep.json", "cells/rot-s1.yaml"):
        assert (folder / name).is_file(), name
    assert "| rot | 2 |" in r.stdout  # the Markdown table for the terminal
    status = runner.invoke(app, ["sweep", "status", str(folder)])
    assert status.exit_code == 0 and f"{array}_3 COMPLETED" in status.stdout


@pytest.mark.slurm
def test_the_same_sweep_run_locally_in_parallel_gives_the_same_results(slurm_sweep, local_sweep):
    r, sweeps = local_sweep
    assert r.exit_code == 0, r.output
    local, slurm = _record(sweeps), _record(slurm_sweep[1])
    assert [c["cell_id"] for c in local["cells"]] == [c["cell_id"] for c in slurm["cells"]]
    for a, b in zip(local["cells"], slurm["cells"], strict=True):
        assert _weights(a) == _weights(b), a["key"]  # bit for bit, wherever and however it ran
    assert sorted(c["cpuset"] for c in local["cells"]) == ["0", "0", "1", "1"]  # each concurrent cell its own cpu
    resolved = json.loads((Path(local["cells"][0]["run_dir"]) / "config.resolved.json").read_text())
    assert resolved["resources"]["cpuset"] == local["cells"][0]["cpuset"]


def test_a_cells_run_keeps_the_recipe_that_rebuilds_its_image(local_sweep, docker_engine):
    from reproexec.env.recipe import plan_from_recipe

    r, sweeps = local_sweep
    cell = _record(sweeps)["cells"][0]
    run_dir = Path(cell["run_dir"])
    image = json.loads((run_dir / "run.json").read_text())["image"]
    assert (run_dir / "recipe" / "Dockerfile").is_file()  # the cell's run is a whole recipe, as any run's
    plan = plan_from_recipe(image, run_dir, docker_engine, source=cell["key"])  # what rerun rebuilds from
    assert plan.tag == image["tag"] and plan.inputs == image["hash_inputs"]


def test_a_resumed_sweep_reruns_only_what_is_missing(workspace, local_sweep):
    root, sweep = workspace
    before = _record(local_sweep[1])
    redo = {"rot-s1", "plain-s0"}
    expected = {c["key"]: _weights(c) for c in before["cells"] if c["key"] in redo}
    gone = next(c for c in before["cells"] if c["key"] == "rot-s1")
    shutil.rmtree(gone["run_dir"])  # that cell's result is lost ...
    failed = next(c for c in before["cells"] if c["key"] == "plain-s0")
    run_json = Path(failed["run_dir"]) / "run.json"  # ... and that one failed
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "status": "failed"}))
    r = _invoke(
        str(sweep), "--parallel", "2", "--runs-dir", str(root / "runs-local"), "--sweeps-dir", str(root / "sw-local")
    )
    assert r.exit_code == 0, r.output
    assert "4 cells, 2 already succeeded, 2 to run" in r.output
    after = _record(local_sweep[1])
    assert after["attempt"] == 2 and after["status"] == "succeeded"
    for c in before["cells"]:
        now = next(x for x in after["cells"] if x["key"] == c["key"])
        if c["key"] in redo:  # run again: a new folder (the lost one's id may come back: ids are config hashes)
            assert not now["reused"] and (Path(now["run_dir"]) / "run.json").is_file()
            assert now["run_id"] != c["run_id"] or c["key"] == "rot-s1"
            assert _weights(now) == expected[c["key"]]
        else:
            assert now["run_id"] == c["run_id"] and now["reused"]


def _start_sweep(sweep: Path, root: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reproexec",
            "sweep",
            str(sweep),
            "--runs-dir",
            str(root / "runs"),
            "--sweeps-dir",
            str(root / "sweeps"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )


def _containers_of(runs: Path) -> list[str]:
    ids = []
    for run in runs.glob("*"):
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=org.reproexec.run-id={run.name}"],
            capture_output=True,
            text=True,
        )
        ids += out.stdout.split()
    return ids


def _interrupt_when_training(proc: subprocess.Popen, runs: Path, n: int, meanwhile=lambda: None) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        runs_started = [
            p for p in runs.glob("*") if (p / "stdout.log").is_file() and "step" in (p / "stdout.log").read_text()
        ]
        if len(runs_started) >= n:
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the cells did not start training within 240 s")
    meanwhile()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out
    return out


def _assert_interrupted(root: Path, n: int) -> dict:
    rec = _record(root / "sweeps")
    assert rec["status"] == "interrupted"
    stopped = [c for c in rec["cells"] if c["status"] == "interrupted"]
    assert len(stopped) >= n, rec["cells"]
    for c in stopped:
        if c.get("run_dir"):
            assert json.loads((Path(c["run_dir"]) / "run.json").read_text())["status"] == "interrupted"
    assert _containers_of(root / "runs") == []  # no container left behind
    return rec


@pytest.mark.slurm
def test_cancelling_a_slurm_sweep_leaves_no_job_and_no_container(tmp_path, demo_snapshot, base_image, slurm_cluster):
    sweep = _sweep_file(tmp_path / "cfg", demo_snapshot, max_steps=2000, seeds=(0,), name="cancel")
    proc = _start_sweep(sweep, tmp_path, "--executor", "slurm")

    def status_says_running():  # `sweep status` asks Slurm while the sweep runs
        r = runner.invoke(app, ["sweep", "status", str(next((tmp_path / "sweeps").iterdir()))])
        assert r.exit_code == 0 and r.stdout.count(" RUNNING") == 2, r.stdout

    out = _interrupt_when_training(proc, tmp_path / "runs", 2, status_says_running)
    assert "interrupted: scancel" in out
    rec = _assert_interrupted(tmp_path, 2)
    [array] = rec["executor"]["array_job_ids"]
    queue = subprocess.run(["squeue", "-h", "-j", array, "-o", "%i %T"], capture_output=True, text=True).stdout
    assert queue.strip() == "" or all(" CANCELLED" in line or " COMPLETED" in line for line in queue.splitlines()), (
        queue
    )
    assert {c["slurm"]["state"] for c in rec["cells"]} <= {"CANCELLED", "COMPLETED"}


def test_cancelling_a_local_sweep_stops_the_running_cell_and_leaves_the_rest_pending(
    tmp_path, demo_snapshot, base_image, docker_engine
):
    sweep = _sweep_file(tmp_path / "cfg", demo_snapshot, max_steps=2000, seeds=(0,), name="cancel")
    proc = _start_sweep(sweep, tmp_path)  # in sequence: one cell runs, the other waits
    out = _interrupt_when_training(proc, tmp_path / "runs", 1)
    assert "interrupted: stopping 1 running cell(s)" in out
    rec = _assert_interrupted(tmp_path, 1)
    assert [c["status"] for c in rec["cells"]] == ["interrupted", "pending"]


def test_slurm_that_cannot_be_reached_is_refused_before_anything_runs(tmp_path, demo_snapshot):
    sweep = _sweep_file(tmp_path / "cfg", demo_snapshot)
    empty = tmp_path / "bin"
    empty.mkdir()
    args = [
        str(sweep),
        "--executor",
        "slurm",
        "--sweeps-dir",
        str(tmp_path / "sweeps"),
        "--runs-dir",
        str(tmp_path / "runs"),
    ]
    env = {"PATH": str(empty)}
    r = runner.invoke(app, ["sweep", *args], env=env)
    assert r.exit_code == 5 and "--executor slurm: `sbatch` is not on PATH" in r.output
    if shutil.which("scontrol") is None:
        require("Slurm's commands", "they are not installed (bash scripts/slurm.sh)")
    conf = tmp_path / "slurm.conf"  # a cluster whose controller is nowhere: `scontrol ping` says DOWN
    conf.write_text(
        "ClusterName=gone\nSlurmctldHost=localhost\nSlurmctldPort=1\nAuthType=auth/munge\n"
        "NodeName=localhost CPUs=1\nPartitionName=p Nodes=ALL Default=YES\n"
    )
    r = runner.invoke(app, ["sweep", *args], env={"SLURM_CONF": str(conf)})
    assert r.exit_code == 5 and "--executor slurm: the Slurm controller is not up" in r.output, r.output
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "runs").exists()


def test_the_image_reaches_a_node_without_it_through_the_shared_folder(tmp_path, docker_engine, base_image):
    """`slurm.image_dir`: docker save once (sha256 recorded), docker load on a node whose engine lacks
    the tag, and the loaded image must carry the sweep's content hash."""
    import io
    import types
    import uuid

    from reproexec.env.context import ContextEntry, write_context
    from reproexec.labels import LABEL_HASH
    from reproexec.sweep.cell import ensure_image
    from reproexec.sweep.core import _save_images

    content_hash = uuid.uuid4().hex
    tag = f"reproexec-sweeptest:{content_hash[:12]}"  # this test's own image, removed at the end
    ctx = io.BytesIO()
    write_context([ContextEntry.from_bytes("Dockerfile", b"FROM reproexec-base:bookworm\n")], ctx)
    ctx.seek(0)
    docker_engine.build(ctx, tag=tag, labels={LABEL_HASH: content_hash}, network_mode="none")
    try:
        plan = types.SimpleNamespace(builds={tag: types.SimpleNamespace(content_hash=content_hash)})
        record = {"images": {tag: {"content_hash": content_hash, "saved": None}}}
        _save_images(plan, docker_engine, tmp_path / "shared", record, None, lambda s: None)
        saved = record["images"][tag]["saved"]
        assert saved["path"] == str(tmp_path / "shared" / f"{content_hash}.tar") and len(saved["sha256"]) == 64
        again = {"images": {tag: {"content_hash": content_hash, "saved": None}}}
        _save_images(
            plan, docker_engine, tmp_path / "shared", again, record, lambda s: (_ for _ in ()).throw(AssertionError(s))
        )
        assert again["images"][tag]["saved"] == saved  # an earlier attempt's tar, still intact, is not saved again

        docker_engine.remove_image(tag)  # the node's engine lacks it ...
        assert docker_engine.image(tag) is None
        ensure_image(docker_engine, record, tag)  # ... so the job loads it, and checks it
        assert docker_engine.image(tag).labels[LABEL_HASH] == content_hash
    finally:
        docker_engine.remove_image(tag)


def test_dry_run_prints_cells_differences_and_the_image_and_runs_nothing(workspace, tmp_path):
    root, sweep = workspace
    r = _invoke(str(sweep), "--dry-run", "--runs-dir", str(tmp_path / "runs"), "--sweeps-dir", str(tmp_path / "sweeps"))
    assert r.exit_code == 0, r.output
    assert "rot: differences from the base" in r.stdout and "augment.rotation_degrees │ 10.0 │ 25.0" in r.stdout
    assert "plain: the base config, unchanged" in r.stdout and "4 cells" in r.stdout
    assert "reproexec-env:" in r.stdout and "rot-s1" in r.stdout
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "runs").exists()


def test_a_failing_cell_is_recorded_with_its_reason_and_the_others_go_on(workspace, local_sweep, tmp_path):
    root, _ = workspace
    doc = yaml.safe_load((root / "cfg" / "sweep.yaml").read_text())
    doc.update(
        base=str(root / "cfg" / "config.yaml"),
        seeds=[0, 1],
        variants={"plain": {}, "broken": {"resources": {"memory": "128m"}}},
    )  # valid config; torch alone needs more: OOM
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = _invoke(
        str(path), "--parallel", "2", "--runs-dir", str(root / "runs-local"), "--sweeps-dir", str(tmp_path / "sweeps")
    )
    assert r.exit_code == 7, r.output  # not every cell succeeded
    rec = _record(tmp_path / "sweeps")
    assert rec["status"] == "failed"
    by_key = {c["key"]: c for c in rec["cells"]}
    assert by_key["plain-s0"]["status"] == by_key["plain-s1"]["status"] == "succeeded"  # earlier runs, reused
    for key in ("broken-s0", "broken-s1"):  # both ran: the first failure did not stop the sweep
        assert by_key[key]["status"] == "failed" and by_key[key]["reason"].startswith("out of memory"), by_key[key]
        assert json.loads((Path(by_key[key]["run_dir"]) / "run.json").read_text())["status"] == "failed"
    assert "| broken | 0 |" in r.stdout
