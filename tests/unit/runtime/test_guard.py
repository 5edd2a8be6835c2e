"""The in-container guard: the run stops by itself when the host's end of stdin closes."""

import signal
import subprocess
import sys
import time

SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(300)\n"


def _guard(*command):
    return subprocess.Popen(
        [sys.executable, "-m", "reproexec.runtime.guard", "--", *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_command_is_stopped_when_stdin_closes():
    p = _guard(sys.executable, "-c", SLEEPER)
    assert p.stdout.readline() == "ready\n"
    p.stdin.close()  # what the engine does when the host process dies
    assert p.wait(timeout=30) == 128 + signal.SIGTERM
    assert "the host is gone (stdin closed); stopping the run" in p.stderr.read()


def test_sigterm_is_passed_on_and_the_exit_code_is_the_commands():
    p = _guard(sys.executable, "-c", SLEEPER)
    assert p.stdout.readline() == "ready\n"
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 143 and time.monotonic() - t0 < 25
    ok = _guard(sys.executable, "-c", "import sys; sys.exit(3)")
    assert ok.wait(timeout=30) == 3
    missing = _guard("no-such-command-xyz")
    assert missing.wait(timeout=30) == 127
