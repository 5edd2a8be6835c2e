"""`reproexec smoke` through the CLI runner: passes on digits, fails loudly when nothing is learned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.runs.smoke import check_smoke

CONFIG = {
    "name": "digits-smoke",
    "data": {"snapshot": "SNAPSHOT"},
    "model": {"arch": "resnet18"},
    "augment": {
        "resize": [16, 16],
        "random_crop": {"size": [16, 16], "padding": 2},
        "normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    },
    "train": {"batch_size": 32, "optimizer": "adamw", "lr": 0.001, "log_every": 5},
    "determinism": {"cpu_capability": "avx2"},
    "smoke": {"steps": 30, "subset": 100, "min_loss_drop": 0.05, "ranges": {"val_acc": [0.15, 1.0]}},  # chance is 0.1,
}


def _write(tmp_path, digits, **over):
    cfg = {**CONFIG, "data": {"snapshot": str(digits)}}
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v}
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_smoke_passes_twice_identical_on_digits(digits, tmp_path):
    res = CliRunner().invoke(
        app, ["smoke", str(_write(tmp_path, digits)), "--runtime", "local", "--out", str(tmp_path / "s")]
    )
    assert res.exit_code == 0, res.output
    assert "smoke passed twice, identical: the invariants hold" in res.output
    doc = json.loads((tmp_path / "s/smoke.json").read_text())
    assert doc["verdict"] == "passed" and doc["comparison"]["verdict"] == "identical"
    a, b = doc["runs"]
    assert a["steps"] == b["steps"] == 30 and a["loss_sum_first5"] == b["loss_sum_first5"] is not None
    assert all((Path(r["run_dir"]) / "summary.json").exists() for r in doc["runs"])


def test_smoke_fails_when_the_model_cannot_learn(digits, tmp_path):
    path = _write(tmp_path, digits, train={"lr": 1e-9, "optimizer": "sgd"}, smoke={"steps": 12, "min_loss_drop": 0.5})
    res = CliRunner().invoke(app, ["smoke", str(path), "--runtime", "local", "--once", "--out", str(tmp_path / "s")])
    assert res.exit_code == 9, res.output
    assert "smoke invariants failed for digits-smoke" in res.output
    assert "loss did not drop enough: mean of first 5 steps" in res.output
    assert "< smoke.min_loss_drop 50.00%" in res.output


def test_invariant_rules():
    from reproexec.config import validate_config

    cfg = validate_config(
        {
            "name": "x",
            "data": {"snapshot": "s"},
            "smoke": {"min_loss_drop": 0.1, "ranges": {"val_acc": [0.5, 1.0], "nope": [0, 1]}},
        }
    )
    final = {"train_loss": 1.0, "val_loss": float("nan"), "val_acc": 0.4, "loss_sum_first5": 5.0}
    losses = [2.0] * 5 + [1.9] * 5
    measured, problems = check_smoke(final, losses, cfg)
    assert measured["loss_drop"] == pytest.approx(0.05)
    assert problems == [
        "loss did not drop enough: mean of first 5 steps 2.000000, last 5 steps 1.900000, drop 5.00% < "
        "smoke.min_loss_drop 10.00%",
        "final val_loss is nan (not finite)",
        "smoke.ranges.nope: no such metric (available: loss_sum_first5, train_loss, val_acc, val_loss)",
        "val_acc = 0.4 is outside smoke.ranges [0.5, 1.0]",
    ]
    good = cfg.model_copy(update={"smoke": cfg.smoke.model_copy(update={"ranges": {"val_acc": (0.5, 1.0)}})})
    _, ok = check_smoke({"train_loss": 1.0, "val_loss": 1.0, "val_acc": 0.9}, [2.0] * 5 + [1.0] * 5, good)
    assert ok == []
