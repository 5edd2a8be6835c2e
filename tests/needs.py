"""What a test needs, and what happens when it is missing: skip on a laptop, fail in CI (CI=true).

A plain module (not a conftest) so tests import it by one unambiguous name.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(what: str, reason: str) -> None:
    """Skip on a laptop, fail in CI."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but {reason}")
    pytest.skip(f"{what} unavailable: {reason}")
