"""What a run's container writes, and what a bundle holds, is hostile: the attacks of issue 14,
against the real engine (markers: docker, slow)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from needs import require
from runfixtures import write_config

from reproexec.config import load_config
from reproexec.runs.execute import execute_run
from reproexec.runs.prepare import RunOptions

IS_ROOT = os.geteuid() == 0

ATTACK = r"""
import json, os, shutil
out = os.environ["REPROEXEC_RUN_DIR"]
secret = {secret!r}
names = ["run.json", "config.yaml", "summary.json", "report.html", "stdout.log", "environment.json",
         "manifest.json"] + [f".run.json.{{pid}}.tmp" for pid in range(1, 200)] + [f".report.html.{{pid}}.tmp" for pid in range(1, 200)]
for name in names:
    path = os.path.join(out, name)
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(secret, path)
shutil.copy("/bin/dash", os.path.join(out, "x"))
os.chmod(os.path.join(out, "x"), 0o4755)
with open(os.path.join(out, "who.json"), "w") as f:
    json.dump({{"uid": os.getuid(), "gid": os.getgid()}}, f)
print("planted", flush=True)
"""


def _containers(label_value: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=org.reproexec.run-id={label_value}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def _setuid_files(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISDIR(st.st_mode):
                found.append(os.path.join(dirpath, name))
    return found


def test_links_and_a_setuid_binary_planted_by_a_run_never_reach_the_host(
    docker_engine, base_image, demo_snapshot, tmp_path
):
    secret = tmp_path / "host-secret.json"
    secret.write_text('{"secret": "root only"}\n')
    os.chmod(secret, 0o600)
    before = (secret.read_bytes(), secret.stat().st_mode, secret.stat().st_mtime_ns)
    (tmp_path / "attack.py").write_text(ATTACK.format(secret=str(secret)))
    cfg = write_config(tmp_path, demo_snapshot, entrypoint=["python", "attack.py"])
    run = execute_run(load_config(cfg), RunOptions(runs_dir=tmp_path / "runs"), engine=docker_engine)

    assert (secret.read_bytes(), secret.stat().st_mode, secret.stat().st_mtime_ns) == before
    record = json.loads((run.run_dir / "run.json").read_text())
    assert run.status == record["status"] == "failed"
    assert record["reason"].startswith("unsafe outputs refused (1): x: setuid/setgid bit set")
    links = {link["path"] for link in record["outputs"]["links"]}
    assert {"run.json", "config.yaml", "summary.json", "report.html", ".run.json.1.tmp"} <= links
    for name in ("run.json", "report.html", "config.yaml", "stdout.log"):
        p = run.run_dir / name
        assert not p.is_symlink() and "root only" not in p.read_text(), name
    assert _setuid_files(tmp_path / "runs") == []
    assert not (tmp_path / "runs" / ".staging" / run.run_id).exists()
    who = json.loads((run.run_dir / "who.json").read_text())
    if IS_ROOT:  # root's runs never run as uid 0 in the container
        assert (who["uid"], who["gid"]) == (10001, 10001)
        assert {p.stat().st_uid for p in run.run_dir.rglob("*")} == {0}  # handed back to root
    assert _containers(run.run_id) == []


SLEEPER = "import time\nprint('ready', flush=True)\nfor _ in range(600):\n    time.sleep(1)\n"
DRIVER = r"""
import sys, time
import docker.api.container as api
real_start = api.ContainerApiMixin.start
def slow_start(self, container, *a, **k):  # a slow engine: the run's container exists, not yet started
    if "org.reproexec.run-id" in (self.inspect_container(container)["Config"]["Labels"] or {}):
        print("STARTING", flush=True)  # (not a build's wheel server)
        time.sleep(8)
    return real_start(self, container, *a, **k)
