"""`reproexec data ...` through the real Typer app: exit codes, stdout vs stderr, exact messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datatrees import make_tree
from typer.testing import CliRunner

from reproexec.cli.app import app

ENV = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}


def invoke(*args: str):
    return CliRunner(env=ENV).invoke(app, ["data", *args])


def test_snapshot_prints_the_manifest_id_on_stdout(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a/1.png": b"one", "b/2.png": b"two", "tmp/x": b"x"})
    r = invoke("snapshot", str(tmp_path), "--exclude", "tmp")
    assert r.exit_code == 0, r.output
    mid = json.loads((tmp_path / "manifest.json").read_text())
    from reproexec.data.manifest import load_manifest

    assert r.stdout == load_manifest(tmp_path / "manifest.json").manifest_id + "\n"
    assert mid["excludes"] == ["tmp"]
    assert (
        r.stderr == f"✓ snapshot of {tmp_path}: 2 files, 6 bytes, excluding tmp; wrote manifest.json and SHA256SUMS\n"
    )


def test_verify_success_prints_id_and_counts(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a/1.png": b"one", "b/2.png": b"two"})
    sid = invoke("snapshot", str(tmp_path)).stdout.strip()
    r = invoke("verify", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        f"manifest id  {sid}",
        "files        2",
        "bytes        6",
        "checked      sha256 of every file",
    ]
    assert r.stderr == f"✓ {tmp_path}: 2 files, 6 bytes match the manifest (sha256)\n"


def test_verify_quick_says_content_was_not_checked(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a/1.png": b"one"})
    invoke("snapshot", str(tmp_path))
    (tmp_path / "a/1.png").write_bytes(b"ONE")  # same size, other content: --quick cannot see it
    r = invoke("verify", str(tmp_path), "--quick")
    assert r.exit_code == 0
    assert "warning: --quick compared names and sizes only; file contents were NOT checked" in r.stderr
    assert "checked      sizes only (content not checked)" in r.stdout
    assert invoke("verify", str(tmp_path)).exit_code == 4


def test_verify_mismatch_exits_4_with_every_problem_on_stderr(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a/1.png": b"one", "b/2.png": b"two", "c/3.png": b"three"})
    invoke("snapshot", str(tmp_path))
    (tmp_path / "a/1.png").write_bytes(b"ONE")
    (tmp_path / "b/2.png").unlink()
    (tmp_path / "c/3.png").write_bytes(b"3")
    (tmp_path / "new.png").write_bytes(b"new")
    r = invoke("verify", str(tmp_path))
    assert r.exit_code == 4
    assert r.stdout == ""
    assert r.stderr == (
        f"error: {tmp_path}: snapshot does not match {tmp_path / 'manifest.json'} (contents checked): "
        "1 missing, 1 resized, 1 changed, 1 unexpected\n"
        "  - missing: b/2.png\n"
        "  - resized: c/3.png (5 bytes in the manifest, 1 on disk)\n"
        "  - changed: a/1.png (sha256 differs from the manifest)\n"
        "  - unexpected: new.png (not in the manifest)\n"
        "Fix: restore the files listed above; if the change is intended, take a new snapshot with "
        "`reproexec data snapshot DIR` (that gives a new manifest id)\n"
    )


def test_verify_with_manifest_option_and_traversal_refused(tmp_path: Path) -> None:
    make_tree(tmp_path, {"data/a.png": b"a"})
    m = tmp_path / "evil.json"
    m.write_text(json.dumps({"count": 1, "files": [{"relpath": "../evil.json", "bytes": 1, "sha256": "0" * 64}]}))
    r = invoke("verify", str(tmp_path / "data"), "--manifest", str(m))
    assert r.exit_code == 4
    assert r.stderr.startswith(f"error: manifest {m}: 1 problem; refusing to use it\n")
    assert "  - files[0] ('../evil.json'): relpath contains '..'; it must stay inside the snapshot folder\n" in r.stderr


def test_snapshot_refuses_escaping_symlink_exit_4(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.png": b"a"})
    (tmp_path / "out").symlink_to("/etc")
    r = invoke("snapshot", str(tmp_path))
    assert r.exit_code == 4
    assert r.stderr.splitlines()[:2] == [
        f"error: {tmp_path}: 1 entry is not plain readable files (a symlink leaves the snapshot)",
        "  - out: symlink to /etc, outside the snapshot",
    ]


def test_demo_cli_refuses_non_empty_out(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    r = invoke("demo", str(tmp_path))
    assert r.exit_code == 4
    assert r.stderr == (
        f"error: {tmp_path} is not empty; refusing to write the demo dataset into it\n"
        "Fix: pass an empty or new folder, or --force to replace a previous demo snapshot\n"
    )


def test_demo_cli_writes_and_prints_the_id(tmp_path: Path) -> None:
    r = invoke("demo", str(tmp_path / "digits"), "--val-fraction", "0.2", "--seed", "0")
    assert r.exit_code == 0, r.output
    assert r.stdout == "f4f594f2015921fbb428909c291ef4f25d3a7a6668728a3e36bf498e6e9781e9\n"
    assert "1,797 PNG images" in r.stderr


def test_the_data_group_registers_its_commands() -> None:
    import typer.main

    group = typer.main.get_command(app).commands["data"]
    assert sorted(group.commands) == ["demo", "snapshot", "verify"]


@pytest.mark.parametrize(
    ("cmd", "words"),
    [
        ("snapshot", ["--exclude", "Hash every file in DIR"]),
        ("verify", ["--manifest", "(default: DIR/manifest.json)", "--quick", "content is NOT checked"]),
        ("demo", ["--val-fraction", "--seed", "--force"]),
    ],
)
def test_each_command_is_there_with_its_help(cmd: str, words: list[str]) -> None:
    r = invoke(cmd, "--help")
    assert r.exit_code == 0, r.output
    assert f"Usage: reproexec data {cmd} [OPTIONS]" in r.stdout
    for word in words:
        assert word in r.stdout


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point (reproexec.cli:main), as a user runs it."""
    env = {**os.environ, **ENV}
    return subprocess.run([sys.executable, "-m", "reproexec", *args], capture_output=True, text=True, env=env)


def test_the_command_line_exit_codes_and_streams(tmp_path: Path) -> None:
    ds = make_tree(tmp_path / "ds", {"a/1.png": b"one", "b/2.png": b"two"})
    r = run_cli("data", "snapshot", str(ds))
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    os.replace(ds / "manifest.json", tmp_path / "m.json")
    r = run_cli("data", "verify", "--quick", str(ds), f"--manifest={tmp_path / 'm.json'}")
    assert (r.returncode, r.stdout.splitlines()[0]) == (0, f"manifest id  {sid}")
    (ds / "b/2.png").write_bytes(b"TWO")
    r = run_cli("data", "verify", str(ds), "--manifest", str(tmp_path / "m.json"))
    assert (r.returncode, r.stdout) == (4, "")
    assert "  - changed: b/2.png (sha256 differs from the manifest)\n" in r.stderr
    (tmp_path / "m.json").write_text("[" * 100_000 + "]" * 100_000)
    r = run_cli("data", "verify", str(ds), "--manifest", str(tmp_path / "m.json"))
    assert (r.returncode, r.stdout) == (4, "")
    assert r.stderr == (
        f"error: manifest {tmp_path / 'm.json'} nests lists or objects too deeply to be a manifest\n"
        "Fix: regenerate it with `reproexec data snapshot DIR`\n"
    )
