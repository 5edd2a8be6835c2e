"""`reproexec lock` for real: pip-tools resolving against the package index with this machine's pip
configuration, into a lockfile the strict reader accepts. A few packages, not the demo's torch and
CUDA wheels: pip-tools hashes every candidate file of a pin, which took 6 of the suite's minutes for
the demo (the demo's own lockfile is checked at every build: every wheel against its sha256)."""

from typer.testing import CliRunner

from reproexec.cli.app import app
from reproexec.env.lock import read_lock


def test_requirements_resolve_to_a_complete_hashed_lock(tmp_path):
    req = tmp_path / "requirements.in"
    req.write_text("pyyaml==6.0.*\njinja2>=3.1,<4\n")  # jinja2 pulls markupsafe: a dependency is pinned too
    out = tmp_path / "requirements.lock"
    r = CliRunner().invoke(app, ["lock", str(req), "-o", str(out)])
    assert r.exit_code == 0, r.output
    lock = read_lock(out)  # the strict reader: every line pinned with ==, every package hashed
    assert {x.name for x in lock.requirements} == {"pyyaml", "jinja2", "markupsafe"}
    assert lock.get("pyyaml").version.startswith("6.0.") and all(x.hashes for x in lock.requirements)
    assert "# via" in out.read_text() and "pip-compile" not in out.read_text().splitlines()[0]
    assert f"{len(lock.requirements)} packages pinned with sha256" in r.stderr


def test_unresolvable_requirements_are_a_clear_error(tmp_path):
    req = tmp_path / "requirements.in"
    req.write_text("torch==0.0.0-does-not-exist\n")
    r = CliRunner().invoke(app, ["lock", str(req), "-o", str(tmp_path / "out.lock")])
    assert r.exit_code == 3
    assert f"pip-tools could not resolve {req}" in r.stderr
    assert not (tmp_path / "out.lock").exists()


def test_a_lock_for_another_platform_pins_that_platforms_wheels_and_keeps_the_locked_versions(tmp_path):
    """`--platform linux/arm64` from this amd64 machine: pip's resolver with aarch64 wheel tags (what
    pip-tools cannot do), one sha256 per pin, the wheel an arm64 image installs; an existing lock's
    versions are kept (as the amd64 lock's are for examples/digits/requirements.arm64.lock)."""
    req = tmp_path / "requirements.in"
    req.write_text("pyyaml\njinja2>=3.1,<4\n")
    out = tmp_path / "requirements.arm64.lock"
    out.write_text("pyyaml==6.0.1 --hash=sha256:" + "0" * 64 + "\n")  # an older pin, to be kept
    r = CliRunner().invoke(app, ["lock", str(req), "--platform", "linux/arm64", "-o", str(out)])
    assert r.exit_code == 0, r.output
    lock = read_lock(out)
    assert {x.name for x in lock.requirements} == {"pyyaml", "jinja2", "markupsafe"}
    assert lock.get("pyyaml").version == "6.0.1" and all(len(x.hashes) == 1 for x in lock.requirements)
    assert out.read_text().startswith("# Locked for linux/arm64 (Python 3.11, manylinux_2_36_aarch64)")
    assert "(linux/arm64)" in r.stderr

    r = CliRunner().invoke(app, ["lock", str(req), "--platform", "linux/s390x", "-o", str(out)])
    assert r.exit_code == 3 and "--platform 'linux/s390x' is not one reproexec builds images for" in r.stderr
    assert read_lock(out).get("pyyaml").version == "6.0.1"  # the lock is left as it was
