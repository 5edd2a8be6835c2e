"""Shared fixtures. Tests are split by what they need (markers: unit, docker, slow, gpu).

On a developer's machine a test that needs Docker skips when no engine answers; in CI (CI=true)
it fails instead, so a missing engine can never turn the suite green.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from needs import require

# The markers a test gets from the first folder under tests/ (what it needs), set here once.
FOLDER_MARKS = {
    "unit": ("unit",),
    "docker": ("docker", "slow"),
    "runtime": ("runtime",),
    "integration": ("slow",),
    "emulated": ("docker", "slow", "emulated"),
}


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        folder = Path(item.path).resolve().relative_to(tests).parts[0]
        for mark in FOLDER_MARKS.get(folder, ()):
            item.add_marker(mark)
    # last: they wait for the arm64 image that scripts/test.sh has made in the background meanwhile
    items.sort(key=lambda item: item.get_closest_marker("emulated") is not None)


@pytest.fixture(autouse=True, scope="session")
def cpu_math_pinned_like_a_run():
    """This process pinned like a run's process, for the session, and restored after it: the trainer
    tests run the trainer in-process, and MKL and oneDNN read their variables once, at their first
    call, whichever test makes it (a checkpoint compared, a tensor built); ATen read its own when torch
    was imported, so in-process configs use the level it runs at (trainkit.current_capability).
    Runs in containers and subprocesses get their pins from reproexec, whatever this process has."""
    from reproexec.config import validate_config
    from reproexec.runtime.seeding import cpu_math_environment

    pins = cpu_math_environment(validate_config({"name": "pins", "data": {"snapshot": "."}}))
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"ATEN_CPU_CAPABILITY": "avx2", **pins}.items():
            mp.setenv(name, value)
        yield


@pytest.fixture(autouse=True, scope="session")
def _pinned_terminal():
    # Exact-text assertions must not depend on the terminal the suite runs in.
    os.environ.update(NO_COLOR="1", COLUMNS="200", TERM="dumb")
    yield


@pytest.fixture(scope="session")
def docker_engine():
    from reproexec.engine import connect
    from reproexec.errors import EngineError

    try:
        return connect()
    except EngineError as e:
        require("a Docker engine", str(e))


@pytest.fixture(scope="session")
def base_image(docker_engine):
    """The offline base image (made by .ci/run; made here if missing, which takes ~1 min)."""
    from reproexec.env.base import bootstrap_base
    from reproexec.labels import DEFAULT_BASE

    return bootstrap_base(docker_engine, tag=DEFAULT_BASE)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An empty reproexec cache for this test ("another machine"), removed afterwards: a rebuild fills
    it with ~3 GB of wheels, and pytest keeps the last three sessions' temp folders."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPROEXEC_CACHE", str(cache))
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_snapshot(tmp_path_factory):
    """scikit-learn's digits written as the demo snapshot (1.5 s), shared by the run tests."""
    from reproexec.data.demo import write_digits_demo

    return write_digits_demo(tmp_path_factory.mktemp("data") / "digits-v1").root


@pytest.fixture(scope="module")
def machine_b(docker_engine):
    """A second, empty Docker engine on this host: "another machine" (tests/machineb.py); stopped
    after the module that uses it, so it does not idle through the rest of the suite."""
    from machineb import start_second_engine

    try:
        engine = start_second_engine()
    except RuntimeError as e:
        require("a second Docker engine", str(e))
    yield engine
    engine.stop()
