"""Configs for run tests: the demo dataset in a temp folder, configs with absolute paths."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "examples" / "digits" / "requirements.lock"


def write_config(folder: Path, snapshot: Path, **overrides) -> Path:
    cfg = yaml.safe_load((REPO / "examples" / "digits" / "config.yaml").read_text())
    cfg["env"]["lockfile"] = str(LOCK)
    cfg["data"]["snapshot"] = str(snapshot)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def loaded(tmp_path: Path, **env):
    from reproexec.config import LoadedConfig, validate_config

    cfg = validate_config({"name": "t", "data": {"snapshot": "d"}, "env": env})
    return LoadedConfig(config=cfg, path=tmp_path / "config.yaml")
