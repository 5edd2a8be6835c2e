"""`reproexec data verify` has two ways in: Typer, and a start-up path without it for the plain
spellings (reproexec/cli/verify.py). Both must read the same arguments and print the same bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reproexec.cli import verify as verify_cmd
from reproexec.cli.app import app
from reproexec.errors import DataError
from datatrees import make_tree

pytestmark = pytest.mark.unit

ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}


def typer_args(monkeypatch, argv: list[str]) -> verify_cmd.VerifyArgs:
    seen: list[verify_cmd.VerifyArgs] = []
    monkeypatch.setattr(verify_cmd, "verify", lambda *a: seen.append(verify_cmd.VerifyArgs(*a)))
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 0, r.output
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize(
    "rest",
    [
        ["ds"],
        ["ds", "--quick"],
        ["--quick", "ds"],
        ["ds", "--manifest", "m.json"],
        ["--manifest", "other/m.json", "ds", "--quick"],
        ["ds", "--manifest=m.json"],
        ["--manifest=/abs/m.json", "--quick", "./ds"],
        ["dätä set/ü"],
        ["/abs/ds/"],
    ],
)
def test_both_parsers_read_the_same_arguments(monkeypatch, rest: list[str]) -> None:
    argv = ["data", "verify", *rest]
    fast = verify_cmd.parse(argv)
    assert fast is not None, "this spelling should take the fast way in"
    assert fast == typer_args(monkeypatch, argv)


@pytest.mark.parametrize(
    "rest",
    [
        [],
        ["--help"],
        ["-h"],
        ["ds", "--help"],
        ["ds", "other"],
        ["ds", "--quick", "--quick"],
        ["ds", "--manifest"],
        ["ds", "--manifest", "a", "--manifest", "b"],
        ["ds", "--manifest="],
        ["ds", "--manifest", "--quick"],
        ["ds", "--man", "m.json"],
        ["ds", "-q"],
        ["--", "ds"],
        ["-"],
        [""],
        ["ds", "--no-such-option"],
    ],
)
def test_anything_else_is_left_to_typer(rest: list[str]) -> None:
    assert verify_cmd.parse(["data", "verify", *rest]) is None


@pytest.mark.parametrize(
    ("raised", "code"),
    [(KeyboardInterrupt(), 130), (DataError("bad", "fix it"), 4)],
)
def test_both_ways_in_end_an_interrupt_and_an_error_alike(monkeypatch, capsys, raised, code) -> None:
    def boom(*args):
        raise raised

    monkeypatch.setattr(verify_cmd, "verify", boom)
    via_typer = CliRunner().invoke(app, ["data", "verify", "ds"])
    assert via_typer.exit_code == code
    assert verify_cmd.fast_main(["data", "verify", "ds"]) == code
    assert capsys.readouterr().err == via_typer.stderr


def test_other_commands_are_left_to_typer() -> None:
    assert verify_cmd.parse(["data", "snapshot", "ds"]) is None
    assert verify_cmd.parse(["--version"]) is None
    assert verify_cmd.parse(["verify", "ds"]) is None
    assert verify_cmd.parse([]) is None


def run_both(*args: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    fast = subprocess.run([sys.executable, "-m", "reproexec", *args], capture_output=True, text=True, env=ENV)
    via_typer = subprocess.run(
        [sys.executable, "-c", "from reproexec.cli.app import app; app()", *args], capture_output=True, text=True, env=ENV
    )
    return fast, via_typer


def test_both_ways_in_print_the_same_and_exit_the_same(tmp_path: Path) -> None:
    ds = make_tree(tmp_path / "ds", {"a/1.png": b"one", "b/2.png": b"two", "b/3.png": b"three"})
    subprocess.run([sys.executable, "-m", "reproexec", "data", "snapshot", str(ds)], check=True, capture_output=True, env=ENV)
    (ds / "manifest.json").rename(tmp_path / "m.json")
    cases = [
        ("data", "verify", str(ds), f"--manifest={tmp_path / 'm.json'}"),
        ("data", "verify", "--quick", str(ds), "--manifest", str(tmp_path / "m.json")),
        ("data", "verify", str(ds)),  # no manifest.json in the folder: exit 4
        ("data", "verify", str(tmp_path / "nowhere")),  # no folder: exit 4
    ]
    outcomes = []
    for args in cases:
        fast, via_typer = run_both(*args)
        assert (fast.returncode, fast.stdout, fast.stderr) == (via_typer.returncode, via_typer.stdout, via_typer.stderr)
        outcomes.append(fast.returncode)
    (ds / "b/2.png").write_bytes(b"TWO")
    (ds / "c.png").write_bytes(b"new")
    fast, via_typer = run_both("data", "verify", str(ds), "--manifest", str(tmp_path / "m.json"))
    assert (fast.returncode, fast.stdout, fast.stderr) == (via_typer.returncode, via_typer.stdout, via_typer.stderr)
    assert "changed: b/2.png (sha256 differs from the manifest)" in fast.stderr
    assert "unexpected: c.png (not in the manifest)" in fast.stderr
    assert outcomes + [fast.returncode] == [0, 0, 4, 4, 4]


def test_the_fast_way_in_loads_neither_typer_nor_pydantic(tmp_path: Path) -> None:
    ds = make_tree(tmp_path / "ds", {"a.png": b"a"})
    subprocess.run([sys.executable, "-m", "reproexec", "data", "snapshot", str(ds)], check=True, capture_output=True, env=ENV)
    code = (
        "import sys\n"
        "from reproexec.cli import main\n"
        f"sys.argv = ['reproexec', 'data', 'verify', {str(ds)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('EXIT', code, sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'click', 'pydantic'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    assert out.splitlines()[-1] == "EXIT 0 []"
