"""reproexec: lock code, data, environment and randomness for PyTorch/torchvision training.

Inside a run, a script may call `reproexec.seed_everything()` (when its launcher skips the start-up
hook) and `reproexec.track.log(step=..., loss=...)` to record metrics reproexec compares.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    # `reproexec.__version__`, computed when first asked (from git in a checkout: reproexec/_version.py),
    # so importing reproexec stays free of a git call.
    if name == "__version__":
        from reproexec._version import version

        return version()
    raise AttributeError(f"module 'reproexec' has no attribute {name!r}")


def seed_everything(seed: int | None = None, mode: str | None = None) -> dict[str, int]:
    """Seed random, NumPy and torch exactly as a reproexec run's start-up hook does, now.

    `seed` defaults to the run's (REPROEXEC_SEED), `mode` to its determinism mode (strict:
    deterministic algorithms, cuDNN deterministic, no benchmark). Returns the seeds used."""
    from reproexec.runtime.seedhook import seed_everything as _seed_everything

    return _seed_everything(seed, mode)
