"""`reproexec smoke` in the run's own image (the default): the demo config and the bring-your-own
example pass twice, identical, in the pinned environment a CI job would check; a script that is
not deterministic fails there with the first differing number named."""

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


def byo_smoke(tmp_path, demo_snapshot, change=lambda script: script):
    """`reproexec smoke` of examples/byo (its script, with `change` applied) in its image."""
    import yaml

    cfg = yaml.safe_load((REPO / "examples" / "byo" / "config.yaml").read_text())
    cfg["env"]["lockfile"] = str(REPO / "examples" / "digits" / "requirements.lock")
    cfg["data"]["snapshot"] = str(demo_snapshot)
    (tmp_path / "examples" / "byo").mkdir(parents=True)
    script = change((REPO / "examples" / "byo" / "train.py").read_text())
    (tmp_path / "examples" / "byo" / "train.py").write_text(script)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["smoke", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "s")])
    return r, json.loads((tmp_path / "s" / "smoke.json").read_text())


def test_the_byo_example_passes_twice_identical_unchanged(docker_engine, base_image, demo_snapshot, tmp_path):
    r, doc = byo_smoke(tmp_path, demo_snapshot)
    assert r.exit_code == 0, r.output + r.stderr
    assert doc["verdict"] == "passed" and doc["comparison"]["verdict"] == "identical"
    assert doc["comparison"]["compared_files"] >= 1  # the script's checkpoint, tensor by tensor


def test_a_script_that_reseeds_from_the_clock_is_not_deterministic(docker_engine, base_image, demo_snapshot, tmp_path):
    def reseed(script: str) -> str:  # a researcher's "random restart": torch seeded from the clock
        model = "    model = SmallNet(len(train_set.classes))\n"
        assert model in script
        return script.replace(model, "    torch.manual_seed(time.time_ns() % 2**31)\n" + model)

    r, doc = byo_smoke(tmp_path, demo_snapshot, reseed)
    assert r.exit_code == 11, r.output + r.stderr
    assert doc["verdict"] == "not deterministic" and doc["comparison"]["verdict"] == "differs"
    assert "two smoke runs differ, first at epoch 0, train_loss" in r.stderr  # the first logged number named
