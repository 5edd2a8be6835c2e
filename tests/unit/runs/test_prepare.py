"""What `reproexec run` refuses before a run folder exists (no Docker needed: local runtime)."""

import pytest
from runfixtures import write_config
from typer.testing import CliRunner

from reproexec.cli.app import app

runner = CliRunner()


def test_changed_dataset_stops_the_run_before_anything_starts(tmp_path, demo_snapshot):
    import shutil

    snap = tmp_path / "snap"
    shutil.copytree(demo_snapshot, snap)
    victim = sorted((snap / "train" / "3").iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF
    victim.write_bytes(bytes(data))
    (snap / "train" / "3" / "extra.png").write_bytes(b"extra")
    cfg = write_config(tmp_path, snap)
    runs = tmp_path / "runs"
    r = runner.invoke(app, ["run", str(cfg), "--runtime", "local", "--runs-dir", str(runs)])
    assert r.exit_code == 4, r.output
    rel = victim.relative_to(snap).as_posix()
    assert f"changed: {rel}" in r.stderr and "unexpected: train/3/extra.png" in r.stderr
    assert not runs.exists() or list(runs.iterdir()) == []  # no run folder at all


def test_gpu_on_a_cpu_flavour_is_refused(tmp_path, demo_snapshot):
    cfg = write_config(tmp_path, demo_snapshot)
    r = runner.invoke(app, ["run", str(cfg), "--gpu", "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 2
    assert "--gpu needs a CUDA image" in r.stderr and "env.flavour" in r.stderr


def test_require_clean_refuses_a_dirty_work_tree(tmp_path, demo_snapshot):
    import subprocess

    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    cfg = write_config(tmp_path, demo_snapshot)
    subprocess.run([*git, "add", "config.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "config"], check=True)
    (tmp_path / "train.py").write_text("print(1)\n")
    r = runner.invoke(
        app, ["run", str(cfg), "--runtime", "local", "--require-clean", "--runs-dir", str(tmp_path / "runs")]
    )
    assert r.exit_code == 7
    assert "has uncommitted changes and --require-clean was given" in r.stderr


def test_a_run_lost_mid_stream_is_marked_failed(tmp_path, demo_snapshot, monkeypatch):
    import json

    from reproexec.config import load_config
    from reproexec.engine import Exit
    from reproexec.runs import launch
    from reproexec.runs.execute import execute_run
    from reproexec.runs.prepare import RunOptions

    class BrokenHandle:
        id = "broken"
        stopped = removed = False

        def lines(self):
            yield '{"event": "start"}'
            raise ConnectionError("engine went away")

        def wait(self):
            return Exit(0)

        def stop(self, timeout=10):
            BrokenHandle.stopped = True

        def remove(self):
            BrokenHandle.removed = True

    monkeypatch.setattr(launch.LocalLauncher, "start", lambda *a, **k: (BrokenHandle(), None))
    cfg = load_config(write_config(tmp_path, demo_snapshot))
    with pytest.raises(ConnectionError):
        execute_run(cfg, RunOptions(runtime="local", runs_dir=tmp_path / "runs"))
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "engine went away" in record["reason"]
    assert BrokenHandle.stopped and BrokenHandle.removed
    assert list((tmp_path / "runs" / ".staging").iterdir()) == []  # the staging folder is gone


def _fake_byo_run(tmp_path, *, run_json_entrypoint, with_code_tar):
    import json

    from reproexec.config import load_config

    cfg = load_config(write_config(tmp_path, tmp_path / "data", entrypoint=["python", "train.py"]))
    run = tmp_path / "runs" / "2026-01-01_custom_x_abcdef"
    run.mkdir(parents=True)
    (run / "config.resolved.json").write_text(json.dumps(cfg.config.resolved()))
    (run / "run.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "run_id": run.name,
                "status": "succeeded",
                "started_at": "2026-01-01T00:00:00+00:00",
                "reproexec_version": "0.1.0",
                "entrypoint": run_json_entrypoint,
                "data": {"snapshot": "d", "manifest_id": "m"},
            }
        )
    )
    (run / "train.py").write_text("print('not the code that ran')")
    if with_code_tar:
        (run / "code.tar").write_bytes(b"")
    return run


def test_rerun_refuses_a_run_whose_records_disagree_about_the_entrypoint(tmp_path):
    # run.json says built-in trainer, the config it replays says an entrypoint: altered, refused
    # (before this check, a local rerun would have run the bundle's own train.py on the host).
    run = _fake_byo_run(tmp_path, run_json_entrypoint=None, with_code_tar=False)
    r = runner.invoke(app, ["rerun", str(run), "--runtime", "local", "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 7
    assert "run.json and config.resolved.json disagree about the entrypoint" in r.stderr


def test_rerun_of_a_byo_run_without_code_tar_says_why(tmp_path):
    run = _fake_byo_run(tmp_path, run_json_entrypoint=["python", "train.py"], with_code_tar=False)
    r = runner.invoke(app, ["rerun", str(run), "--runtime", "local", "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 7
    assert "used a bring-your-own entrypoint but has no code.tar" in r.stderr
    assert "apply code.patch" in r.stderr


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"resources": {"cpuset": "63"}}, "resources.cpuset = '63' names CPU 63, which this process does not have"),
        ({"resources": {"cpus": 1000}}, "resources.cpus = 1000.0, but this process has"),
        ({"resources": {"memory": "1b"}}, "resources.memory = '1b': at least 128m"),
        ({"resources": {"pids_limit": 1e20}}, "resources.pids_limit = 1e+20: Input should be a valid integer"),
        ({"determinism": {"threads": 1e20}}, "determinism.threads = 1e+20: Input should be a valid integer"),
        ({"model": {"arch": "os.system"}}, "model.arch = 'os.system': not a torchvision classification model"),
        ({"model": {"num_classes": 3}}, "model.num_classes = 3, but the dataset has 10 classes (0, 1, 2, 3"),
        ({"train": {"lr": float("inf")}}, "train.lr = inf: Input should be a finite number"),
        ({"seed": True}, "seed = True: Input should be a valid integer"),
        (
            {"data": {"train_dir": "../digits-v2/train"}},
            "data.train_dir = '../digits-v2/train': must be a plain folder path",
        ),
    ],
)
def test_values_only_docker_or_the_trainer_would_reject_are_refused_before_a_run_folder(
    tmp_path, demo_snapshot, overrides, expected
):
    cfg = write_config(tmp_path, demo_snapshot, **overrides)
    runs = tmp_path / "runs"
    r = runner.invoke(app, ["run", str(cfg), "--runtime", "local", "--runs-dir", str(runs)])
    assert r.exit_code == 2, r.output
    assert expected in r.stderr, r.stderr
    assert not runs.exists()


@pytest.mark.parametrize("user", ["0:0", "0:1000", "1000:0"])
def test_a_run_never_runs_as_root(tmp_path, demo_snapshot, user):
    cfg = write_config(tmp_path, demo_snapshot)
    r = runner.invoke(app, ["run", str(cfg), "--user", user, "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 2, r.output
    assert f"--user {user}: a run never runs as root (uid or gid 0)" in r.stderr


def test_a_billion_laughs_config_is_refused_at_once(tmp_path):
    import time

    laughs = ["name: x", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        laughs.append(f"{cur}: &{cur} [{','.join([f'*{prev}'] * 9)}]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(laughs) + "\n")
    t0 = time.perf_counter()
    r = runner.invoke(app, ["config", "show", str(path)])
    assert r.exit_code == 2 and time.perf_counter() - t0 < 5  # a bound on a refusal, not a benchmark
    assert "YAML anchors and aliases are not allowed (anchor &a at line 2)" in r.stderr


def test_a_file_name_with_colons_prints_as_itself(tmp_path):
    from reproexec import console

    with console.err.capture() as cap:
        console.error("a:x:b.png is missing")
    assert "a:x:b.png" in cap.get()


def test_an_unknown_variable_in_the_entrypoint_is_refused_before_a_run_folder(tmp_path, demo_snapshot):
    cfg = write_config(tmp_path, demo_snapshot, entrypoint=["python", "train.py", "--out", "${REPROEXEC_OUT}"])
    runs = tmp_path / "runs"
    r = runner.invoke(app, ["run", str(cfg), "--runs-dir", str(runs)])
    assert r.exit_code == 2, r.output
    assert "argument 3 '${REPROEXEC_OUT}' uses ${REPROEXEC_OUT}, which reproexec does not define" in r.stderr
    assert not runs.exists()


def test_config_show_of_an_entrypoint_config_shows_only_what_applies(tmp_path, demo_snapshot):
    import yaml

    cfg = write_config(tmp_path, demo_snapshot, entrypoint=["python", "train.py"])
    r = runner.invoke(app, ["config", "show", str(cfg)])
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.stdout)
    assert not {"model", "augment", "train", "smoke"} & set(shown)
    assert shown["determinism"]["seed_entrypoint"] is True and "results" in shown["output"]


def _arm64_engine(monkeypatch, machine="aarch64"):
    from fakes import FakeEngine

    import reproexec.engine as engine_module

    engine = FakeEngine()
    engine.machine = machine
    engine.add_image("reproexec-base:bookworm")  # an amd64 base, as on every x86 machine
    monkeypatch.setattr(engine_module, "connect", lambda: engine)
    return engine


def test_an_arm64_engine_runs_arm64_but_an_amd64_level_is_refused_naming_the_field(
    tmp_path, demo_snapshot, monkeypatch
):
    """A Mac's Docker Desktop (aarch64 engine) or a Graviton host: the config's x86 level cannot run
    there; refused before anything is built, naming determinism.cpu_capability and the fix."""
    engine = _arm64_engine(monkeypatch)
    cfg = write_config(tmp_path, demo_snapshot)  # the demo's: cpu_capability avx2
    runs = tmp_path / "runs"
    for args in (["run", str(cfg), "--runs-dir", str(runs)], ["build", str(cfg)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, r.output
        assert "determinism.cpu_capability = 'avx2' is an x86-64 level, but this Docker engine (arm64)" in r.stderr
        assert "set determinism.cpu_capability: default" in r.stderr
    assert engine.builds == [] and engine.imports == [] and engine.runs == []
    assert not runs.exists() or list(runs.iterdir()) == []


def test_an_amd64_base_under_an_arm64_run_is_refused_with_the_bootstrap_to_run(tmp_path, demo_snapshot, monkeypatch):
    engine = _arm64_engine(monkeypatch)
    cfg = write_config(tmp_path, demo_snapshot, determinism={"cpu_capability": "default"})
    r = runner.invoke(app, ["build", str(cfg)])
    assert r.exit_code == 2, r.output
    assert "env.base_image reproexec-base:bookworm is a linux/amd64 image, but the run is linux/arm64" in r.stderr
    assert "reproexec base bootstrap --arch arm64" in r.stderr and "reproexec-base:bookworm-arm64" in r.stderr
    assert engine.builds == []


def test_amd64_on_an_arm64_engine_and_other_machines_are_refused(tmp_path, demo_snapshot, monkeypatch):
    import platform

    engine = _arm64_engine(monkeypatch)
    runs = tmp_path / "runs"
    cfg = write_config(tmp_path, demo_snapshot, env={"arch": "amd64"})
    r = runner.invoke(app, ["run", str(cfg), "--runs-dir", str(runs)])
    assert r.exit_code == 7, r.output
    assert "env.arch is amd64, but the Docker engine's machine is arm64" in r.stderr
    assert "AVX2, FMA" in r.stderr and "env.arch: arm64" in r.stderr

    engine.machine = "ppc64le"
    cfg = write_config(tmp_path, demo_snapshot)
    r = runner.invoke(app, ["run", str(cfg), "--runs-dir", str(runs)])
    assert r.exit_code == 7, r.output
    assert "the Docker engine's machine is ppc64le, but reproexec builds linux/amd64 and linux/arm64" in r.stderr
    assert engine.builds == [] and engine.runs == []

    monkeypatch.setattr(platform, "machine", lambda: "arm64")  # macOS names it so
    cfg = write_config(tmp_path, demo_snapshot, env={"arch": "amd64"}, determinism={"cpu_capability": "default"})
    r = runner.invoke(app, ["run", str(cfg), "--runtime", "local", "--runs-dir", str(runs)])
    assert r.exit_code == 2, r.output
    assert "env.arch is amd64, but --runtime local runs on this machine, which is arm64" in r.stderr
    assert not runs.exists() or list(runs.iterdir()) == []
