"""Fixtures of the Environment box's unit tests."""

import hashlib
import json

import pytest
from fakes import FakeEngine

from reproexec.env.wheels import TargetPlatform

PACKAGES = ["torch", "torchvision", "numpy", "pillow", "matplotlib", "pydantic", "pyyaml"]
TARGET = TargetPlatform("3.11", "cp311", "x86_64", "2.36")


@pytest.fixture
def project(tmp_path, isolated_cache, monkeypatch):
    """A config whose lockfile's wheels are already in the (isolated) wheel cache."""
    lines, index = [], []
    for name in PACKAGES:
        f = tmp_path / "w" / f"{name}-1.0-py3-none-any.whl"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(f"{name} wheel".encode())
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        stored = isolated_cache / "wheels" / digest[:2] / digest / f.name
        stored.parent.mkdir(parents=True)
        stored.write_bytes(f.read_bytes())
        lines.append(f"{name}==1.0 --hash=sha256:{digest}")
        index.append({"name": name, "version": "1.0", "filename": f.name, "sha256": digest, "path": str(stored)})
    lock = tmp_path / "requirements.lock"
    lock.write_text("\n".join(lines) + "\n")
    lock_sha = hashlib.sha256(lock.read_bytes()).hexdigest()
    key = hashlib.sha256((lock_sha + TARGET.key).encode()).hexdigest()
    (isolated_cache / "resolved").mkdir()
    (isolated_cache / "resolved" / f"{key}.json").write_text(json.dumps(index))
    me = tmp_path / "reproexec-0.1.0-py3-none-any.whl"
    me.write_bytes(b"reproexec")
    monkeypatch.setenv("REPROEXEC_WHEEL", str(me))
    engine = FakeEngine()
    engine.add_image("reproexec-base:bookworm")
    engine.freeze = "".join(f"{n}==1.0\n" for n in PACKAGES) + "pip==23.0.1\n"
    return tmp_path, engine
