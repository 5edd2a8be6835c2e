"""A run's phases and the one place its status is decided, without Docker or torch: a fake process
handle writes what a trainer would, and `decide` / `verdict` read every way a run can end."""

import json
import signal

import pytest
from runfixtures import write_config

from reproexec.config import load_config
from reproexec.engine import Exit
from reproexec.errors import BuildError, Interrupted
from reproexec.runs import launch
from reproexec.runs.execute import execute_run
from reproexec.runs.finish import Ending, decide, verdict
from reproexec.runs.outputs import Intake
from reproexec.runs.prepare import RunOptions


class TrainerLike:
    """What a run's process does, seen from the host: prints events, writes its outputs, exits 0."""

    id = "fake-1"

    def __init__(self, staging):
        self.staging, self.removed = staging, False

    def lines(self):
        yield '{"event": "start", "epochs": 1}'
        yield "a line a script printed"
        (self.staging / "summary.json").write_text(json.dumps({"final": {"val_acc": 0.5}, "weights_sha256": "0" * 64}))
        (self.staging / "timing.json").write_text(json.dumps({"wall_s": 0.25}))
        yield '{"event": "done"}'

    def wait(self):
        return Exit(0)

    def stop(self, timeout=10):
        raise AssertionError("a process that exited is not stopped")

    def remove(self):
        self.removed = True


def test_the_happy_path_writes_one_finished_run_folder(tmp_path, demo_snapshot, monkeypatch):
    handles = []

    def start(self, prep, run_id, run_dir, staging):
        handles.append(TrainerLike(staging))
        return handles[-1], None

    monkeypatch.setattr(launch.LocalLauncher, "start", start)
    events = []
    runs = tmp_path / "runs"
    outcome = execute_run(
        load_config(write_config(tmp_path, demo_snapshot)),
        RunOptions(runtime="local", runs_dir=runs),
        on_event=events.append,
    )
    assert outcome.status == "succeeded" and outcome.reason is None and outcome.summary["final"] == {"val_acc": 0.5}
    record = json.loads((outcome.run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["metrics"] == {"val_acc": 0.5}
    assert record["runtime"]["handle"] == "fake-1" and record["runtime"]["kind"] == "local"
    assert [p[0] for p in record["timing"]["phases_s"]] == [
        "code",
        "verify",
        "inputs",
        "start",
        "run",
        "finish",
        "other",
    ]
    assert record["timing"]["trainer_wall_s"] == 0.25
    assert {"config.yaml", "config.resolved.json", "manifest.json", "summary.json", "stdout.log", "report.html"} <= set(
        record["artifacts"]
    )
    assert (outcome.run_dir / "stdout.log").read_text().splitlines()[1] == "a line a script printed"
    assert [e["event"] for e in events] == ["start", "output", "done"]
    assert handles[0].removed and not (outcome.run_dir / ".reserve").exists()
    assert list((runs / ".staging").iterdir()) == []


def _exit_log(tmp_path, lines):
    (tmp_path / "stdout.log").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    "exit_info, log, expected",
    [
        (Exit(0), [], ("failed", "the trainer exited 0 but wrote no summary.json")),
        (
            Exit(137, oom_killed=True),
            [],
            ("failed", "out of memory: the container was killed by the kernel (raise resources.memory)"),
        ),
        (Exit(137), [], ("failed", "exit code 137: the process was killed (SIGKILL: docker kill, or out of memory)")),
        (Exit(143), [], ("failed", "exit code 143: the process was terminated (SIGTERM)")),
        (Exit(2), ["Traceback", "ValueError: bad"], ("failed", "exit code 2: ValueError: bad")),
        (
            Exit(1),
            ["OSError: [Errno 28] No space left on device"],
            (
                "failed",
                "disk full: the run could not write its outputs (exit code 1: OSError: [Errno 28] No space left on device)",
            ),
        ),
        (
            Exit(1),
            ["RuntimeError: unable to write to file </torch_12_3>: No space left on device (28)"],
            (
                "failed",
                "shared memory full: /dev/shm (resources.shm_size) could not hold what the DataLoader workers pass on "
                "(exit code 1: RuntimeError: unable to write to file </torch_12_3>: No space left on device (28)); "
                "raise resources.shm_size",
            ),
        ),
    ],
)
def test_how_a_process_exit_reads(tmp_path, exit_info, log, expected):
    assert verdict(exit_info, _exit_log(tmp_path, log), byo=False) == expected


def test_a_byo_script_needs_no_summary_and_an_error_json_gives_the_reason(tmp_path):
    assert verdict(Exit(0), tmp_path, byo=True) == ("succeeded", None)
    (tmp_path / "error.json").write_text(json.dumps({"message": "model.arch refused"}))
    assert verdict(Exit(3), tmp_path, byo=False) == ("failed", "exit code 3: model.arch refused")


@pytest.mark.parametrize(
    "ending, expected",
    [
        (Ending(problem=KeyboardInterrupt(), exit=None, started=True), ("interrupted", "stopped by SIGINT (Ctrl-C)")),
        (Ending(problem=Interrupted(signal.SIGTERM), exit=None, started=True), ("interrupted", "stopped by SIGTERM")),
        (Ending(problem=BuildError("no image"), exit=None, started=False), ("failed", "could not start: no image")),
        (
            Ending(problem=ConnectionError("engine went away"), exit=None, started=True),
            ("failed", "reproexec lost the run: ConnectionError: engine went away"),
        ),
        (
            Ending(problem=None, exit=Exit(0), started=True, intake_error=PermissionError(13, "denied")),
            ("failed", "the run's outputs could not be taken in: [Errno 13] denied"),
        ),
        (
            Ending(problem=None, exit=Exit(0), started=True, intake_error=OSError(28, "No space left on device")),
            ("failed", "disk full: [Errno 28] No space left on device"),
        ),
        (
            Ending(problem=None, exit=Exit(0), started=True, data_changes=["train/3/a.png (changed)"]),
            (
                "failed",
                "the dataset changed while the run read it (1 files: train/3/a.png (changed)): its results are not "
                "those of the verified snapshot (manifest 0123456789ab); keep the snapshot read-only and run again",
            ),
        ),
        (
            Ending(
                problem=None, exit=Exit(0), started=True, intake=Intake(refused=[{"path": "x", "why": "a hard link"}])
            ),
            ("failed", "unsafe outputs refused (1): x: a hard link; see run.json outputs.refused"),
        ),
        (
            Ending(problem=None, exit=Exit(0), started=True, report_error=OSError(28, "No space left on device")),
            ("failed", "disk full: [Errno 28] No space left on device"),
        ),
        (
            Ending(problem=None, exit=Exit(0), started=True, report_error=ValueError("a template broke")),
            ("succeeded", None),
        ),
    ],
)
def test_the_one_place_a_status_is_decided(tmp_path, ending, expected):
    (tmp_path / "summary.json").write_text("{}")
    assert decide(ending, tmp_path, byo=False, manifest_id="0123456789abcdef") == expected
