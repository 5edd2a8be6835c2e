"""The end of a run: take in what its process wrote, decide how it ended, write the last run.json.

`decide` is the one place a run's status and reason are decided, from what happened (`Ending`):
a signal, an error of reproexec's own, how the process exited, whether its outputs could be taken in
and were safe, whether the dataset changed under it, whether the report could be written. Whatever
fails while finishing, run.json still says how the run ended (`record_end`).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reproexec.engine import Exit
from reproexec.errors import Interrupted, ReproexecError
from reproexec.fsutil import is_disk_full, read_json_object, sha256_file, write_atomic
from reproexec.runs.attest import attest
from reproexec.runs.outputs import Intake, take_outputs
from reproexec.runs.record import RunJson
from reproexec.runs.store import RECORDS, RESERVE, artifact_hashes
from reproexec.runs.timing import Clock, timing

LOG_FILE = "stdout.log"


@dataclass
class Ending:
    """What happened to a run, as evidence for `decide`."""

    problem: (
        BaseException | None
    )  # what stopped reproexec's side: a signal, an error (None: the process ran to its end)
    exit: Exit | None  # how the process exited (None: it never started, or was stopped)
    started: bool  # whether the process was started at all
    intake: Intake | None = None
    intake_error: OSError | None = None
    data_changes: list[str] = field(default_factory=list)
    report_error: BaseException | None = None
    time_limit_s: float | None = None  # the process was stopped at this time limit (a smoke run's max_seconds)


def signum_of(e: BaseException | None) -> int | None:
    """The signal an exception stands for (Ctrl-C, SIGTERM), or None."""
    if isinstance(e, KeyboardInterrupt):
        return int(signal.SIGINT)
    if isinstance(e, Interrupted):
        return e.signum
    return None


def decide(ending: Ending, run_dir: Path, *, byo: bool, manifest_id: str) -> tuple[str, str | None]:
    """A run's status (succeeded | failed | interrupted) and its reason: the one place it is decided."""
    problem = ending.problem
    if problem is None and ending.intake_error is not None and is_disk_full(ending.intake_error):
        problem = ending.intake_error
    if problem is not None:
        signum = signum_of(problem)
        if signum is not None:
            return "interrupted", f"stopped by {signal.Signals(signum).name}" + (
                " (Ctrl-C)" if signum == signal.SIGINT else ""
            )
        if is_disk_full(problem):
            return "failed", f"disk full: {problem}"
        what = problem.message if isinstance(problem, ReproexecError) else f"{type(problem).__name__}: {problem}"
        return "failed", f"could not start: {what}" if not ending.started else f"reproexec lost the run: {what}"
    if ending.intake_error is not None:
        return "failed", f"the run's outputs could not be taken in: {ending.intake_error}"
    if ending.time_limit_s is not None:
        return "interrupted", f"stopped at its time limit (smoke.max_seconds = {ending.time_limit_s:g} s)"
    assert ending.exit is not None
    status, reason = verdict(ending.exit, run_dir, byo=byo)
    if status != "succeeded":
        return status, reason
    if ending.data_changes:
        changed = ending.data_changes
        return "failed", (
            f"the dataset changed while the run read it ({len(changed)} files: {', '.join(changed[:3])}"
            f"{', ...' if len(changed) > 3 else ''}): its results are not those of the verified snapshot "
            f"(manifest {manifest_id[:12]}); keep the snapshot read-only and run again"
        )
    if ending.intake is not None and ending.intake.unsafe:
        first = ending.intake.refused[0]
        return "failed", (
            f"unsafe outputs refused ({len(ending.intake.refused)}): {first['path']}: {first['why']}; see run.json outputs.refused"
        )
    if ending.report_error is not None and is_disk_full(ending.report_error):
        return "failed", f"disk full: {ending.report_error}"
    return "succeeded", None


def verdict(exit_info: Exit, run_dir: Path, *, byo: bool) -> tuple[str, str | None]:
    """How the process's own exit reads: its code, its last lines, its error.json, its summary."""
    if exit_info.oom_killed:
        return "failed", "out of memory: the container was killed by the kernel (raise resources.memory)"
    if exit_info.code != 0:
        tail = _tail(run_dir / LOG_FILE, 3)
        if any("No space left on device" in ln or "[Errno 28]" in ln for ln in tail):
            if any("/dev/shm" in ln or "/torch_" in ln or "shared memory" in ln for ln in tail):
                return "failed", (
                    f"shared memory full: /dev/shm (resources.shm_size) could not hold what the DataLoader "
                    f"workers pass on (exit code {exit_info.code}: {tail[-1]}); raise resources.shm_size"
                )
            return "failed", f"disk full: the run could not write its outputs (exit code {exit_info.code}: {tail[-1]})"
        err = read_json_object(run_dir / "error.json")
        if err and isinstance(err.get("message"), str) and err["message"]:
            return "failed", f"exit code {exit_info.code}: {err['message'][:2000]}"
        if exit_info.code == 137:
            return "failed", "exit code 137: the process was killed (SIGKILL: docker kill, or out of memory)"
        if exit_info.code == 143:
            return "failed", "exit code 143: the process was terminated (SIGTERM)"
        return "failed", f"exit code {exit_info.code}" + (f": {tail[-1][:2000]}" if tail else "")
    if not byo and read_json_object(run_dir / "summary.json") is None:
        return "failed", "the trainer exited 0 but wrote no summary.json"
    return "succeeded", None


