"""What a run's own process (or a hand-edited run folder) can throw at reproexec on the way out and
at a rerun: it ends with a clear status and reason, never `running`, never a traceback (local
runtime: no Docker needed; the scripts are plain Python, no torch)."""

import json
import shutil
import sys
import textwrap

import pytest
from needs import REPO
from runfixtures import write_config
from typer.testing import CliRunner

from reproexec.cli.app import app

runner = CliRunner()


def byo(tmp_path, snapshot, script: str):
    (tmp_path / "train.py").write_text(textwrap.dedent(script))
    return write_config(
        tmp_path, snapshot, entrypoint=[sys.executable, "train.py", "${REPROEXEC_RUN_DIR}", "${REPROEXEC_DATA_DIR}"]
    )


def only_run(runs):
    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    return run_dir, json.loads((run_dir / "run.json").read_text())


@pytest.mark.parametrize("summary", ["[1, 2, 3]", '"[" * 200000 + "]" * 200000'])
def test_a_summary_that_is_not_an_object_is_the_scripts_own_business(tmp_path, demo_snapshot, summary):
    """A script's list-shaped (or absurdly nested) summary.json crashed the finish and left the run
    `running` forever; it is a result file like any other."""
    cfg = byo(
        tmp_path,
        demo_snapshot,
        f"""
        import sys, pathlib
        out = pathlib.Path(sys.argv[1])
        out.joinpath("summary.json").write_text({summary} if {summary!r}.startswith('"') else {summary!r})
        out.joinpath("metrics", "metrics.jsonl").write_text('{{"step": 1, "loss": 2.0}}\\n{{"step": 2, "loss": 1.0}}\\nnot json\\n')
    """,
    )
    runs = tmp_path / "runs"
    r = runner.invoke(app, ["run", str(cfg), "--runtime", "local", "--runs-dir", str(runs)])
    assert r.exit_code == 0, r.output + r.stderr
    run_dir, record = only_run(runs)
    assert record["status"] == "succeeded" and record["summary"] is None
    assert record["metrics"] == {"loss": 1.0}  # the valid rows kept
    assert not (run_dir / ".reserve").exists() and list((runs / ".staging").iterdir()) == []


def test_a_failure_while_finishing_still_ends_the_run(tmp_path, demo_snapshot, monkeypatch):
    from reproexec.runs import execute as run_mod
    from reproexec.runs.prepare import RunOptions

    def broken(*args, **kwargs):
        raise RuntimeError("a reader broke")

    monkeypatch.setattr(run_mod, "finish", broken)
    cfg = byo(tmp_path, demo_snapshot, "print('trained')\n")
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="a reader broke"):  # a bug shows itself...
        run_mod.execute_run(run_mod_load(cfg), RunOptions(runtime="local", runs_dir=runs))
    run_dir, record = only_run(runs)  # ...and the run says how it ended
    assert (
        record["status"] == "failed"
        and record["reason"] == "reproexec could not finish the run: RuntimeError: a reader broke"
    )
    assert record["finished_at"] and not (run_dir / ".reserve").exists()
    assert list((runs / ".staging").iterdir()) == []


def run_mod_load(cfg):
    from reproexec.config import load_config

    return load_config(cfg)


def test_a_dataset_changed_while_the_run_read_it_fails_the_run(tmp_path, demo_snapshot):
    """Verified, then overwritten under the run: its results are not those of the verified snapshot."""
    snap = tmp_path / "snap"
    shutil.copytree(demo_snapshot, snap)
    cfg = byo(
        tmp_path,
        snap,
        """
        import sys, pathlib
        data = pathlib.Path(sys.argv[2])
        victim = sorted(data.joinpath("train", "3").iterdir())[0]
        victim.write_bytes(victim.read_bytes())  # the same bytes, written again: a new ctime
        data.joinpath("train", "3", "new.png").write_bytes(b"x")
    """,
    )
    runs = tmp_path / "runs"
    r = runner.invoke(app, ["run", str(cfg), "--runtime", "local", "--runs-dir", str(runs)])
    assert r.exit_code == 7
    _, record = only_run(runs)
    assert record["status"] == "failed" and record["reason"].startswith(
        "the dataset changed while the run read it (2 files: "
    )
    assert "train/3/new.png (added)" in record["reason"] and "(changed)" in record["reason"]


