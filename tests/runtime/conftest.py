"""Fixtures for the trainer tests: snapshots written from scratch, and this process pinned like a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from snapshots import write_cifar
from trainkit import make_config

from reproexec.runtime.seeding import cpu_math_environment


@pytest.fixture(autouse=True, scope="session")
def pinned_like_a_run():
    """In-process runs (test_trainer) need this process pinned like a run process, for the time the
    trainer's tests run and no longer: MKL and oneDNN read their variables at their first call (after
    this); ATen read its own when torch was imported, so in-process configs use the level it runs at
    (trainkit.current_capability)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"ATEN_CPU_CAPABILITY": "avx2", **cpu_math_environment(make_config())}.items():
            mp.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def digits(demo_snapshot: Path) -> Path:
    """`reproexec data demo`'s snapshot: one digits writer (and split) for every test."""
    return demo_snapshot


@pytest.fixture(scope="session")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"))
