"""Bring-your-own scripts, reproducible as they are (markers: docker, slow).

The script is examples/byo/train.py: argparse, a DataLoader with two workers, random augmentation,
timings printed, a checkpoint saved, and no seed anywhere."""

from __future__ import annotations

import json
import shutil

from runfixtures import REPO, write_config
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.config import load_config
from reproexec.runs.execute import execute_run
from reproexec.runs.prepare import RunOptions

runner = CliRunner()
ARGS = [
    "--data-path",
    "${REPROEXEC_DATA_DIR}",
    "--output-dir",
    "$REPROEXEC_RUN_DIR",
    "--metrics",
    "${REPROEXEC_METRICS}",
    "--epochs",
    "1",
    "--workers",
    "2",
]


def _work(tmp_path, demo_snapshot, script: str | None = None, **overrides):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    if script is None:
        shutil.copy(REPO / "examples" / "byo" / "train.py", work / "train.py")
    else:
        (work / "train.py").write_text(script)
    return work, write_config(work, demo_snapshot, name="byo", entrypoint=["python", "train.py", *ARGS], **overrides)


def test_an_unseeded_script_with_workers_reruns_identical_from_a_bundle_on_a_fresh_store(
    docker_engine, base_image, demo_snapshot, tmp_path
):
    work, cfg = _work(tmp_path, demo_snapshot)
    run = execute_run(load_config(cfg), RunOptions(runs_dir=work / "runs"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    record = json.loads((run.run_dir / "run.json").read_text())
    assert set(record["metrics"]) == {"train_loss", "val_acc"} and record["metrics"]["val_acc"] > 0.3
    seeded = json.loads((run.run_dir / "determinism.json").read_text())
    assert seeded["seed"] == 1337 and seeded["seeds"]["torch"] is not None and seeded["seeds"]["numpy"] is not None
    assert seeded["torch"]["use_deterministic_algorithms"] is True
    report = (run.run_dir / "report.html").read_text()
    assert "train.py --data-path /data --output-dir /run --metrics /run/metrics/metrics.jsonl" in report
    assert "checkpoint.pth" in report and 'id="curves"' in report and "seed 1337 applied by reproexec" in report
    assert "No summary" not in report

    bundle = tmp_path / "byo.tar.gz"
    assert (
        runner.invoke(app, ["export", run.run_id, "-o", str(bundle), "--runs-dir", str(work / "runs")]).exit_code == 0
    )
    shutil.rmtree(work)
    store = tmp_path / "store"
    r = runner.invoke(app, ["rerun", str(bundle), "--runs-dir", str(store)])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"identical (rerun of {run.run_id})" in r.stdout
    assert "logs that differ (not a difference of the results): stdout.log" in r.stdout  # it prints img/s
    new = next(p for p in store.iterdir() if p.name != run.run_id and not p.name.startswith("."))
    assert (new / "checkpoint.pth").read_bytes() == (store / run.run_id / "checkpoint.pth").read_bytes()
    assert "val_acc" in r.stdout or "final metrics" not in r.stdout


def test_the_same_script_unseeded_by_choice_differs_with_a_hint(docker_engine, base_image, demo_snapshot, tmp_path):
    work, cfg = _work(tmp_path, demo_snapshot, determinism={"seed_entrypoint": False})
    run = execute_run(load_config(cfg), RunOptions(runs_dir=work / "runs"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    assert not (run.run_dir / "determinism.json").exists()
    assert "not seeded by reproexec" in (run.run_dir / "report.html").read_text()
    r = runner.invoke(app, ["rerun", run.run_id, "--runs-dir", str(work / "runs")])
    assert r.exit_code == 11, r.output + r.stderr
    assert "differs (rerun of" in r.stdout
    assert "first difference: epoch 0, train_loss:" in r.stdout  # the script's own metrics part first
    comparison = json.loads(next((work / "runs").glob("*/comparison.json")).read_text())["comparison"]
    (ckpt,) = [f for f in comparison["files"] if f["name"] == "checkpoint.pth"]
    assert ckpt["status"] == "differs" and ckpt["detail"].startswith("tensor model.")
    assert "hint: the script may be unseeded: determinism.seed_entrypoint is off" in r.stdout


CLOCK = """import os, time, torch
torch.save({"w": torch.zeros(3), "clock": torch.tensor([float(time.time_ns() % 1000003)])},
           os.path.join(os.environ["REPROEXEC_RUN_DIR"], "model.pt"))
"""


def test_a_checkpoint_that_really_differs_names_the_tensor(docker_engine, base_image, demo_snapshot, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "clock.py").write_text(CLOCK)
    cfg = write_config(work, demo_snapshot, name="clock", entrypoint=["python", "clock.py"])
    run = execute_run(load_config(cfg), RunOptions(runs_dir=work / "runs"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    r = runner.invoke(app, ["rerun", run.run_id, "--runs-dir", str(work / "runs")])
    assert r.exit_code == 11, r.output + r.stderr
    assert "first difference: file model.pt, tensor clock: largest absolute difference" in r.stdout
    assert "hint: nothing in the environment can explain it" in r.stdout
