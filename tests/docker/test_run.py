"""`reproexec run` end to end against the real Docker engine (markers: docker, slow)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from needs import require
from runfixtures import REPO, write_config

from reproexec.config import load_config
from reproexec.runs.execute import execute_run
from reproexec.runs.prepare import RunOptions

EXPECTED_FILES = [
    "config.yaml",
    "config.resolved.json",
    "requirements.lock",
    "Dockerfile",
    "manifest.json",
    "environment.json",
    "metrics/steps.jsonl",
    "metrics/epochs.jsonl",
    "checkpoints/best.pt",
    "checkpoints/last.pt",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "predictions.png",
    "curves.png",
    "train.log",
    "stdout.log",
    "summary.json",
    "report.html",
    "classes.json",
]


@pytest.fixture(scope="module")
def demo_runs(docker_engine, base_image, demo_snapshot, tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    loaded = load_config(write_config(folder, demo_snapshot))
    opts = RunOptions(runs_dir=folder / "runs")
    return execute_run(loaded, opts, engine=docker_engine), execute_run(loaded, opts, engine=docker_engine)


def test_demo_run_succeeds_with_a_complete_run_folder(demo_runs):
    run, _ = demo_runs
    assert run.status == "succeeded", run.reason
    record = json.loads((run.run_dir / "run.json").read_text())
    for rel in EXPECTED_FILES:
        assert (run.run_dir / rel).is_file(), rel
    # every file of the folder is listed, with the sha256 of its bytes (hashed here, independently), but
    # run.json and the attestation written after it (which attests run.json's list)
    on_disk = {p.relative_to(run.run_dir).as_posix(): p for p in run.run_dir.rglob("*") if p.is_file()}
    assert "attestation.intoto.json" in on_disk
    assert set(record["artifacts"]) == set(on_disk) - {"run.json", "attestation.intoto.json", "attestation.pub"}
    assert all(
        record["artifacts"][rel] == hashlib.sha256(on_disk[rel].read_bytes()).hexdigest() for rel in record["artifacts"]
    )
    assert record["image"]["tag"].startswith("reproexec-env:") and record["image"]["id"].startswith("sha256:")
    from reproexec.data.manifest import load_manifest

    manifest = load_manifest(run.run_dir / "manifest.json")  # the manifest it verified, kept in the run
    assert record["data"]["manifest_id"] == manifest.manifest_id and record["data"]["files"] == manifest.count == 1797
    assert record["randomness"]["environment"]["ATEN_CPU_CAPABILITY"] == "avx2"
    assert record["randomness"]["determinism"]["threads"] == 1
    assert record["code"]["kind"] == "folder" and record["code"]["tree_sha256"]
    assert run.summary["final"]["val_acc"] > 0.8  # the demo learns


def test_two_runs_are_bit_identical_in_separate_folders(demo_runs):
    a, b = demo_runs
    assert a.run_id != b.run_id and b.run_id == f"{a.run_id}-2"
    assert a.summary["weights_sha256"] == b.summary["weights_sha256"]
    for rel in ("metrics/steps.jsonl", "metrics/epochs.jsonl"):
        assert (a.run_dir / rel).read_text() == (b.run_dir / rel).read_text(), rel


def test_report_renders_metrics_and_pictures_in_headless_chromium(demo_runs):
    run, _ = demo_runs
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        require("chromium (Debian package 'chromium')", "it is not installed")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            f"--user-data-dir={run.run_dir.parent / '.chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (run.run_dir / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'id="status">succeeded<' in dom
    assert f"{run.summary['final']['val_acc']:.4f}" in dom  # as the terminal shows it
    assert 'data-images-loaded="3/3"' in dom


PROBE = r"""
import json, os, socket
out = os.environ["REPROEXEC_RUN_DIR"]
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
def attempt(fn):
    try:
        fn(); return "allowed"
    except OSError as e:
        return type(e).__name__
