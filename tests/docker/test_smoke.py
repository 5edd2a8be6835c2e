"""`reproexec smoke` in the run's own image (the default): the demo config and the bring-your-own
example pass twice, identical, in the pinned environment a CI job would check."""

import json

from needs import REPO
from runfixtures import write_config
from typer.testing import CliRunner

from reproexec.cli.app import app

runner = CliRunner()


def test_the_demo_config_passes_twice_identical_in_its_image(docker_engine, base_image, demo_snapshot, tmp_path):
    cfg = write_config(tmp_path, demo_snapshot)
    r = runner.invoke(app, ["smoke", str(cfg), "--steps", "20", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output + r.stderr
    doc = json.loads((tmp_path / "s" / "smoke.json").read_text())
    assert doc["runtime"] == "docker" and doc["verdict"] == "passed" and doc["comparison"]["verdict"] == "identical"
    for run in doc["runs"]:
        record = json.loads((tmp_path / "s" / "runs" / run["run_id"] / "run.json").read_text())
        assert record["runtime"]["kind"] == "docker" and record["image"]["tag"].startswith("reproexec-env:")
        assert run["steps"] == 20


def test_the_byo_example_passes_twice_identical_unchanged(docker_engine, base_image, demo_snapshot, tmp_path):
    import yaml

    cfg = yaml.safe_load((REPO / "examples" / "byo" / "config.yaml").read_text())
    cfg["env"]["lockfile"] = str(REPO / "examples" / "digits" / "requirements.lock")
    cfg["data"]["snapshot"] = str(demo_snapshot)
    (tmp_path / "examples" / "byo").mkdir(parents=True)
    (tmp_path / "examples" / "byo" / "train.py").write_text((REPO / "examples" / "byo" / "train.py").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["smoke", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output + r.stderr
    doc = json.loads((tmp_path / "s" / "smoke.json").read_text())
    assert doc["verdict"] == "passed" and doc["comparison"]["verdict"] == "identical"
    assert doc["comparison"]["compared_files"] >= 1  # the script's checkpoint, tensor by tensor
