"""Fixtures for the trainer tests: snapshots written from scratch (the process is pinned like a run by
tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from snapshots import write_cifar


@pytest.fixture(scope="session")
def digits(demo_snapshot: Path) -> Path:
    """`reproexec data demo`'s snapshot: one digits writer (and split) for every test."""
    return demo_snapshot


@pytest.fixture(scope="session")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"))
