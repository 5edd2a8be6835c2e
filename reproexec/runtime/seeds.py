"""Seeds derived from the run seed: standard library only, so anything may import it cheaply
(the bring-your-own start-up hook runs in every Python process of a run)."""

from __future__ import annotations

import hashlib
from typing import Any


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run seed and a purpose path, e.g. (seed, "augment", epoch, index).

    sha256 of the parts' repr, so it is the same in every process and on every platform (unlike
    Python's `hash`, which PYTHONHASHSEED salts), and streams for different purposes never collide.
    """
    text = repr(("reproexec", int(seed), *parts)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def python_hash_seed(seed: int) -> str:
    """PYTHONHASHSEED for a run: the run seed itself (the config bounds it to 0..2**32-1, as Python does)."""
    return str(seed)
