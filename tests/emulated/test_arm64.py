"""linux/arm64 on this amd64 machine under qemu-user: the arm64 flavour end to end, with its golden
weights per numerics class (tests/golden/arm64_weights.json).

What a user relies on: the arm64 image builds offline from the arm64 lockfile and base; a run on any
CPU of one numerics class trains the same weights (here: two emulated CPUs of the class of Apple
silicon and Graviton 2/4); each SVE class trains its own, and `env diff` names the class as what
changed the numbers; `rerun` on a CPU of another class is refused before it trains, and on one of
the same class it reruns identical. The image is made by scripts/test.sh in the background while
the rest of the suite runs (these tests run last and wait for it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from needs import REPO, require

GOLDEN = json.loads((REPO / "tests" / "golden" / "arm64_weights.json").read_text())
ARM64_CONFIG = REPO / "examples" / "digits" / "config.arm64.yaml"
PREP_LOG = Path(os.environ.get("ARM64_PREP_LOG", "/tmp/reproexec-arm64-prep.log"))


def reproexec(*args: str, cpu: str | None = None, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "REPROEXEC_QEMU_CPU": cpu} if cpu else dict(os.environ)
    return subprocess.Popen(
        [sys.executable, "-m", "reproexec", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=1200)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def arm64_image(docker_engine):
    """The arm64 base and demo image: made in the background by scripts/test.sh (waited for here),
    else made now (~10 min of emulated pip)."""
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").is_file() and os.uname().machine == "x86_64":
        require("qemu-user (binfmt_misc)", "qemu-aarch64 is not registered: run scripts/arm64.sh")
    pid_file = PREP_LOG.with_suffix(".pid")
    if pid_file.is_file():
        pid = int(pid_file.read_text().strip() or 0)
        deadline = time.monotonic() + 45 * 60
        while pid and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(5)
    for args in (["base", "bootstrap", "--arch", "arm64"], ["build", str(ARM64_CONFIG)]):
        r = finish(reproexec(*args))  # cache hits once the background job is done
        log = PREP_LOG.read_text()[-3000:] if PREP_LOG.is_file() else ""
        assert r.returncode == 0, f"{args}: {r.stderr[-3000:]}\nbackground log: {log}"
    return docker_engine


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, demo_snapshot):
    """A small snapshot (4 training and 2 validation digits per class) and the arm64 demo config
    shrunk to it (GOLDEN["config"]): ~40 s a run under emulation."""
    from reproexec.data.manifest import snapshot

    root = tmp_path_factory.mktemp("arm64")
    data = root / "digits-tiny"
    for split, n in (("train", 4), ("val", 2)):
        for cls in sorted((demo_snapshot / split).iterdir()):
            (data / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.iterdir())[:n]:
                shutil.copy(f, data / split / cls.name / f.name)
    snapshot(data)
    cfg = yaml.safe_load(ARM64_CONFIG.read_text())
    cfg["env"]["lockfile"] = str(ARM64_CONFIG.parent / cfg["env"]["lockfile"])
    cfg["data"]["snapshot"] = str(data)
    for section, values in GOLDEN["config"].items():
        cfg[section].update(values)
    work = root / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return work


def run_on(tiny: Path, cpus: list[str]) -> dict[str, dict]:
    """One run per emulated CPU, two at a time (this machine has two cores); run.json of each."""
    procs = {cpu: reproexec("run", "config.yaml", "--runs-dir", "runs", cpu=cpu, cwd=tiny) for cpu in cpus}
    out = {}
    for cpu, proc in procs.items():
        r = finish(proc)
        assert r.returncode == 0, f"QEMU_CPU={cpu}: {r.stderr[-3000:]}"
        folder = Path(r.stdout.split("run folder")[-1].split()[0])
        out[cpu] = {**json.loads((folder / "run.json").read_text()), "folder": folder}
    return out


@pytest.fixture(scope="module")
def class_runs(arm64_image, tiny) -> dict[str, dict]:
    """One run per numerics class, on the first CPU the golden file names for it (two at a time):
    {class: run.json + its folder}."""
    cpus = {c["emulated_cpus"][0]: name for name, c in GOLDEN["classes"].items()}
    runs: dict[str, dict] = {}
    pending = list(cpus)
    while pending:
        runs.update(run_on(tiny, pending[:2]))
        pending = pending[2:]
    return {cpus[cpu]: run for cpu, run in runs.items()}


def test_each_class_trains_its_golden_weights_recorded_as_that_class_and_emulated(class_runs):
    for name, run in class_runs.items():
        cpu = GOLDEN["classes"][name]["emulated_cpus"][0]
        assert run["platform"] == {"arch": "arm64", "numerics_class": name, "emulated": {"by": "qemu-user", "cpu": cpu}}
        assert run["image"]["hash_inputs"]["arch"] == "arm64"
        det = json.loads((run["folder"] / "determinism.json").read_text())
        assert det["cpu_capability_actual"] == "DEFAULT" and det["cpu_math"]["numerics_class"] == name
        assert det["cpu_math_pins"] == {
            "OMP_DYNAMIC": "FALSE",
            "OMP_NUM_THREADS": "1",
            "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",
        }
        report = (run["folder"] / "report.html").read_text()
        assert f'<strong id="emulated">emulated</strong> (qemu-user, CPU {cpu})' in report
        golden = GOLDEN["classes"][name]["weights_sha256"]
        assert run["summary"]["weights_sha256"] == golden, (
            f"{name}, QEMU_CPU={cpu}: weights {run['summary']['weights_sha256']}, golden {golden} "
            f"(measured on {GOLDEN['measured_on']})"
        )
    assert len({run["summary"]["weights_sha256"] for run in class_runs.values()}) == len(GOLDEN["classes"])


def test_a_rerun_on_another_cpu_of_the_same_class_is_identical(class_runs, tiny):
    neon = GOLDEN["classes"]["arm64-neon"]["emulated_cpus"]
    r = finish(reproexec("rerun", class_runs["arm64-neon"]["run_id"], "--runs-dir", "runs", cpu=neon[1], cwd=tiny))
    assert r.returncode == 0 and "identical" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]


def test_env_diff_names_the_numerics_class_as_what_changed_the_numbers(class_runs):
    a, b = class_runs["arm64-neon"]["folder"], class_runs["arm64-sve256"]["folder"]
    r = finish(reproexec("env", "diff", str(a), str(b), "--json"))
    assert r.returncode == 0, r.stderr
    diffs = {d["key"]: d for d in json.loads(r.stdout)["differences"]}
    assert diffs["run.numerics_class"]["numerics"] is True and "SVE vector length" in diffs["run.numerics_class"]["why"]
    assert (diffs["run.numerics_class"]["a"], diffs["run.numerics_class"]["b"]) == ("arm64-neon", "arm64-sve256")
    assert diffs["run.emulated"]["numerics"] is False


def test_a_rerun_on_a_cpu_of_another_class_is_refused_before_it_trains(class_runs, tiny):
    def folders() -> list[Path]:
        return sorted(p for p in (tiny / "runs").iterdir() if not p.name.startswith("."))  # not .staging

    before = folders()
    sve256 = GOLDEN["classes"]["arm64-sve256"]["emulated_cpus"][0]
    r = finish(reproexec("rerun", class_runs["arm64-neon"]["run_id"], "--runs-dir", "runs", cpu=sve256, cwd=tiny))
    assert r.returncode == 7, r.stdout + r.stderr
    assert "numerics class arm64-neon; this machine's is arm64-sve256" in r.stderr
    assert "rerun on a machine of class arm64-neon" in r.stderr
    assert folders() == before  # refused before a run folder was made