def finish(
    prep: Any,
    record: RunJson,
    ending: Ending,
    run_dir: Path,
    staging: Path,
    *,
    owner: tuple[int, int],
    clock: Clock,
    since: float,
) -> tuple[str, str | None]:
    """Take in the outputs (untrusted), decide, render the report and write the final run.json last.
    On a full disk the room set aside when the run started is given back first, so run.json always
    says how the run ended. `since`: when finishing began (the "finish" phase of run.json timing)."""
    from reproexec.data.manifest import snapshot_changes

    byo = bool(prep.loaded.config.entrypoint)
    try:
        if staging.is_dir():
            ending.intake = take_outputs(staging, run_dir, owner=owner, reserved=RECORDS)
    except OSError as e:
        ending.intake_error = e
    if ending.exit is not None and ending.problem is None:
        ending.data_changes = snapshot_changes(prep.data_dir, prep.manifest, prep.data_state)
    status, reason = decide(ending, run_dir, byo=byo, manifest_id=prep.manifest_id)
    clock.phases["finish"] = time.perf_counter() - since  # the report and run.json follow at once
    record.timing = timing(clock, run_dir)
    _results(record, ending, run_dir, byo=byo)
    (run_dir / RESERVE).unlink(missing_ok=True)
    record.end(status, reason)
    record.artifacts = artifact_hashes(run_dir, known=ending.intake.files if ending.intake is not None else {})
    try:
        from reproexec.runs.report import render_report

        write_atomic(run_dir / "report.html", render_report(run_dir, record.to_json()))
        record.artifacts["report.html"] = sha256_file(run_dir / "report.html")
    except Exception as e:  # a report problem must never hide the run's true status
        record.report_error = f"{type(e).__name__}: {e}"
        (run_dir / "report.html").unlink(missing_ok=True)
        record.artifacts.pop("report.html", None)
        ending.report_error = e
        record.status, record.reason = decide(ending, run_dir, byo=byo, manifest_id=prep.manifest_id)
    record.write(run_dir)
    attest(run_dir, record.to_json(), prep.signer)  # after run.json: it attests run.json's facts and the files
    hand_over(run_dir, owner)
    return record.status, record.reason


def _results(record: RunJson, ending: Ending, run_dir: Path, *, byo: bool) -> None:
    """What the run produced, as run.json summarizes it (all read as untrusted output)."""
    record.exit = None if ending.exit is None else {"code": ending.exit.code, "oom_killed": ending.exit.oom_killed}
    record.outputs = ending.intake.record() if ending.intake is not None else None
    record.summary = read_json_object(
        run_dir / "summary.json"
    )  # an object, or None: a script's list is its own business
    if byo:
        from reproexec.runs.compare import read_final_metrics

        metrics, record.metrics_problem = read_final_metrics(run_dir)  # the last value of each metric the script logged
        record.metrics = metrics or None
    else:
        final = (record.summary or {}).get("final")
        record.metrics = final if isinstance(final, dict) else None
    environment = read_json_object(run_dir / "environment.json")
    if environment:
        record.environment = {k: environment.get(k) for k in ("python", "torch", "cuda", "cpu", "os", "threads")}


def record_end(run_dir: Path, record: RunJson, status: str, reason: str) -> None:
    """The last resort when finishing failed: run.json says the run ended, and why, whatever else broke."""
    record.end(status, reason)
    (run_dir / RESERVE).unlink(missing_ok=True)
    try:
        record.artifacts = artifact_hashes(run_dir)
    except OSError:
        pass
    record.write(run_dir)


def hand_over(run_dir: Path, owner: tuple[int, int]) -> None:
    """The records reproexec wrote belong to the run's owner (root running for someone else)."""
    if os.geteuid() != 0 or owner == (0, 0):
        return
    for dirpath, dirnames, filenames in os.walk(run_dir):  # never follows links; lchown never does
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), *owner)
    os.lchown(run_dir, *owner)


def _tail(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-n:]
