"""The runtime runs inside the image: no typer, docker, rich or CLI modules, and no torch before the env pin."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_imports_no_host_tooling():
    code = (
        "import sys, reproexec.runtime.train, reproexec.runs.smoke\n"
        "assert 'torch' not in sys.modules, 'torch imported before the environment is pinned'\n"
        "import reproexec.runtime.trainer, reproexec.runtime.datasets, reproexec.runtime.model, reproexec.runtime.environment\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'docker', 'rich')"
        " or m.startswith(('reproexec.cli', 'reproexec.console')))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
