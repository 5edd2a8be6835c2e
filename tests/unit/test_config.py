import json

import pytest
import yaml
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.config import config_schema, load_config, validate_config
from reproexec.errors import ConfigError

pytestmark = pytest.mark.unit
DEMO = "examples/digits/config.yaml"
runner = CliRunner()


def test_demo_config_resolves_with_every_default_explicit():
    cfg = load_config(DEMO).config
    resolved = cfg.resolved()
    assert resolved["determinism"] == {
        "mode": "strict", "threads": 1, "cpu_capability": "avx2", "cublas_workspace_config": ":4096:8",
    }  # fmt: skip
    assert resolved["train"]["scheduler"]["name"] == "cosine"
    assert resolved["resources"]["shm_size"] == "1g"
    # Round trip: the resolved form is itself a valid config that resolves to the same thing.
    assert validate_config(resolved).resolved() == resolved


def test_all_errors_reported_at_once_with_field_value_and_fix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {snapshot: d, formt: 1}\ntrain: {epochs: 0, lr: -1}\nenv: {flavour: gpu}\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert e.value.details == [
        "env.flavour = 'gpu': Input should be 'cpu' or 'cuda'",
        "data.formt: unknown key; did you mean 'format'? allowed here: format, manifest, snapshot, subset, "
        "train_dir, val_dir, val_fraction",
        "train.epochs = 0: Input should be greater than or equal to 1",
        "train.lr = -1: Input should be greater than 0",
    ]
    assert e.value.message == f"{bad}: 4 invalid fields"
    assert "reproexec config schema" in e.value.hint


def test_missing_required_and_nested_list_paths():
    with pytest.raises(ConfigError) as e:
        validate_config({"env": {"apt_packages": ["curl"]}}, "c.yaml")
    assert "name: required field is missing" in e.value.details
    assert "data: required field is missing" in e.value.details
    assert any(d.startswith("env.apt_packages = ['curl']: not pinned as name=version: curl") for d in e.value.details)


def test_cross_field_rule_names_the_section():
    with pytest.raises(ConfigError) as e:
        validate_config({"name": "x", "data": {"snapshot": "d", "val_dir": None}})
    assert e.value.details == [
        "data = {'snapshot': 'd', 'val_dir': None}: imagefolder needs either val_dir or val_fraction (a seeded split)"
    ]


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line 3, column 1"):
        load_config(p)


def test_paths_resolve_relative_to_config_file():
    loaded = load_config(DEMO)
    assert loaded.resolve(loaded.config.env.lockfile) == (loaded.base_dir / "requirements.lock").resolve()


def test_cli_show_prints_resolved_yaml_and_bad_config_exits_2(tmp_path):
    r = runner.invoke(app, ["config", "show", DEMO])
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.stdout)
    assert shown == load_config(DEMO).config.resolved()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {snapshot: d}\nseed: -1\n")
    r = runner.invoke(app, ["config", "show", str(bad)])
    assert r.exit_code == 2
    assert "seed = -1: Input should be greater than or equal to 0" in r.stderr
    r = runner.invoke(app, ["config", "show", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_schema_is_json_schema_with_all_sections():
    r = runner.invoke(app, ["config", "schema"])
    schema = json.loads(r.stdout)
    assert schema == config_schema()
    for section in ("env", "data", "model", "augment", "train", "seed", "determinism", "output"):
        assert section in schema["properties"]
    assert schema["additionalProperties"] is False
