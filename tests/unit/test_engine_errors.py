from typer.testing import CliRunner

from reproexec.cli.app import app


def test_no_engine_is_a_clear_error_that_says_how_to_start_one(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    r = CliRunner().invoke(app, ["build", "examples/digits/config.yaml"])
    assert r.exit_code == 5
    assert "error: no Docker engine answers" in r.stderr
    assert "apt-get install docker.io" in r.stderr and "docker info" in r.stderr
