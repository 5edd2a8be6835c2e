"""One error base for everything reproexec refuses to do, and the one map of exit codes.

Every error carries a message (what is wrong, naming the field, file or value) and a hint (how to
fix it). The CLI's root group (cli/app.py) is the only place that turns them into text and an
exit code: 2 config, 3 lockfile, 4 data, 5 engine, 6 build, 7 run, 8 attestation (a run that is not
what it says, or not signed as asked), 9 smoke invariants, 128 + N a signal (130 Ctrl-C, 143 SIGTERM). `reproexec rerun` ends with its verdict: 0 identical, 10 within tolerance, 11 differs.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

VERDICT_EXIT_CODES = {"identical": 0, "within tolerance": 10, "differs": 11}
# `reproexec smoke`: its own exit codes for what a CI tells apart (invariants: SmokeError).
NOT_DETERMINISTIC_EXIT_CODE = VERDICT_EXIT_CODES["differs"]


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


class AttestationError(ReproexecError):
    """A run's files, records or signature are not what its attestation says (or not signed as asked)."""

    exit_code = 8


class SmokeError(ReproexecError):
    """A smoke run's invariants failed (the loss did not drop, a value is not finite, a range)."""

    exit_code = 9


class NotDeterministic(ReproexecError):
    """The two runs of a smoke test differ."""

    exit_code = NOT_DETERMINISTIC_EXIT_CODE


class Interrupted(ReproexecError):
    """Ctrl-C (SIGINT) or SIGTERM: exit 128 + the signal number, as a shell reports it."""

    def __init__(self, signum: int = 2, message: str | None = None):
        import signal

        name = signal.Signals(signum).name
        super().__init__(message or f"interrupted ({name})")
        self.signum = signum
        self.exit_code = 128 + signum


def exit_code_of(status: str) -> int:
    """The exit code of a run's (or a sweep's, or a cell's) final status: 0, 130 or RunError's."""
    return {"succeeded": 0, "interrupted": 128 + signal.SIGINT}.get(status, RunError.exit_code)


@contextlib.contextmanager
def signals_raise(
    signums: tuple[int, ...] = (signal.SIGTERM,), *, once: bool = False, ignore_after: bool = False
) -> Iterator[None]:
    """While the block runs, each of `signums` raises Interrupted(signum), as Ctrl-C raises
    KeyboardInterrupt: the code that stops containers and records the outcome runs for SIGTERM (and
    SIGHUP) alike. once: only the first one raises, later ones are ignored (a stop already under
    way). ignore_after: the signals stay ignored after the block (its result is written; a late one
    must not kill the exit), else the previous handlers come back. Only the main thread can set
    handlers; elsewhere the caller owns signals and this does nothing."""
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if once and fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous: dict[int, Any] = {}
    try:
        for s in signums:
            previous[s] = signal.signal(s, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if ignore_after else h)