def test_a_run_store_that_cannot_be_written_is_refused_before_anything(tmp_path, demo_snapshot):
    (tmp_path / "a-file").write_text("")
    cfg = write_config(tmp_path, demo_snapshot)
    r = runner.invoke(app, ["run", str(cfg), "--runtime", "local", "--runs-dir", str(tmp_path / "a-file" / "runs")])
    assert r.exit_code == 7, r.output
    assert (
        f"the run store {tmp_path / 'a-file' / 'runs'} cannot be made: its parent {tmp_path / 'a-file'} is not a folder"
        in r.stderr
    )
    assert "Traceback" not in r.output + r.stderr


def test_pinned_weights_that_are_a_device_are_named_as_such(tmp_path, demo_snapshot):
    cfg = write_config(
        tmp_path,
        demo_snapshot,
        model={"arch": "resnet18", "num_classes": 10, "weights": {"path": "/dev/zero", "sha256": "0" * 64}},
    )
    r = runner.invoke(app, ["run", str(cfg), "--runtime", "local", "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 2
    assert "model.weights.path /dev/zero is not a regular file" in r.stderr


OLD = "2026-12-06_resnet18_digits_aed67c"


@pytest.fixture
def store(tmp_path, demo_snapshot):
    """A run folder of reproexec 0.1.0 (a fixture), with the demo's manifest (the fixture leaves it out)."""

    runs = tmp_path / "runs"
    shutil.copytree(REPO / "tests" / "fixtures" / "runs" / OLD, runs / OLD)
    shutil.copy(demo_snapshot / "manifest.json", runs / OLD / "manifest.json")
    return runs


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("val_acc=-1", "--tolerance val_acc=-1.0: a tolerance is a finite number of 0 or more"),
        ("val_acc=nan", "--tolerance val_acc=nan: a tolerance is a finite number of 0 or more"),
        ("=1", "--tolerance '=1' is not metric=number"),
        ("nosuchmetric=0.1", f"--tolerance nosuchmetric=0.1: run {OLD} logged no metric 'nosuchmetric'"),
    ],
)
def test_a_tolerance_that_would_tolerate_nothing_is_refused(store, flag, expected):
    r = runner.invoke(app, ["rerun", OLD, "--tolerance", flag, "--runtime", "local", "--runs-dir", str(store)])
    assert r.exit_code == 2, r.output
    assert expected in r.stderr


def test_cpuset_is_checked_as_the_flag_it_is(store):
    r = runner.invoke(app, ["rerun", OLD, "--cpuset", "abc", "--runtime", "local", "--runs-dir", str(store)])
    assert r.exit_code == 2
    assert "--cpuset 'abc': String should match pattern" in r.stderr and "config.resolved.json" not in r.stderr


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda rec: rec["randomness"].update(seed=7), "seed: run.json 7, config.resolved.json 1337"),
        (
            lambda rec: rec["randomness"]["determinism"].update(threads=2),
            "determinism.threads: run.json 2, config.resolved.json 1",
        ),
        (
            lambda rec: rec["data"].update(manifest_id="0" * 64),
            "data.manifest_id: run.json 0000000000000000…, manifest.json ",
        ),
    ],
)
def test_a_hand_edited_run_json_is_refused_naming_the_field(store, edit, expected):
    record = json.loads((store / OLD / "run.json").read_text())
    edit(record)
    (store / OLD / "run.json").write_text(json.dumps(record))
    r = runner.invoke(app, ["rerun", OLD, "--runtime", "local", "--runs-dir", str(store)])
    assert r.exit_code == 8, r.output  # refused by the verification a rerun starts with
    assert f"run {OLD} is refused: records: " in r.stderr and expected in r.stderr
