import json
import subprocess
import sys

from typer.testing import CliRunner

from reproexec import __version__
from reproexec.cli.app import app

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


# A bundle's run.json sets the terminal's title, clears the screen and turns it red: all shown, none obeyed.
HOSTILE = "\x1b]0;pwned\x07 \x1b[2J \x1b[31mred\x9b"


def _run_folder(runs, run_id="r1", **fields):
    import json

    (runs / run_id).mkdir(parents=True)
    record = {
        "schema": 1,
        "run_id": run_id,
        "status": "failed",
        "started_at": "2026-11-25T10:00:00+00:00",
        "reproexec_version": "0.1.0",
        **fields,
    }
    (runs / run_id / "run.json").write_text(json.dumps(record))
    return runs / run_id


def test_recorded_control_characters_are_shown_not_sent_to_the_terminal(tmp_path):
    _run_folder(
        tmp_path, reason=HOSTILE, started_at=HOSTILE, metrics={"val_acc": 0.5, "note\x1b[2J": "line one\nline\ttwo\r"}
    )
    r = runner.invoke(app, ["runs", "show", "r1", "--runs-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "failed (\\x1b]0;pwned\\x07 \\x1b[2J \\x1b[31mred\\x9b)" in r.stdout
    # aligned by the width it prints at; a multi-line value keeps its newline (rich expands the tab)
    assert "\n" + "note\\x1b[2J".ljust(20) + "  line one\nline    two\\x0d\n" in r.stdout
    r = runner.invoke(app, ["runs", "list", "--runs-dir", str(tmp_path)])  # a table's cells
    assert r.exit_code == 0 and "0.5000" in r.stdout, r.output
    assert "\\x1b]0;pwned\\x07 \\x1b[2J \\x1b[31mred\\x9b" in r.stdout
    assert not any(ch in r.output for ch in "\x1b\x07\x9b\r")


def test_an_error_naming_a_recorded_value_shows_its_control_characters(tmp_path):
    _run_folder(tmp_path, schema=99, reproexec_version=HOSTILE)
    r = runner.invoke(app, ["runs", "show", "r1", "--runs-dir", str(tmp_path)])
    assert r.exit_code == 7
    assert "(written by reproexec \\x1b]0;pwned\\x07 \\x1b[2J \\x1b[31mred\\x9b)" in r.stderr
    assert not any(ch in r.stderr for ch in "\x1b\x07\x9b")


def test_a_scripts_hostile_events_and_output_lines_cannot_break_the_progress_display(capsys):
    from reproexec import console

    with console.run_progress() as on_event:
        on_event({"event": "step", "step": "50", "loss": "x", "total_steps": True})
        on_event({"event": "step", "step": 50, "loss": {"a": 1}, "total_steps": 100})
        on_event({"event": "step", "step": 10**400, "loss": 10**400, "total_steps": 10**400})
        on_event({"event": "output", "line": "10%|#  |\r50%|#### |\r"})
        on_event({"event": "output", "line": "\x1b[31merror\x1b[0m"})
    err = capsys.readouterr().err
    assert "step 50/100 loss -" in err and "50%|#### |\n" in err and "\\x1b[31merror\\x1b[0m" in err
    assert "\x1b" not in err and "\r" not in err


def test_the_ci_examples_run_the_smoke_test_with_flags_it_has():
    """examples/ci/: the jobs a user copies call `reproexec smoke` with options that exist."""
    import yaml
    from needs import REPO

    help_text = runner.invoke(app, ["smoke", "--help"]).output
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        doc = yaml.safe_load((REPO / "examples" / "ci" / name).read_text())
        text = json.dumps(doc)
        assert "reproexec smoke config.yaml --out smoke" in text and "smoke/smoke.json" in text
        assert "--out" in help_text
