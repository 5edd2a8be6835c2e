"""reproexec's own wheel, installed into every run image (the trainer and environment capture).

Built from the source checkout with hatchling, whose wheels are reproducible (fixed timestamps,
sorted RECORD), so the same source gives the same wheel sha256 on any machine — and so the same
image content hash. The wheel is cached by a hash of the sources that go into it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from reproexec.errors import BuildError
from reproexec.fsutil import sha256_file
from reproexec.wheels import Wheel, cache_dir

# What goes into the wheel (pyproject's packages + force-include + readme).
_TOP_FILES = ("pyproject.toml", "README.md", "Dockerfile.cpu", "Dockerfile.cuda")
_TREES = ("reproexec", "templates")


def checkout_root() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "reproexec"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def source_hash(root: Path) -> str:
    h = hashlib.sha256()
    files = [root / f for f in _TOP_FILES]
    for tree in _TREES:
        files += [p for p in (root / tree).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for p in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def reproexec_wheel(cache: Path | None = None) -> Wheel:
    """The wheel of the running reproexec (built once per source state)."""
    from importlib.metadata import version

    override = os.environ.get("REPROEXEC_WHEEL")
    if override:
        path = Path(override)
        if not path.is_file():
            raise BuildError(f"REPROEXEC_WHEEL={override} is not a file", "point it at a reproexec wheel")
        return Wheel("reproexec", version("reproexec"), path.name, sha256_file(path), path)
    root = checkout_root()
    if root is None:
        raise BuildError(
            "reproexec is installed without its source checkout, so it cannot build its own wheel for the image",
            "set REPROEXEC_WHEEL to the reproexec wheel file you installed, or install reproexec from a checkout",
        )
    cache = cache or cache_dir()
    slot = cache / "self" / source_hash(root)
    found = sorted(slot.glob("reproexec-*.whl")) if slot.is_dir() else []
    if not found:
        slot.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=slot.parent) as tmp:
            env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")  # 1980-01-01: zip's epoch
            proc = subprocess.run(
                [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", tmp],
                cwd=root, capture_output=True, text=True, env=env,
            )  # fmt: skip
            if proc.returncode != 0:
                raise BuildError(
                    "building reproexec's own wheel failed",
                    "pip install hatchling in this environment",
                    details=(proc.stderr or proc.stdout).splitlines()[-10:],
                )
            for f in Path(tmp).glob("*.whl"):
                os.replace(f, slot / f.name)
        found = sorted(slot.glob("reproexec-*.whl"))
    path = found[0]
    return Wheel("reproexec", version("reproexec"), path.name, sha256_file(path), path)
