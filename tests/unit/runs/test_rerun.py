"""What a rerun replays: the recorded config (as the recorded reproexec wrote it), the recorded
pinned variables (only pinning ones), --data relative to where the command runs."""

import json
import shutil
from pathlib import Path

import pytest
from needs import REPO

from reproexec.errors import RunError
from reproexec.runs.prepare import replayed_environment
from reproexec.runs.rerun import build_differences, replay_config
from reproexec.runs.store import load_run

FIXTURES = REPO / "tests" / "fixtures" / "runs"
OLD = "2026-12-06_resnet18_digits_aed67c"  # schema 1, made by reproexec 0.1.0


@pytest.fixture
def original(tmp_path):
    shutil.copytree(FIXTURES / OLD, tmp_path / "runs" / OLD)
    return load_run(OLD, tmp_path / "runs")


def test_data_is_relative_to_the_callers_folder_not_the_run_folder(original, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded, raw = replay_config(original, data=Path("data/digits-v1"), cpuset=None)
    assert raw["data"]["snapshot"] == str(tmp_path / "data" / "digits-v1")
    assert loaded.resolve(loaded.config.data.snapshot) == tmp_path / "data" / "digits-v1"


def test_the_process_gets_the_recorded_config_with_only_paths_replaced(original):
    recorded = json.loads((original.path / "config.resolved.json").read_text())
    _, raw = replay_config(original, data=None, cpuset="1")
    changed = {k for k in recorded if recorded[k] != raw[k]}
    assert changed == {"env", "data", "resources"}
    assert raw["resources"]["cpuset"] == "1" and raw["env"]["lockfile"] == "requirements.lock"
    assert {k: v for k, v in raw["train"].items()} == recorded["train"]


def test_a_recorded_environment_is_replayed_but_only_variables_that_pin():
    pinned = {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "1337", "MKL_CBWR": "COMPATIBLE"}
    assert replayed_environment(pinned) == pinned
    with pytest.raises(RunError, match="sets 'LD_PRELOAD', which no reproexec pins"):
        replayed_environment({**pinned, "LD_PRELOAD": "/tmp/evil.so"})
    with pytest.raises(RunError, match="which no reproexec pins"):
        replayed_environment({"OMP_NUM_THREADS": "1\nEVIL=1"})


def test_a_run_made_by_another_build_is_named_with_what_runs_inside(original):
    (line,) = build_differences(original)
    assert line.startswith(f"note: run {OLD} was made by reproexec 0.1.0; this is reproexec ")
    assert "the recorded reproexec trains inside it; only the host side is this one" in line
