"""`reproexec smoke` in the run's own image (the default): the demo config and the bring-your-own
example pass twice, identical, in the pinned environment a CI job would check; a script that is
not deterministic fails there with the first differing number named: time in the loss, an unseeded
NumPy generator, the clock in a result file, a torch seed from the clock; one that cannot learn
(lr 0) fails its invariants."""

import json

import pytest
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


LOSS = "            loss = criterion(model(images), target)\n"
SAVE = '               os.path.join(args.output_dir, "checkpoint.pth"))\n'


@pytest.mark.parametrize(
    "old, new, first",
    [
        (LOSS, LOSS.rstrip() + " + (time.time() % 1) * 1e-3\n", "epoch 0, train_loss"),
        (
            LOSS,
            LOSS.rstrip() + " + float(__import__('numpy').random.default_rng().normal()) * 1e-3\n",
            "epoch 0, train_loss",
        ),
        (
            SAVE,
            SAVE
            + '    json.dump({"finished": time.time_ns()}, open(os.path.join(args.output_dir, "result.json"), "w"))\n',
            "file result.json",
        ),
    ],
    ids=["time in the loss", "an unseeded numpy generator", "the clock in a result file"],
)
def test_what_is_not_deterministic_is_named_in_the_image(
    docker_engine, base_image, demo_snapshot, tmp_path, old, new, first
):
    def change(script: str) -> str:
        assert old in script
        return script.replace(old, new)

    r, doc = byo_smoke(tmp_path, demo_snapshot, change)
    assert r.exit_code == 11, r.output + r.stderr
    assert doc["verdict"] == "not deterministic" and doc["comparison"]["verdict"] == "differs"
    assert f"two smoke runs differ, first at {first}" in r.stderr
    assert "time-dependent values" in r.stderr  # rerun's hint: the pinned environment explains nothing


def test_a_script_that_cannot_learn_fails_its_invariants_in_the_image(
    docker_engine, base_image, demo_snapshot, tmp_path
):
    lr = '    p.add_argument("--lr", type=float, default=0.05)\n'

    def frozen(script: str) -> str:  # lr 0: the weights never move, the loss does not drop
        assert lr in script
        return script.replace(lr, lr.replace("0.05", "0.0"))

    r, doc = byo_smoke(tmp_path, demo_snapshot, frozen)
    assert r.exit_code == 9, r.output + r.stderr
    assert doc["verdict"] == "invariants"
    assert "smoke invariants failed" in r.stderr and "loss did not drop enough" in r.stderr
