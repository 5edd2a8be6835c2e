"""The sweep file: every bad input is refused before anything runs, all problems at once, naming the
variant and the field; nothing is written."""

from __future__ import annotations

import pytest
import yaml
from runfixtures import write_config
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.errors import ConfigError
from reproexec.sweep.spec import config_differences, deep_merge, load_sweep

runner = CliRunner()


def _sweep(tmp_path, **fields):
    write_config(tmp_path, tmp_path / "data")
    doc = {
        "name": "abl",
        "base": "config.yaml",
        "seeds": [0, 1],
        "baseline": "plain",
        "variants": {"plain": {}, "rot": {"augment": {"rotation_degrees": 15}}},
    }
    doc.update(fields)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _refusal(tmp_path, **fields):
    path = _sweep(tmp_path, **fields)
    r = runner.invoke(
        app, ["sweep", str(path), "--runs-dir", str(tmp_path / "runs"), "--sweeps-dir", str(tmp_path / "sweeps")]
    )
    assert r.exit_code == 2, r.output
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "runs").exists()  # nothing half-written
    return r.output


def test_a_valid_sweep_gives_variant_x_seed_cells_with_their_differences(tmp_path):
    spec = load_sweep(_sweep(tmp_path))
    assert [c.key for c in spec.cells] == ["plain-s0", "plain-s1", "rot-s0", "rot-s1"]
    assert [c.config.seed for c in spec.cells] == [0, 1, 0, 1]
    assert spec.cells[2].config.augment.rotation_degrees == 15
    assert spec.cells[0].config.augment == spec.base.config.augment  # {} is the base itself
    assert spec.differences == {"plain": [], "rot": [("augment.rotation_degrees", 10.0, 15.0)]}
    assert spec.goal == "max"


def test_deep_merge_merges_mappings_and_replaces_everything_else():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": {"e": 1}}
    assert deep_merge(base, {"a": {"c": [3]}, "d": None}) == {"a": {"b": 1, "c": [3]}, "d": None}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": {"e": 1}}  # the base is not modified
    assert config_differences({"a": {"b": 1}, "seed": 1}, {"a": {"b": 2}, "seed": 2}, ignore=("seed",)) == [
        ("a.b", 1, 2)
    ]


def test_unknown_keys_in_the_sweep_file_and_in_a_variant_are_all_reported(tmp_path):
    out = _refusal(tmp_path, seedz=[1], variants={"plain": {}, "rot": {"augment": {"rotaton_degrees": 5}}})
    assert "2 problems in the sweep; nothing was run" in out
    assert "seedz: unknown key; allowed here: base, baseline, metric, name, seeds, slurm, variants" in out
    assert "variants.rot.augment.rotaton_degrees: unknown key; did you mean 'rotation_degrees'?" in out


def test_an_invalid_value_in_a_variant_names_the_variant_and_the_field(tmp_path):
    out = _refusal(tmp_path, variants={"plain": {}, "bad": {"train": {"lr": -1}, "augment": {"hflip_prob": 2}}})
    assert "variants.bad.train.lr = -1: Input should be greater than 0" in out
    assert "variants.bad.augment.hflip_prob = 2: Input should be less than or equal to 1" in out


def test_no_seeds_a_baseline_that_is_not_a_variant_and_an_unlogged_metric(tmp_path):
    out = _refusal(tmp_path, seeds=[], baseline="nope", metric="accuracy")
    assert "seeds = []: List should have at least 1 item after validation, not 0" in out
    assert "baseline = 'nope': not a variant; the variants are plain, rot" in out
    assert "metric = 'accuracy': the trainer does not log it; choose one of val_acc, val_loss, train_loss" in out


def test_a_variant_may_not_set_the_seed_and_seeds_may_not_repeat(tmp_path):
    out = _refusal(tmp_path, seeds=[3, 3], variants={"plain": {}, "s": {"seed": 7}})
    assert "seeds: [3] appear more than once" in out
    assert "variants.s.seed: set by the sweep's `seeds` list, not by a variant; remove it" in out


def test_a_missing_or_invalid_base_config_is_named(tmp_path):
    out = _refusal(tmp_path, base="missing.yaml")
    assert "base = 'missing.yaml': config file" in out and "does not exist" in out
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "no-such-sweep.yaml")


def test_slurm_section_is_validated_too(tmp_path):
    out = _refusal(tmp_path, slurm={"mem": "lots", "cpus_per_task": 0, "sbatch": {"Bad Key": 1}, "gpus": 1})
    assert "slurm.mem = 'lots'" in out and "slurm.cpus_per_task = 0" in out
    assert (
        "slurm.gpus: unknown key; allowed here: cpus_per_task, image_dir, mem, partition, poll_s, sbatch, time" in out
    )
    assert "slurm.sbatch.Bad Key" in out


def test_an_unknown_executor_and_too_many_parallel_cells_are_refused(tmp_path):
    path = _sweep(tmp_path)
    r = runner.invoke(app, ["sweep", str(path), "--executor", "kubernetes", "--sweeps-dir", str(tmp_path / "sweeps")])
    assert r.exit_code == 2 and "--executor 'kubernetes' is not known" in r.output
    r = runner.invoke(app, ["sweep", str(path), "--parallel", "999", "--sweeps-dir", str(tmp_path / "sweeps")])
    assert r.exit_code == 2 and "--parallel 999: this machine gives reproexec" in r.output
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.timeout(10)  # before the fix a FIFO hung the read
def test_a_sweep_file_and_its_base_are_read_as_a_config_is(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(ConfigError) as e:
        load_sweep(tmp_path / "fifo.yaml")
    assert (
        e.value.message
        == f"sweep file {tmp_path / 'fifo.yaml'} cannot be read: it is a device, FIFO or socket, not a regular file"
    )
    (tmp_path / "folder.yaml").mkdir()
    out = _refusal(tmp_path, base="folder.yaml")
    assert (
        f"base = 'folder.yaml': config file {tmp_path / 'folder.yaml'} cannot be read: it is a folder, not a regular file"
        in out
    )


def test_a_duplicate_key_in_a_sweep_file_is_refused(tmp_path):
    path = _sweep(tmp_path)
    path.write_text(path.read_text() + "seeds: [5]\n")
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    assert e.value.message.startswith(f"{path}: duplicate key 'seeds' at line ")


def test_sweep_numbers_are_strict_as_config_numbers_are(tmp_path):
    out = _refusal(tmp_path, seeds=[True, 1.0], slurm={"cpus_per_task": True, "poll_s": "3"})
    assert (
        "seeds.0 = True: Input should be a valid integer" in out
        and "seeds.1 = 1.0: Input should be a valid integer" in out
    )
    assert "slurm.cpus_per_task = True: Input should be a valid integer" in out
    assert "slurm.poll_s = '3': Input should be a valid number" in out
