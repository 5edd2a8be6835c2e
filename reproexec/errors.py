"""One error base for everything reproexec refuses to do, and the one map of exit codes.

Every error carries a message (what is wrong, naming the field, file or value) and a hint (how to
fix it). The CLI's root group (cli/app.py) is the only place that turns them into text and an
exit code: 2 config, 3 lockfile, 4 data, 5 engine, 6 build, 7 run, 128 + N a signal (130 Ctrl-C,
143 SIGTERM). `reproexec rerun` ends with its verdict: 0 identical, 10 within tolerance, 11 differs.
"""

from __future__ import annotations


VERDICT_EXIT_CODES = {"identical": 0, "within tolerance": 10, "differs": 11}


class ReproexecError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = list(details or [])

    def __str__(self) -> str:  # one paragraph, as the user sees it
        parts = [self.message]
        parts += [f"  - {d}" for d in self.details]
        if self.hint:
            parts.append(f"Fix: {self.hint}")
        return "\n".join(parts)


class ConfigError(ReproexecError):
    exit_code = 2


class LockError(ReproexecError):
    exit_code = 3


class DataError(ReproexecError):
    exit_code = 4


class EngineError(ReproexecError):
    """The container engine is missing, unreachable or lacks a feature (e.g. GPUs)."""

    exit_code = 5


class BuildError(ReproexecError):
    exit_code = 6


class RunError(ReproexecError):
    exit_code = 7


class Interrupted(ReproexecError):
    """Ctrl-C (SIGINT) or SIGTERM: exit 128 + the signal number, as a shell reports it."""

    def __init__(self, signum: int = 2, message: str | None = None):
        import signal

        name = signal.Signals(signum).name
        super().__init__(message or f"interrupted ({name})")
        self.signum = signum
        self.exit_code = 128 + signum