api.ContainerApiMixin.start = slow_start
from reproexec.cli.app import app
sys.argv = ["reproexec", *sys.argv[1:]]
app()
"""


def _cli_run(tmp_path: Path, demo_snapshot: Path, driver: bool = False) -> tuple[subprocess.Popen, Path]:
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    cfg = write_config(tmp_path, demo_snapshot, entrypoint=["python", "sleeper.py"])
    runs = tmp_path / "runs"
    head = [sys.executable, "-c", DRIVER] if driver else [sys.executable, "-m", "reproexec"]
    # SIGINT as a terminal delivers it: a suite started in the background (`cmd &` without job
    # control) hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen(
        [*head, "run", str(cfg), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return proc, runs


def _wait_for(predicate, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def _ready(runs: Path) -> Path | None:
    """The run folder once the sleeper printed 'ready' (the host copied it to stdout.log)."""
    d = _run_dir(runs)
    log = d / "stdout.log" if d else None
    return d if log and log.exists() and "ready" in log.read_text(errors="replace") else None


def _run_dir(runs: Path) -> Path | None:
    found = (
        [p for p in runs.glob("*") if not p.name.startswith(".") and (p / "run.json").is_file()]
        if runs.is_dir()
        else []
    )
    return found[0] if found else None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("phase", ["starting", "training"])
def test_a_signal_at_any_phase_ends_interrupted_with_no_container_left(
    docker_engine, base_image, demo_snapshot, tmp_path, sig, phase
):
    proc, runs = _cli_run(tmp_path, demo_snapshot, driver=phase == "starting")
    if phase == "starting":
        _wait_for(
            lambda: proc.stdout.readline().strip() == "STARTING" or proc.poll() is not None, "the container's start"
        )
    else:
        _wait_for(lambda: _ready(runs), "the run to start")
    run_dir = _run_dir(runs)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, out
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted", record["reason"]
    assert record["reason"].startswith(f"stopped by {sig.name}")
    assert _containers(run_dir.name) == []
    assert not (runs / ".staging" / run_dir.name).exists()


def test_a_killed_reproexec_leaves_a_container_that_stops_itself_and_is_reaped(
    docker_engine, base_image, demo_snapshot, tmp_path
):
    proc, runs = _cli_run(tmp_path, demo_snapshot)
    run_dir = _wait_for(lambda: _ready(runs), "the run to start")
    (container,) = _containers(run_dir.name)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()

    def stopped() -> bool:
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True
        )
        return state.stdout.strip() == "false"

    _wait_for(stopped, "the orphaned container to stop by itself", timeout=30)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # nobody has told it yet
    listing = subprocess.run(
        [sys.executable, "-m", "reproexec", "runs", "list", "--runs-dir", str(runs)], capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    assert f"removed the container of run {run_dir.name}" in listing.stderr
    assert _containers(run_dir.name) == []
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and "was killed" in record["reason"]
    assert not (runs / ".staging" / run_dir.name).exists()


WRITER = "import os\nopen(os.path.join(os.environ['REPROEXEC_RUN_DIR'], 'big.bin'), 'wb').write(b'x' * 5_000_000)\n"


@pytest.fixture
def tiny_disk(tmp_path):
    if not IS_ROOT:
        require("root (to mount a small tmpfs)", "the tests do not run as root")
    mounts = []

    def make(size: str) -> Path:
        path = tmp_path / f"disk-{size}"
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        mounts.append(path)
        return path

    yield make
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_fails_the_run_with_the_reason_and_leaves_no_temp_files(
    docker_engine, base_image, demo_snapshot, tmp_path, tiny_disk
):
    runs = tiny_disk("2m")
    (tmp_path / "writer.py").write_text(WRITER)
    cfg = write_config(tmp_path, demo_snapshot, entrypoint=["python", "writer.py"])
    run = execute_run(load_config(cfg), RunOptions(runs_dir=runs), engine=docker_engine)
    assert run.status == "failed" and run.reason.startswith("disk full"), run.reason
    record = json.loads((run.run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["reason"] == run.reason
    assert [p.name for p in runs.rglob("*") if p.name.endswith(".tmp") or p.name == ".reserve"] == []
    assert not (runs / ".staging" / run.run_id).exists()


def test_a_disk_too_full_to_start_refuses_the_run_and_writes_nothing(
    docker_engine, base_image, demo_snapshot, tmp_path, tiny_disk
):
    from typer.testing import CliRunner

    from reproexec.cli.app import app

    runs = tiny_disk("128k")
    cfg = write_config(tmp_path, demo_snapshot, entrypoint=["python", "-c", "print(1)"])
    r = CliRunner().invoke(app, ["run", str(cfg), "--runs-dir", str(runs)])
    assert r.exit_code == 7, r.output
    assert f"error: disk full: {runs} has" in r.stderr and "nothing was written" in r.stderr
    assert [p.name for p in runs.iterdir() if p.name != ".staging"] == []
    assert not any(runs.rglob("*.tmp"))


# -- bundles that would re-point local tags ------------------------------------------------------------


def _tiny_image(engine, tmp_path: Path, name: str, content: bytes, labels: dict[str, str]) -> str:
    rootfs = tmp_path / f"{name}.tar"
    with tarfile.open(rootfs, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    changes = [f'LABEL {k}="{v}"' for k, v in labels.items()]
    return engine.import_rootfs(rootfs, name, "latest", changes)


def _hijack_bundle(tmp_path: Path, image_tar: bytes, image_record: dict, run_id: str) -> Path:
    files = {"summary.json": b'{"final": {}}'}
    record = {
        "schema": 1,
        "run_id": run_id,
        "status": "succeeded",
        "started_at": "2026-11-24T10:00:00+00:00",
        "reproexec_version": "0.1.0",
        "image": image_record,
        "artifacts": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
    }
    path = tmp_path / f"{run_id}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {"run.json": json.dumps(record).encode(), **files, "image.tar": image_tar}.items():
            info = tarfile.TarInfo(f"{run_id}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _retagged_save(engine, image_id: str, tags: list[str]) -> bytes:
    """`docker save` of image_id, its manifest rewritten to name `tags` (what an attacker would send)."""
    buf = io.BytesIO()
    engine.save(image_id, buf)
    src, out = tarfile.open(fileobj=io.BytesIO(buf.getvalue())), io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isreg() else None
            if m.name == "manifest.json":
                doc = json.loads(data)
                doc[0]["RepoTags"] = tags
                data = json.dumps(doc).encode()
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
        repos = json.dumps({t.split(":")[0]: {t.split(":")[1]: image_id.split(":")[1]} for t in tags}).encode()
        info = tarfile.TarInfo("repositories")
        info.size = len(repos)
        dst.addfile(info, io.BytesIO(repos))
    return out.getvalue()


def test_a_bundle_never_re_points_a_local_tag(docker_engine, tmp_path):
    from reproexec.errors import RunError
    from reproexec.runs.bundle import import_bundle

    stamp = f"{time.time_ns()}"
    victim_tag = f"reproexec-test-victim-{stamp}"
    victim = _tiny_image(docker_engine, tmp_path, victim_tag, b"victim", {})
    content = hashlib.sha256(stamp.encode()).hexdigest()
    attacker = _tiny_image(
        docker_engine,
        tmp_path,
        f"reproexec-test-attacker-{stamp}",
        b"attacker " + stamp.encode(),
        {"org.reproexec.content-hash": content},
    )
    image_tar = _retagged_save(docker_engine, attacker, [f"{victim_tag}:latest"])
    docker_engine.remove_image(f"reproexec-test-attacker-{stamp}:latest")
    docker_engine.remove_image(attacker)
    try:
        # 1. the recorded image, carrying a victim's tag: loaded untagged, tagged only as reproexec-bundle,
        # never reproexec-env (a later build of inputs that hash to `content` would take it as its cache hit)
        good = {"tag": f"reproexec-env:{content}", "id": attacker, "content_hash": content}
        result = import_bundle(
            _hijack_bundle(tmp_path, image_tar, good, "r-good"), tmp_path / "runs", lambda: docker_engine
        )
        assert result.image == attacker
        assert docker_engine.image(f"{victim_tag}:latest").id == victim
        assert docker_engine.image(f"reproexec-bundle:{content}").id == attacker
        assert docker_engine.image(f"reproexec-env:{content}") is None
        # 2. a bundle whose image is not the one its run.json records: refused, nothing tagged
        other = hashlib.sha256(b"other" + stamp.encode()).hexdigest()
        bad = {"tag": f"reproexec-env:{other}", "id": "sha256:" + "0" * 64, "content_hash": other}
        with pytest.raises(RunError, match="is not the one its run.json records"):
            import_bundle(_hijack_bundle(tmp_path, image_tar, bad, "r-bad"), tmp_path / "runs", lambda: docker_engine)
        assert docker_engine.image(f"reproexec-env:{other}") is None
        assert docker_engine.image(f"{victim_tag}:latest").id == victim
    finally:
        for ref in (f"reproexec-bundle:{content}", f"{victim_tag}:latest", attacker, victim):
            docker_engine.remove_image(ref)


def test_a_bundle_cannot_name_the_tag_its_base_is_imported_under(docker_engine, tmp_path, isolated_cache):
    """A --with-base bundle whose run.json names `image.base.reference: adv-planted:latest`: the rootfs is
    checked and imported, but under reproexec-base-rootfs:<its sha256>, never under the bundle's name."""
    import gzip

    from reproexec.runs.bundle import import_bundle

    stamp = f"{time.time_ns()}"
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        info = tarfile.TarInfo("etc/os-release")
        data = f"ID=planted-{stamp}\n".encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    sha = hashlib.sha256(rootfs.getvalue()).hexdigest()
    planted = f"adv-planted-{stamp}:latest"
    files = {"summary.json": b'{"final": {}}'}
    record = {
        "schema": 1,
        "run_id": "r-base",
        "status": "succeeded",
        "started_at": "2026-11-24T10:00:00+00:00",
        "reproexec_version": "0.1.0",
        "artifacts": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
        "image": {
            "tag": "reproexec-env:" + "1" * 64,
            "id": "sha256:" + "2" * 64,
            "content_hash": "1" * 64,
            "base": {"reference": planted, "layers": [f"sha256:{sha}"]},
        },
    }
    bundle = tmp_path / "b.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        for name, data in {
            "run.json": json.dumps(record).encode(),
            **files,
            "base.tar.gz": gzip.compress(rootfs.getvalue()),
        }.items():
            info = tarfile.TarInfo(f"r-base/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    try:
        result = import_bundle(bundle, tmp_path / "runs", lambda: docker_engine)
        assert result.base == f"reproexec-base-rootfs:{sha}"
        assert docker_engine.image(planted) is None
        assert docker_engine.image(f"reproexec-base-rootfs:{sha}").layers == (f"sha256:{sha}",)
    finally:
        docker_engine.remove_image(f"reproexec-base-rootfs:{sha}")
