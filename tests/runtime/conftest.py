"""Fixtures for the trainer tests: snapshots written from scratch, and this process pinned like a run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from datasets import write_cifar  # noqa: E402
from trainkit import make_config  # noqa: E402

from reproexec.runtime.seeding import cpu_math_environment  # noqa: E402

# In-process runs (test_trainer) need this process pinned like a run process: ATen is read when torch
# is imported, MKL and oneDNN at their first call, so the pins go in before any test module computes.
os.environ.update(ATEN_CPU_CAPABILITY="avx2", **cpu_math_environment(make_config()))


@pytest.fixture(scope="session")
def digits(demo_snapshot: Path) -> Path:
    """`reproexec data demo`'s snapshot: one digits writer (and split) for every test."""
    return demo_snapshot


@pytest.fixture(scope="session")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"))
