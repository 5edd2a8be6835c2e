import subprocess
import sys

import pytest
from typer.testing import CliRunner

from reproexec import __version__
from reproexec.cli.app import app

pytestmark = pytest.mark.unit
runner = CliRunner()


def _commands(group, prefix=()):
    import typer.main

    cmd = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, sub in sorted(cmd.commands.items()):
        yield (*prefix, name)
        if hasattr(sub, "commands"):
            yield from _commands(sub, (*prefix, name))


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"reproexec {__version__}"


def test_every_command_has_help():
    commands = list(_commands(app))
    assert ("base", "bootstrap") in commands and ("build",) in commands and ("lock",) in commands
    for path in commands:
        r = runner.invoke(app, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        assert "Usage:" in r.stdout


def test_help_imports_neither_torch_nor_docker():
    code = (
        "import sys\n"
        "from reproexec.cli import main\n"
        "sys.argv = ['reproexec', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'docker', 'torchvision', 'matplotlib', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
