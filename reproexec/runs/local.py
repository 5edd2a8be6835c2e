"""The local runtime: the same trainer in a subprocess of the current Python, for machines without
Docker (e.g. a GPU box) and for the tests of the trainer. Same command line, same pinned
environment, same handle interface as a container.

It is not a sandbox: the process runs as the invoking user. What it shares with the container
path is the lifecycle: it writes only to its staging folder (by convention), it is pinned to
`resources.cpuset`, it dies with reproexec (the kernel sends it SIGKILL when its parent dies, so a
killed reproexec leaves no training behind), and whatever it started in its process group is
killed when it ends.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from reproexec.engine import Exit

_PR_SET_PDEATHSIG = 1


def _cpus(cpuset: str) -> set[int]:
    out: set[int] = set()
    for part in cpuset.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def _child_setup(cpuset: str | None, parent: int) -> None:  # runs in the child, before exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    if cpuset:
        os.sched_setaffinity(0, _cpus(cpuset))


class LocalRun:
    def __init__(
        self, command: Sequence[str], env: Mapping[str, str], cwd: Path | None = None, cpuset: str | None = None
    ) -> None:
        parent = os.getpid()
        self._p = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,  # our Ctrl-C is handled by the host, which then stops this group
            preexec_fn=lambda: _child_setup(cpuset, parent),
        )
        self.id = f"pid:{self._p.pid}"

    def lines(self) -> Iterator[str]:
        assert self._p.stdout is not None
        for line in self._p.stdout:
            yield line.rstrip("\n")

    def wait(self) -> Exit:
        rc = self._p.wait()
        return Exit(code=rc if rc >= 0 else 128 - rc)  # killed by signal N → 128+N, as a shell says

    def stop(self, timeout: int = 10) -> None:
        if self._p.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self._p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._p.wait()

    def remove(self) -> None:
        """Reap the process and kill anything it left in its group (e.g. DataLoader workers)."""
        if self._p.poll() is None:
            self.stop()
        self._signal_group(signal.SIGKILL)
        if self._p.stdout:
            self._p.stdout.close()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
