"""The run container's watchdog: run the command, and stop it when the host goes away.

    python -m reproexec.runtime.guard -- python -m reproexec.runtime.train ...

The host keeps the container's stdin attached for as long as it follows the run. If the host
process dies, even by SIGKILL, the engine closes that stdin; the guard reads end-of-file, stops
the command (SIGTERM, then SIGKILL after a grace period) and exits, so the container stops by
itself instead of training on unwatched. SIGTERM/SIGINT (`docker stop`) are passed on to the
command. The exit code is the command's (128 + N when signal N ended it), as a shell reports it.
Standard library only, and it starts in milliseconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

GRACE_S = 10.0


def _watch_stdin(child: subprocess.Popen[bytes], grace: float) -> None:
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    if child.poll() is None:
        sys.stderr.write("reproexec guard: the host is gone (stdin closed); stopping the run\n")
        sys.stderr.flush()
        child.terminate()
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        sys.stderr.write("usage: python -m reproexec.runtime.guard -- COMMAND [ARGS...]\n")
        return 2
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    except OSError as e:
        sys.stderr.write(f"error: cannot start {command[0]!r}: {e}\n")
        return 127

    def forward(signum: int, frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    threading.Thread(target=_watch_stdin, args=(child, GRACE_S), daemon=True).start()
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
