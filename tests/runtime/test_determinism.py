"""Bit-for-bit reproducibility across fresh processes (the promise a rerun relies on)."""

from __future__ import annotations

import json
import os

import pytest
from trainkit import make_config, read_run, run_fresh


@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
    """Each variant trained once in its own interpreter; tests compare the results."""
    root = tmp_path_factory.mktemp("det")
    variants = {
        "a": (make_config(), None),
        "b": (make_config(), None),
        "workers2": (make_config(train={"num_workers": 2}), None),
        "seed2": (make_config(seed=2), None),
        "threads2": (make_config(determinism={"threads": 2}), None),
        "threads2_one_cpu": (make_config(determinism={"threads": 2}), {0}),
    }
    out = {}
    for name, (cfg, cpus) in variants.items():
        if cpus and not hasattr(os, "sched_setaffinity"):
            continue
        proc = run_fresh(cfg, digits, root / name, cpus=cpus)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = read_run(root / name) | {"dir": root / name, "stdout": proc.stdout}
    return out


def test_same_config_twice_is_bit_identical(runs):
    a, b = runs["a"], runs["b"]
    assert a["losses"] == b["losses"]  # every value, exactly
    assert a["summary"]["weights_sha256"] == b["summary"]["weights_sha256"]
    assert a["steps_bytes"] == b["steps_bytes"] and a["epochs_bytes"] == b["epochs_bytes"]
    for f in (
        "summary.json",
        "checkpoints/checkpoints.json",
        "checkpoints/last.pt",
        "confusion_matrix.png",
        "curves.png",
        "predictions.png",
        "train.log",
        "determinism.json",
    ):
        assert (a["dir"] / f).read_bytes() == (b["dir"] / f).read_bytes(), f


def test_num_workers_do_not_change_results(runs):
    assert runs["workers2"]["losses"] == runs["a"]["losses"]
    assert runs["workers2"]["summary"]["weights_sha256"] == runs["a"]["summary"]["weights_sha256"]


def test_another_seed_gives_another_run(runs):
    assert runs["seed2"]["losses"] != runs["a"]["losses"]
    assert runs["seed2"]["summary"]["weights_sha256"] != runs["a"]["summary"]["weights_sha256"]


def test_pinned_threads_match_on_a_one_cpu_process(runs):
    if "threads2_one_cpu" not in runs:
        pytest.skip("os.sched_setaffinity is not available")
    one = runs["threads2_one_cpu"]
    env = json.loads((one["dir"] / "environment.json").read_text())
    assert env["cpu"]["usable_cpus"] == [0]
    assert env["torch"]["intra_op_threads"] == 2
    assert one["losses"] == runs["threads2"]["losses"]
    assert one["summary"]["weights_sha256"] == runs["threads2"]["summary"]["weights_sha256"]


def test_fresh_process_runs_with_the_pinned_environment(runs):
    det = json.loads((runs["a"]["dir"] / "determinism.json").read_text())
    assert det["cpu_capability_actual"] == "AVX2" and det["aten_cpu_capability_env"] == "avx2"
    assert det["pythonhashseed_matches"] is True and det["pythonhashseed_actual"] == "1337"
    assert det["intra_op_threads"] == 1 and det["interop_threads"] == 1


def test_stdout_is_json_lines(runs):
    events = [json.loads(line) for line in runs["a"]["stdout"].splitlines()]
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "done"
    done = events[-1]
    assert done["weights_sha256"] == runs["a"]["summary"]["weights_sha256"]
    assert done["loss_sum_first5"] == runs["a"]["summary"]["loss_sum_first5"]


def test_bad_config_exits_with_config_error_event(digits, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"name": "x", "data": {"snapshot": "s"}, "train": {"epochs": 0}}))
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reproexec.runtime.train",
            "--config",
            str(cfg),
            "--data",
            str(digits),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    event = json.loads(proc.stdout.splitlines()[-1])
    assert event["event"] == "error" and event["error"] == "ConfigError"
    assert "train.epochs = 0" in event["details"][0]


def test_a_killed_run_never_looks_complete(digits, tmp_path):
    import signal
    import subprocess
    import sys

    cfg = make_config(train={"max_steps": None, "epochs": 5, "log_every": 1})
    cfg_path = tmp_path / "c.json"
    cfg_path.write_text(json.dumps(cfg.resolved()))
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reproexec.runtime.train",
            "--config",
            str(cfg_path),
            "--data",
            str(digits),
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if json.loads(line)["event"] == "step":
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    assert not (out / "metrics/steps.jsonl").exists() and (out / "metrics/steps.jsonl.partial").exists()
    assert not list(out.rglob("*.pt"))
