"""`reproexec lock` for real: pip-tools resolving the demo's requirements with this machine's pip
configuration (torch and torchvision come from the local disk index). About two minutes."""

from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.env.lock import read_lock


def test_demo_requirements_resolve_to_a_complete_hashed_lock(tmp_path):
    out = tmp_path / "requirements.lock"
    r = CliRunner().invoke(app, ["lock", "examples/digits/requirements.in", "-o", str(out)])
    assert r.exit_code == 0, r.output
    lock = read_lock(out)  # the strict reader: every line pinned with ==, every package hashed
    assert lock.get("torch").version == "2.14.1" and lock.get("torchvision").version == "0.29.1"
    committed = read_lock("examples/digits/requirements.lock")
    assert {r.name for r in lock.requirements} == {r.name for r in committed.requirements}
    assert "# via" in out.read_text() and "pip-compile" not in out.read_text().splitlines()[0]
    assert f"{len(lock.requirements)} packages pinned with sha256" in r.stderr


def test_unresolvable_requirements_are_a_clear_error(tmp_path):
    req = tmp_path / "requirements.in"
    req.write_text("torch==0.0.0-does-not-exist\n")
    r = CliRunner().invoke(app, ["lock", str(req), "-o", str(tmp_path / "out.lock")])
    assert r.exit_code == 3
    assert f"pip-tools could not resolve {req}" in r.stderr
    assert not (tmp_path / "out.lock").exists()
