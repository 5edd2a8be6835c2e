"""The comparison report from run folders (made here, as a container would leave them), in headless
Chromium; `runs compare`; hostile run folders; the image hand-over to nodes without the engine."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from needs import require
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.sweep.report import build_report, compare_table, render_csv, render_html, render_markdown

runner = CliRunner()
VALUES = {"plain": [0.90, 0.91, 0.92], "aug": [0.93, 0.95, 0.94]}


def _run(runs, run_id, variant, seed, acc, *, extra=None):
    d = runs / run_id
    (d / "metrics").mkdir(parents=True)
    cfg = {"name": "x", "seed": seed, "augment": {"rotation_degrees": 15.0 if variant == "aug" else 0.0}}
    (d / "config.resolved.json").write_text(json.dumps(cfg))
    final = {"val_acc": acc, "val_loss": 1 - acc, "train_loss": 0.5}
    (d / "run.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "run_id": run_id,
                "status": "succeeded",
                "metrics": final,
                "started_at": "2026-11-25T10:00:00+00:00",
                "reproexec_version": "0.1.0",
                **(extra or {}),
            }
        )
    )
    (d / "summary.json").write_text(json.dumps({"final": final, "weights_sha256": f"{seed:064x}"}))
    steps = [{"step": s, "epoch": 1, "loss": 2.0 / s + seed * 0.01, "lr": 0.1} for s in range(1, 11)]
    (d / "metrics" / "steps.jsonl").write_text("\n".join(json.dumps(r) for r in steps) + "\n")
    epochs = [{"epoch": e, "val_acc": acc - 0.1 / e} for e in (1, 2)]
    (d / "metrics" / "epochs.jsonl").write_text("\n".join(json.dumps(r) for r in epochs) + "\n")
    return d


@pytest.fixture
def record(tmp_path):
    runs = tmp_path / "runs"
    cells = []
    for variant, accs in VALUES.items():
        for seed, acc in enumerate(accs):
            d = _run(runs, f"r-{variant}-{seed}", variant, seed, acc)
            cells.append(
                {
                    "key": f"{variant}-s{seed}",
                    "variant": variant,
                    "seed": seed,
                    "status": "succeeded",
                    "run_id": d.name,
                    "run_dir": str(d),
                    "slurm": {"job_id": f"7_{len(cells)}", "state": "COMPLETED"},
                }
            )
    cells.append(
        {
            "key": "aug-s9",
            "variant": "aug",
            "seed": 9,
            "status": "failed",
            "reason": "exit code 1: <b>boom</b>",
            "run_id": None,
            "run_dir": None,
        }
    )
    return {
        "sweep_id": "2026-11-25_abl_abc123",
        "name": "abl",
        "status": "failed",
        "metric": "val_acc",
        "goal": "max",
        "baseline": "plain",
        "seeds": [0, 1, 2, 9],
        "variants": ["plain", "aug"],
        "cells": cells,
        "differences": {"plain": [], "aug": [["augment.rotation_degrees", 0.0, 15.0]]},
        "image_tag": "reproexec-env:abc",
        "manifest_id": "f4f5",
        "executor": {"kind": "slurm"},
    }


def test_report_data_table_and_csv(record):
    report = build_report(record)
    aug = report["stats"]["variants"]["aug"]
    assert aug["n"] == 3 and aug["mean"] == pytest.approx(0.94) and aug["paired"]["mean_diff"] == pytest.approx(0.03)
    assert aug["verdict"] == "better"  # diffs .03/.04/.02: t = 5.196, df 2, p = 0.0351; exact p = 2/8 ≤ max(0.05, 2/8)
    md = render_markdown(report)
    assert (
        "| aug | 3 | 0.9400 ± 0.0100 | [0.9152, 0.9648] | +0.0300 [0.0052, 0.0548] | 0.0351 | 0.2500 | better |" in md
    )
    assert "| plain | 3 | 0.9100 ± 0.0100 |" in md and "Seed-noise floor (plain's std across 3 seeds): 0.0100" in md
    csv_lines = render_csv(report).splitlines()
    assert csv_lines[0].startswith("metric,variant,n,mean,std,ci95_low,ci95_high,diff_vs_baseline,")
    assert csv_lines[2].startswith("val_acc,aug,3,0.94") and csv_lines[2].endswith(",better")
    strip = report["plots"]["strip"]
    assert len(strip["dots"]) == 6 and len(strip["lines"]) == 3  # one line per seed joins its pair
    assert {s["n"] for s in report["plots"]["loss"]["series"]} == {3}


def test_report_renders_in_headless_chromium(record, tmp_path):
    html = render_html(build_report(record))
    page = tmp_path / "report.html"
    page.write_text(html)
    assert "<b>boom</b>" not in html and "&lt;b&gt;boom&lt;/b&gt;" in html  # a run's text is escaped
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
            f"--user-data-dir={tmp_path / '.chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'id="verdict-aug">better<' in dom and 'id="verdict-plain">baseline<' in dom
    # 6 seed dots, 3 seed lines; bands and mean lines: 2 variants × (loss per step, val_acc per epoch)
    assert 'data-rendered="6/3/4/4"' in dom
    assert "augment.rotation_degrees" in dom and "7_0 (COMPLETED)" in dom


def test_runs_compare_lists_differing_fields_and_final_metrics(record, tmp_path):
    runs = tmp_path / "runs"
    r = runner.invoke(app, ["runs", "compare", "r-plain-0", "r-aug-1", "--runs-dir", str(runs), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["runs"] == ["r-plain-0", "r-aug-1"]
    assert data["config_differences"] == [
        {"field": "augment.rotation_degrees", "values": [0.0, 15.0]},
        {"field": "seed", "values": [0, 1]},
    ]
    assert {"metric": "val_acc", "values": [0.9, 0.95]} in data["metrics"]
    r = runner.invoke(app, ["runs", "compare", "r-plain-0", "r-aug-1", "r-aug-2", "--runs-dir", str(runs)])
    assert r.exit_code == 0 and "3 runs: 2 config fields differ" in r.stdout
    r = runner.invoke(app, ["runs", "compare", "r-plain-0", "--runs-dir", str(runs)])
    assert r.exit_code == 2 and "runs compare needs at least two runs, got 1" in r.output
    r = runner.invoke(app, ["runs", "compare", "r-plain-0", "nope", "--runs-dir", str(runs)])
    assert r.exit_code == 7 and "no run 'nope'" in r.output


def test_hostile_run_folders_give_no_numbers_they_cannot_back(tmp_path):
    d = _run(tmp_path, "evil", "plain", 0, 0.9)
    (d / "run.json").write_text(
        json.dumps({"run_id": "evil", "status": "succeeded", "metrics": {"val_acc": "NaN", "val_loss": True}})
    )
    (d / "summary.json").write_text(json.dumps({"weights_sha256": "../../etc/passwd"}))
    (d / "metrics" / "steps.jsonl").write_text('[1]\n{"step": 1, "loss": NaN}\nnot json\n{"step": 2, "loss": 0.5}\n')
    other = _run(tmp_path, "ok", "aug", 1, 0.8)
    t = compare_table([d, other])
    assert t["metrics"][0]["values"] == [None, 0.8] and t["metrics"][1]["values"] == [None, pytest.approx(0.2)]
    assert t["weights_sha256"][0] is None
    from reproexec.sweep.report import curves

    assert curves(d)["loss"] == [(2.0, 0.5)]


def test_a_node_without_the_image_loads_the_saved_one_and_checks_its_content_hash(tmp_path):
    from fakes import FakeEngine

    from reproexec.errors import EngineError
    from reproexec.fsutil import sha256_file
    from reproexec.sweep.cell import ensure_image

    engine = FakeEngine()
    tar = tmp_path / "img.tar"
    tar.write_bytes(b"image bytes")
    sweep = {
        "images": {"reproexec-env:h": {"content_hash": "h", "saved": {"path": str(tar), "sha256": sha256_file(tar)}}}
    }
    loaded = []

    def load(path):
        loaded.append(Path(path))
        return [engine.add_image("reproexec-env:h", labels={"org.reproexec.content-hash": "h"}).id]

    engine.load = load
    ensure_image(engine, sweep, "reproexec-env:h")  # missing on this node: loaded from the shared folder
    assert loaded == [tar]
    ensure_image(engine, sweep, "reproexec-env:h")  # present now, with the sweep's content hash: not loaded again
    assert loaded == [tar]

    engine2 = FakeEngine()
    with pytest.raises(EngineError, match="is not on this node's Docker engine"):
        ensure_image(engine2, {"images": {"reproexec-env:h": {"content_hash": "h", "saved": None}}}, "reproexec-env:h")
    tar.write_bytes(b"tampered")
    with pytest.raises(EngineError, match="not the recorded"):
        ensure_image(engine2, sweep, "reproexec-env:h")
    engine2.add_image("reproexec-env:h", labels={"org.reproexec.content-hash": "other"})
    with pytest.raises(EngineError, match="has content hash other, not the sweep's h"):
        ensure_image(engine2, sweep, "reproexec-env:h")


def test_cpu_slots_split_the_cpus_between_concurrent_cells():
    from reproexec.errors import ConfigError
    from reproexec.sweep.local import cpu_slots

    assert cpu_slots(1, [0, 1]) == [None]
    assert cpu_slots(2, [0, 1]) == ["0", "1"]
    assert cpu_slots(2, [0, 1, 2, 3, 5]) == ["0,1", "2,3"]
    with pytest.raises(ConfigError, match="--parallel 3: this machine gives reproexec 2 CPU"):
        cpu_slots(3, [0, 1])


def test_the_step_and_epoch_axes_tick_at_whole_numbers(record):
    plots = build_report(record)["plots"]
    assert [label for _, label in plots["loss"]["xticks"]] == ["2", "4", "6", "8", "10"]  # steps 1..10
    assert [label for _, label in plots["metric"]["xticks"]] == ["1", "2"]  # epochs 1..2
    from reproexec.sweep.report import _count_ticks

    assert _count_ticks(1, 20) == [5, 10, 15, 20] and _count_ticks(1, 1_000_000)[-1] == 1_000_000


def test_files_that_are_not_objects_links_or_deep_nestings_are_missing(tmp_path):
    from reproexec.sweep.report import curves, run_facts

    d = _run(tmp_path, "odd", "plain", 0, 0.9)
    (d / "summary.json").write_text('["' + "f" * 64 + '"]')
    (d / "config.resolved.json").write_text("[" * 200_000 + "]" * 200_000)
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text('{"step": 1, "loss": 0.5}\n')
    (d / "metrics" / "steps.jsonl").unlink()
    (d / "metrics" / "steps.jsonl").symlink_to(elsewhere)
    (d / "metrics" / "epochs.jsonl").write_text(
        '{"epoch": 1, "val_acc": 0.5}\n{"epoch": 2, "val_acc": 1' + "0" * 400 + "}\n"
    )
    facts = run_facts(d)
    assert facts["weights_sha256"] is None and facts["config"] == {} and facts["metrics"]["val_acc"] == 0.9
    got = curves(d)
    assert got["loss"] == [] and got["val_acc"] == [(1.0, 0.5)]  # a number too large for a float is none
