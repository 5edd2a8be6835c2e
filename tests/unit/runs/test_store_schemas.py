"""Old records stay readable: real run folders of every run.json schema an earlier reproexec wrote
(tests/fixtures/runs/) load in `runs list/show/compare` and `env diff`; a newer schema is refused
with both versions named."""

import json
import shutil

import pytest
from needs import REPO
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.runs.store import READ_SCHEMAS, RUN_SCHEMA

FIXTURES = REPO / "tests" / "fixtures" / "runs"
RUNS = sorted(p.name for p in FIXTURES.iterdir() if (p / "run.json").is_file())
runner = CliRunner()


def schema_of(run_id: str) -> int:
    return json.loads((FIXTURES / run_id / "run.json").read_text())["schema"]


def test_there_is_a_fixture_of_every_schema_this_release_reads():
    assert sorted({schema_of(r) for r in RUNS}) == list(READ_SCHEMAS) and READ_SCHEMAS[-1] == RUN_SCHEMA


@pytest.mark.parametrize("run_id", RUNS)
def test_an_old_run_shows(run_id):
    r = runner.invoke(app, ["runs", "show", run_id, "--runs-dir", str(FIXTURES)])
    assert r.exit_code == 0, r.output
    record = json.loads((FIXTURES / run_id / "run.json").read_text())
    assert run_id in r.stdout and "succeeded" in r.stdout
    assert f"{record['metrics']['val_acc']:.4f}" in r.stdout


def test_old_runs_list_and_compare_side_by_side():
    r = runner.invoke(app, ["runs", "list", "--runs-dir", str(FIXTURES)])
    assert r.exit_code == 0 and all(run_id in r.stdout for run_id in RUNS), r.output
    assert "unreadable" not in r.stdout
    r = runner.invoke(app, ["runs", "compare", *RUNS, "--json", "--runs-dir", str(FIXTURES)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["runs"] == RUNS and doc["status"] == ["succeeded"] * len(RUNS)
    assert "train.max_steps" in [d["field"] for d in doc["config_differences"]]
    assert all(len(w) == 64 for w in doc["weights_sha256"])


@pytest.mark.parametrize("a, b", [(RUNS[0], RUNS[-1]), (RUNS[1], RUNS[-1])])
def test_env_diff_reads_every_schema(a, b):
    r = runner.invoke(app, ["env", "diff", a, b, "--json", "--runs-dir", str(FIXTURES)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["a"] == a and doc["b"] == b and isinstance(doc["differences"], list)


def test_a_run_from_a_newer_reproexec_is_refused_naming_both_versions(tmp_path):
    newest = max(RUNS, key=schema_of)
    store = tmp_path / "runs"
    shutil.copytree(FIXTURES / newest, store / newest)
    record = json.loads((store / newest / "run.json").read_text())
    record.update(schema=RUN_SCHEMA + 1, reproexec_version="9.0.0")
    (store / newest / "run.json").write_text(json.dumps(record))
    r = runner.invoke(app, ["runs", "show", newest, "--runs-dir", str(store)])
    assert r.exit_code == 7
    assert f"has run.json schema {RUN_SCHEMA + 1} (written by reproexec 9.0.0); this reproexec (" in r.stderr
    assert f"reads schemas 1 to {RUN_SCHEMA}" in r.stderr
