"""reproexec's own wheel, installed into every run image (the trainer and environment capture).

Built from the source checkout with hatchling, whose wheels are reproducible (fixed timestamps,
sorted RECORD), so the same source at the same version gives the same wheel sha256 on any machine —
and so the same image content hash. The version comes from git (reproexec/_version.py), so each
commit's wheel carries its own. Built wheels are cached by the version and a hash of the sources.
A run keeps the wheel it used in its run folder (recipe/), so a later reproexec rebuilds the image
from it instead of from its own source.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from reproexec._version import checkout_root, source_hash, version_of_checkout
from reproexec.env.wheels import Wheel
from reproexec.errors import BuildError
from reproexec.fsutil import cache_dir, sha256_file


def wheel_of(path: Path, sha256: str | None = None) -> Wheel:
    """A reproexec wheel file as a Wheel (name and version from its file name, PEP 427)."""
    name, version = path.name.split("-")[:2]
    return Wheel(name, version, path.name, sha256 or sha256_file(path), path)


def reproexec_wheel(cache: Path | None = None) -> Wheel:
    """The wheel of the running reproexec (built once per version and source state)."""
    override = os.environ.get("REPROEXEC_WHEEL")
    if override:
        path = Path(override)
        if not path.is_file():
            raise BuildError(f"REPROEXEC_WHEEL={override} is not a file", "point it at a reproexec wheel")
        return wheel_of(path)
    root = checkout_root()
    if root is None:
        raise BuildError(
            "reproexec is installed without its source checkout, so it cannot build its own wheel for the image",
            "set REPROEXEC_WHEEL to the reproexec wheel file you installed, or install reproexec from a checkout",
        )
    cache = cache or cache_dir()
    version = version_of_checkout(root)
    slot = cache / "self" / f"{source_hash(root)[:32]}-{version.replace('+', '_')}"
    found = sorted(slot.glob("reproexec-*.whl")) if slot.is_dir() else []
    if not found:
        slot.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=slot.parent) as tmp:
            env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")  # 1980-01-01: zip's epoch
            proc = subprocess.run(
                [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", tmp],
                cwd=root,
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode != 0:
                raise BuildError(
                    "building reproexec's own wheel failed",
                    "pip install hatchling in this environment",
                    details=(proc.stderr or proc.stdout).splitlines()[-10:],
                )
            for f in Path(tmp).glob("*.whl"):
                os.replace(f, slot / f.name)
        found = sorted(slot.glob("reproexec-*.whl"))
    return wheel_of(found[0])
