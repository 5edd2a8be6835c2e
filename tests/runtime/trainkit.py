"""Helpers for the trainer tests: small configs, fresh-process runs, their outputs read back.

A plain module (not the conftest) so test modules import it by one unambiguous name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reproexec.config import Config, validate_config

REPO = Path(__file__).resolve().parents[2]


def current_capability() -> str:
    """The config value matching this (already started) process, for in-process runs."""
    import torch

    return {"DEFAULT": "default", "AVX2": "avx2", "AVX512": "avx512"}.get(
        torch.backends.cpu.get_cpu_capability().upper(), "default"
    )


def deep_update(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# Small but complete: augmentation with every random op, two epochs with a reshuffle, eval each epoch.
TINY = {
    "name": "tiny",
    "seed": 1337,
    "data": {"snapshot": "unused", "format": "imagefolder", "subset": 224},
    "model": {"arch": "resnet18", "num_classes": 10},
    "augment": {
        "resize": [16, 16],
        "random_crop": {"size": [16, 16], "padding": 2},
        "hflip_prob": 0.5,
        "rotation_degrees": 10,
        "color_jitter": {"brightness": 0.2, "contrast": 0.2},
        "normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    },
    "train": {
        "epochs": 2,
        "batch_size": 32,
        "lr": 0.05,
        "max_steps": 14,
        "log_every": 4,
        "scheduler": {"name": "cosine", "warmup_epochs": 1},
    },
    "determinism": {"mode": "strict", "threads": 1, "cpu_capability": "avx2"},
    "output": {"sample_predictions": 8},
}


def make_config(**over: Any) -> Config:
    return validate_config(deep_update(TINY, over))


def run_fresh(
    config: Config,
    data: Path,
    out: Path,
    *,
    cpus: set[int] | None = None,
    extra: list[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`python -m reproexec.runtime.train` in a fresh interpreter (optionally pinned to `cpus`)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = out.parent / f"{out.name}.config.json"
    cfg.write_text(json.dumps(config.resolved()))
    preexec: Callable[[], None] | None = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reproexec.runtime.train",
            "--config",
            str(cfg),
            "--data",
            str(data),
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def read_run(out: Path) -> dict[str, Any]:
    steps = [json.loads(line) for line in (out / "metrics" / "steps.jsonl").read_text().splitlines()]
    return {
        "summary": json.loads((out / "summary.json").read_text()),
        "losses": [s["loss"] for s in steps],
        "steps_bytes": (out / "metrics" / "steps.jsonl").read_bytes(),
        "epochs_bytes": (out / "metrics" / "epochs.jsonl").read_bytes(),
    }


def require_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        return
    if os.environ.get("REPROEXEC_REQUIRE_GPU") == "1":
        pytest.fail("REPROEXEC_REQUIRE_GPU=1 but CUDA is not available")
    pytest.skip("CUDA not available (set REPROEXEC_REQUIRE_GPU=1 to make this a failure)")
