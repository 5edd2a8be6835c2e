"""The local runtime: the same trainer in a subprocess of the current Python, for machines without
Docker (e.g. a GPU box) and for the tests of the trainer. Same command line, same pinned
environment, same handle interface as a container."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from reproexec.engine import Exit


class LocalRun:
    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
        self._p = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,  # our Ctrl-C is handled by the host, which then stops this group
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
        os.killpg(self._p.pid, signal.SIGTERM)
        try:
            self._p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self._p.pid, signal.SIGKILL)
            self._p.wait()

    def remove(self) -> None:
        if self._p.stdout:
            self._p.stdout.close()
