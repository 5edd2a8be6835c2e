import json
import os

import pytest
import yaml
from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.config import MAX_CONFIG_BYTES, MAX_YAML_DEPTH, config_schema, load_config, validate_config
from reproexec.errors import ConfigError

DEMO = "examples/digits/config.yaml"
runner = CliRunner()


def test_demo_config_resolves_with_every_default_explicit():
    cfg = load_config(DEMO).config
    resolved = cfg.resolved()
    assert resolved["determinism"] == {
        "mode": "strict",
        "threads": 1,
        "cpu_capability": "avx2",
        "cublas_workspace_config": ":4096:8",
    }
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


# --- hostile input (issue 20): a config is read bounded, parsed strictly, validated before any use.

MINIMAL = {"name": "x", "data": {"snapshot": "d"}}


def _details(**sections) -> list[str]:
    with pytest.raises(ConfigError) as e:
        validate_config({**MINIMAL, **sections}, "c.yaml")
    return e.value.details


@pytest.mark.timeout(10)  # before the fix a FIFO hung the read
@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: os.mkfifo(p), "a device, FIFO or socket"),
        (lambda p: p.symlink_to("/dev/null"), "a device, FIFO or socket"),  # st_size 0, as /dev/zero's
        (lambda p: p.mkdir(), "a folder"),
    ],
    ids=["fifo", "device", "folder"],
)
def test_a_config_that_is_not_a_regular_file_is_refused_unread(tmp_path, make, kind):
    path = tmp_path / "config.yaml"
    make(path)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.message == f"config file {path} cannot be read: it is {kind}, not a regular file"
    assert e.value.hint == "pass a readable UTF-8 YAML file"


def test_a_config_over_the_limit_is_refused_whatever_it_holds(tmp_path):
    path = tmp_path / "config.yaml"
    with open(path, "wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.message == f"config file {path} is larger than 1,048,576 bytes"


@pytest.mark.timeout(10)
def test_a_config_that_is_not_a_regular_file_exits_2_without_a_traceback(tmp_path):
    os.mkfifo(tmp_path / "config.yaml")
    r = runner.invoke(app, ["config", "show", str(tmp_path / "config.yaml")])
    assert r.exit_code == 2
    assert "cannot be read: it is a device, FIFO or socket, not a regular file" in r.stderr
    assert "Traceback" not in r.output


def test_a_config_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"name: x\n\xff\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.message == f"config file {path} is not UTF-8 text: invalid start byte at byte 8"


@pytest.mark.parametrize("depth", [100_000, MAX_YAML_DEPTH])
def test_yaml_nested_too_deeply_is_a_config_error(tmp_path, depth):
    path = tmp_path / "config.yaml"
    path.write_text("name: x\ndata: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.message == f"{path}: YAML nested too deeply (more than {MAX_YAML_DEPTH} levels at line 2)"


def test_a_duplicate_key_is_refused_naming_it_and_both_lines(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("name: x\ndata: {snapshot: d}\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.message == f"{path}: duplicate key 'lr' at line 6 (first at line 4)"
    assert e.value.hint == "keep one of the two: YAML would silently use the last"
    path.write_text("name: x\ndata: {snapshot: d}\nname: y\n")
    with pytest.raises(ConfigError, match="duplicate key 'name' at line 3 \\(first at line 1\\)"):
        load_config(path)


def test_the_same_key_in_different_mappings_is_fine(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("name: x\ndata: {snapshot: d}\naugment: {resize: [32, 32], random_crop: {size: [32, 32]}}\n")
    assert load_config(path).config.augment.random_crop.size == (32, 32)


@pytest.mark.parametrize(
    "ref",
    [
        "x;touch${IFS}pwned",
        "reproexec-base:bookworm $(id)",
        "UBUNTU",
        "Foo/bar",
        "--tag",
        "a/b:",
        "a//b",
        "ubuntu:-x",
        "python@sha256:abc",
        "python@md5:" + "0" * 32,
        "x" * 300,
    ],
)
def test_base_image_must_be_a_docker_reference(ref):
    (detail,) = _details(env={"base_image": ref})
    assert detail.startswith("env.base_image = ")
    assert detail.endswith(
        "not a Docker image reference [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST], NAME in lowercase letters, "
        "digits, '.', '_', '-' and '/' (e.g. 'reproexec-base:bookworm')"
    ) or detail.endswith("the name is longer than 255 characters, Docker's limit")


@pytest.mark.parametrize(
    "ref",
    [
        "reproexec-base:bookworm",
        "ubuntu",
        "library/python:3.12-slim",
        "python:3.12-slim@sha256:" + "a" * 64,
        "localhost:5000/team/base_image:v1.2",
        "Registry.Example.com/a__b/c---d:Tag_1",
        "[::1]:5000/x@sha256:" + "f" * 64,
    ],
)
def test_docker_references_are_accepted(ref):
    assert validate_config({**MINIMAL, "env": {"base_image": ref}}).env.base_image == ref


def test_values_that_failed_only_later_are_refused_together():
    assert _details(
        resources={"cpus": True},
        augment={"resize": [32, 32], "random_crop": {"size": [40, 24]}, "normalize": {"std": [0.5, 0, 0.5]}},
        train={"lr": True},
    ) == [
        "augment.random_crop = {'size': [40, 24]}: size [40, 24] is larger than augment.resize [32, 32]; "
        "make the crop smaller or the resize larger",
        "augment.normalize.std = [0.5, 0, 0.5]: each std must be greater than 0 (normalize divides by it)",
        "train.lr = True: Input should be a valid number",
        "resources.cpus = True: Input should be a valid number",
    ]
    assert _details(resources={"cpus": 0.0001}) == [
        "resources.cpus = 0.0001: at least 0.01, the smallest CPU quota Docker takes, e.g. 0.5"
    ]
    assert _details(augment={"hflip_prob": "0.5"}) == ["augment.hflip_prob = '0.5': Input should be a valid number"]


def test_a_crop_may_use_the_padding_and_integers_are_numbers():
    cfg = validate_config(
        {
            **MINIMAL,
            "resources": {"cpus": 2},
            "augment": {"resize": [32, 32], "random_crop": {"size": [36, 32], "padding": 2}},
        }
    )
    assert cfg.resources.cpus == 2.0 and cfg.augment.random_crop.size == (36, 32)
    assert _details(augment={"resize": [32, 32], "random_crop": {"size": [37, 32], "padding": 2}}) == [
        "augment.random_crop = {'size': [37, 32], 'padding': 2}: size [37, 32] is larger than augment.resize [32, 32] "
        "plus padding 2 on each side; make the crop smaller or the resize larger"
    ]
    # Without resize the images keep their own sizes, which the config cannot know.
    assert validate_config({**MINIMAL, "augment": {"resize": None, "random_crop": {"size": [512, 512]}}})


def test_a_merge_key_is_refused_with_the_anchors(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("name: x\ndata: {snapshot: d}\ntrain:\n  <<: {lr: 0.5}\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.message == f"{path}: YAML merge keys (<<) are not allowed (line 4)"