result = {
    "uid_gid": f"{os.getuid()}:{os.getgid()}",
    "write_dataset": attempt(lambda: open(os.path.join(os.environ["REPROEXEC_DATA_DIR"], "x"), "w")),
    "write_root_fs": attempt(lambda: open("/opt/x", "w")),
    "network": attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=3)),
    "cap_eff": status["CapEff"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "seed_env": os.environ.get("PYTHONHASHSEED"),
    "threads_env": os.environ.get("OMP_NUM_THREADS"),
}
json.dump(result, open(os.path.join(out, "probe.json"), "w"))
print("probe done")
"""


def test_container_is_sealed_and_files_belong_to_the_user(docker_engine, base_image, demo_snapshot, tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    cfg = write_config(tmp_path, demo_snapshot, entrypoint=["python", "probe.py"])
    run = execute_run(load_config(cfg), RunOptions(runs_dir=tmp_path / "runs", user="1234:1234"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    probe = json.loads((run.run_dir / "probe.json").read_text())
    assert probe["uid_gid"] == "1234:1234"
    assert probe["write_dataset"] == "OSError"  # read-only mount (EROFS)
    assert probe["write_root_fs"] == "OSError"
    assert probe["network"] == "OSError"  # no network at all
    assert probe["cap_eff"] == "0000000000000000" and probe["no_new_privs"] == "1"
    assert probe["threads_env"] == "1" and probe["seed_env"]
    owners = {(p.relative_to(run.run_dir).as_posix(), p.stat().st_uid) for p in [run.run_dir, *run.run_dir.rglob("*")]}
    assert {uid for _, uid in owners} == {1234}, owners
    assert "probe done" in (run.run_dir / "stdout.log").read_text()


def test_byo_entrypoint_example1_twice_prints_the_same_number(docker_engine, base_image, demo_snapshot, tmp_path):
    shutil.copy(REPO / "tests" / "scripts" / "example1.py", tmp_path / "train.py")
    cfg = load_config(write_config(tmp_path, demo_snapshot, name="example1", entrypoint=["python", "train.py"]))
    opts = RunOptions(runs_dir=tmp_path / "runs")
    a, b = (execute_run(cfg, opts, engine=docker_engine) for _ in range(2))
    assert a.status == b.status == "succeeded"
    numbers = [(r.run_dir / "stdout.log").read_text().split() for r in (a, b)]
    assert numbers[0] == numbers[1] and float(numbers[0][-1]) > 0
    assert (a.run_dir / "result.json").read_text() == (b.run_dir / "result.json").read_text()
    assert json.loads((a.run_dir / "run.json").read_text())["run_id"].startswith(
        a.run_id.split("_")[0] + "_custom_example1_"
    )


def _start_cli_run(tmp_path, demo_snapshot):
    cfg = write_config(tmp_path, demo_snapshot, train={"epochs": 30})
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reproexec", "run", str(cfg), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        logs = list(runs.glob("*/stdout.log"))
        if logs and '"event": "step"' in logs[0].read_text():
            return proc, logs[0].parent
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    proc.kill()
    pytest.fail("the run never started training")


def _containers_of(run_dir: Path) -> str:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=org.reproexec.run-id={run_dir.name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_ctrl_c_stops_the_container_and_marks_the_run_interrupted(docker_engine, base_image, demo_snapshot, tmp_path):
    proc, run_dir = _start_cli_run(tmp_path, demo_snapshot)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["reason"] == "stopped by SIGINT (Ctrl-C)"
    assert not (run_dir / "summary.json").exists()
    assert _containers_of(run_dir) == ""


def test_a_killed_container_marks_the_run_failed_with_the_reason(docker_engine, base_image, demo_snapshot, tmp_path):
    proc, run_dir = _start_cli_run(tmp_path, demo_snapshot)
    container = _containers_of(run_dir)
    subprocess.run(["docker", "kill", container], check=True, capture_output=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 7, out
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["reason"].startswith("exit code 137")
    assert re.search(rf"^status +failed: {re.escape(record['reason'])}$", out, re.M), out[-1500:]
    assert f"error: run {run_dir.name} failed: {record['reason']}" in out
    assert _containers_of(run_dir) == ""


def test_out_of_memory_is_a_failed_run_with_the_reason(docker_engine, base_image, demo_snapshot, tmp_path):
    (tmp_path / "hog.py").write_text("x = bytearray(1024 * 1024 * 1024)\nprint('survived')\n")
    cfg = write_config(tmp_path, demo_snapshot, entrypoint=["python", "hog.py"], resources={"memory": "256m"})
    run = execute_run(load_config(cfg), RunOptions(runs_dir=tmp_path / "runs"), engine=docker_engine)
    assert run.status == "failed"
    assert run.reason.startswith("out of memory"), run.reason
    assert json.loads((run.run_dir / "run.json").read_text())["exit"]["oom_killed"] is True


def test_gpu_without_an_nvidia_runtime_says_what_to_install(docker_engine, demo_snapshot, tmp_path):
    from typer.testing import CliRunner

    from reproexec.cli.app import app

    cfg = write_config(tmp_path, demo_snapshot, env={"flavour": "cuda"})
    r = CliRunner().invoke(app, ["run", str(cfg), "--gpu", "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 5, r.output
    assert "has no NVIDIA runtime" in r.stderr and "nvidia-container-toolkit" in r.stderr
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_pinned_weights_reach_the_container_and_a_wrong_pin_is_refused(
    docker_engine, base_image, demo_snapshot, tmp_path
):
    import hashlib

    import torch
    import torchvision

    weights = tmp_path / "resnet18-digits.pt"
    torch.manual_seed(7)
    torch.save(torchvision.models.get_model("resnet18", weights=None, num_classes=10).state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    cfg = write_config(
        tmp_path, demo_snapshot, model={"weights": {"path": weights.name, "sha256": digest}}, train={"max_steps": 2}
    )
    run = execute_run(load_config(cfg), RunOptions(runs_dir=tmp_path / "runs"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    assert f"weights: loaded pinned {weights.name} (sha256 {digest})" in (run.run_dir / "train.log").read_text()
    assert json.loads((run.run_dir / "run.json").read_text())["weights"]["sha256"] == digest

    from typer.testing import CliRunner

    from reproexec.cli.app import app

    bad = write_config(tmp_path, demo_snapshot, model={"weights": {"path": weights.name, "sha256": "0" * 64}})
    r = CliRunner().invoke(app, ["run", str(bad), "--runs-dir", str(tmp_path / "runs2")])
    assert r.exit_code == 2 and f"has sha256 {digest}, but the config pins {'0' * 64}" in r.stderr
    assert not (tmp_path / "runs2").exists()
