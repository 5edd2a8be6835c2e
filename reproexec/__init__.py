"""reproexec: lock code, data, environment and randomness for PyTorch/torchvision training.

Inside a run, a script may call `reproexec.seed_everything()` (when its launcher skips the start-up
hook) and `reproexec.track.log(step=..., loss=...)` to record metrics reproexec compares.
"""

__version__ = "0.1.0"


def seed_everything(seed: int | None = None, mode: str | None = None) -> dict[str, int]:
    """Seed random, NumPy and torch exactly as a reproexec run's start-up hook does, now.

    `seed` defaults to the run's (REPROEXEC_SEED), `mode` to its determinism mode (strict:
    deterministic algorithms, cuDNN deterministic, no benchmark). Returns the seeds used."""
    from reproexec.runtime.seedhook import seed_everything as _seed_everything

    return _seed_everything(seed, mode)
