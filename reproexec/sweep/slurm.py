"""The Slurm executor: the cells go out as one job array through submitit (no hand-written sbatch
file); each array task runs `reproexec.sweep.cell.slurm_job`, which runs the cell as an ordinary
run on its node. States come back from Slurm: `squeue` while jobs are queued or running, `sacct`
once they are done.

`sacct` without slurmdbd: a cluster with `AccountingStorageType=accounting_storage/none` (no
database) but `JobCompType=jobcomp/filetxt` answers `sacct --completion` from the job-completion
file; that file knows raw job ids only, not array indices, so the raw id of each array task is
taken from `squeue` (and from the task itself, which records `SLURM_JOB_ID` in its result).

Ctrl-C: `scancel` of the sweep's array; Slurm sends SIGTERM to each running task, which stops its
container and records its run `interrupted`; the sweep waits until no job of the array is left.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reproexec.errors import ConfigError, EngineError, Interrupted
from reproexec.sweep.cell import read_result
from reproexec.sweep.spec import SlurmSection

UpdateFn = Callable[..., None]
ACTIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
}
CANCELLED = "CANCELLED"
STOP_WAIT_S = 120
_FIX = "start the cluster (on one machine: `bash scripts/slurm.sh`), check SLURM_CONF, or use --executor local"


def _cmd(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def check_slurm(section: SlurmSection) -> None:
    """Refuse before anything runs: no Slurm commands, a controller that does not answer, an unknown partition."""
    for tool in ("sbatch", "srun", "squeue", "sacct", "scancel", "scontrol"):
        if shutil.which(tool) is None:
            raise EngineError(
                f"--executor slurm: `{tool}` is not on PATH",
                "install Slurm's client commands (Debian: slurm-client); " + _FIX,
            )
    try:
        ping = _cmd(["scontrol", "ping"], timeout=20)
    except subprocess.TimeoutExpired:
        raise EngineError("--executor slurm: `scontrol ping` did not answer within 20 s", _FIX) from None
    if "is UP" not in ping.stdout:
        said = (ping.stdout + ping.stderr).strip().splitlines()
        raise EngineError(
            f"--executor slurm: the Slurm controller is not up (`scontrol ping`: {said[0] if said else 'no answer'})",
            _FIX,
        )
    if section.partition:
        parts = _cmd(["sinfo", "-h", "-o", "%R"]).stdout.split()
        if section.partition not in parts:
            raise ConfigError(
                f"slurm.partition = {section.partition!r}: no such partition on this cluster (it has: {', '.join(parts) or 'none'})",
                "set slurm.partition to one that `sinfo` lists, or remove it to use the default partition",
            )


def submit(sweep_dir: Path, keys: list[str], section: SlurmSection, job_name: str) -> dict[str, str]:
    """Submit the cells as one job array; returns key → Slurm job id ("<array id>_<index>")."""
    import submitit

    from reproexec.sweep.cell import slurm_job

    executor = submitit.SlurmExecutor(folder=sweep_dir / "slurm")
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": section.time,
        "cpus_per_task": section.cpus_per_task,
        "array_parallelism": max(1, len(keys)),
        "signal_delay_s": 30,
        # The cell runs in the batch step itself: scancel's SIGTERM reaches it once (srun would forward a
        # second one, which could cut the container's clean-up short).
        "use_srun": False,
    }
    if section.partition:
        params["partition"] = section.partition
    if section.mem:
        params["mem"] = section.mem
    if section.sbatch:
        params["additional_parameters"] = {
            k: (v if not isinstance(v, bool) else str(v).lower()) for k, v in section.sbatch.items()
        }
    executor.update_parameters(**params)
    try:
        jobs = executor.map_array(slurm_job, [str(sweep_dir)] * len(keys), keys)
    except Exception as e:  # sbatch refused (bad option, partition, limits): its message says why
        raise EngineError(
            f"sbatch refused the sweep's job array: {str(e).strip()[-800:]}",
            "check the slurm: section of the sweep file",
        ) from None
    return {k: j.job_id for k, j in zip(keys, jobs, strict=True)}


def slurm_states(array_ids: list[str]) -> dict[str, dict[str, Any]]:
    """ "<array>_<index>" → {state, raw_job_id, exit_code, source} from squeue, then sacct."""
    out: dict[str, dict[str, Any]] = {}
    if not array_ids:
        return out
    q = _cmd(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(array_ids), "-o", "%i|%A|%T"])
    for line in q.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and "_" in parts[0]:
            out[parts[0]] = {"state": parts[2], "raw_job_id": parts[1], "exit_code": None, "source": "squeue"}
    acct = _cmd(["sacct", "-X", "-n", "-P", "-o", "JobID,JobIDRaw,State,ExitCode", "-j", ",".join(array_ids)])
    if acct.returncode == 0:
        for line in acct.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4 and "_" in parts[0] and "[" not in parts[0]:
                out[parts[0]] = {
                    "state": parts[2].split()[0],
                    "raw_job_id": parts[1],
                    "exit_code": parts[3],
                    "source": "sacct",
                }
        return out
    # No accounting database: the job-completion file, by raw job id.
    raws = sorted({v["raw_job_id"] for v in out.values()} | set(array_ids))
    comp = _cmd(["sacct", "--completion", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", ",".join(raws)])
    done: dict[str, tuple[str, str]] = {}
    for line in comp.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            done[parts[0]] = (parts[1].split()[0], parts[2])
    for v in out.values():
        if v["raw_job_id"] in done and v["state"] not in ACTIVE:
            v["state"], v["exit_code"] = done[v["raw_job_id"]]
            v["source"] = "sacct --completion"
    return out


def wait_for_jobs(
    sweep_dir: Path,
    job_ids: dict[str, str],
    *,
    update: UpdateFn,
    poll_s: float,
    on_log: Callable[[str], None] = lambda s: None,
) -> bool:
    """Follow the jobs until each has a result and a final Slurm state; True when interrupted."""
    arrays = sorted({j.split("_")[0] for j in job_ids.values()})
    done: set[str] = set()
    seen_final: dict[str, int] = {}
    try:
        while len(done) < len(job_ids):
            states = slurm_states(arrays)
            for key, jid in job_ids.items():
                if key not in done and _follow(sweep_dir, key, jid, states.get(jid), update, on_log, seen_final):
                    done.add(key)
            if len(done) < len(job_ids):
                time.sleep(poll_s)
    except (KeyboardInterrupt, Interrupted):
        on_log(f"interrupted: scancel {' '.join(arrays)}; waiting for the running cells to stop")
        _cmd(["scancel", *arrays])
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:
            try:
                states = slurm_states(arrays)
                if not any(s["state"] in ACTIVE for s in states.values()):
                    break
                time.sleep(1)
            except (KeyboardInterrupt, Interrupted):
                continue
        states = slurm_states(arrays)
        for key, jid in job_ids.items():
            if key in done:
                continue
            st = states.get(jid)
            result = read_result(sweep_dir, key)
            if result is None:
                state = st["state"] if st else "unknown"
                result = {"status": "interrupted", "reason": f"cancelled (Slurm job {jid}: {state})"}
            update(key, **_fields(result), slurm=_slurm_record(jid, st, result))
        return True
    return False


def _follow(
    sweep_dir: Path,
    key: str,
    jid: str,
    st: dict[str, Any] | None,
    update: UpdateFn,
    on_log: Callable[[str], None],
    seen_final: dict[str, int],
) -> bool:
    result = read_result(sweep_dir, key)
    state = st["state"] if st else None
    if state is None and result is None:  # not (yet, or any more) known to Slurm
        seen_final[key] = seen_final.get(key, 0) + 1
        if seen_final[key] < 60:
            return False
        result = {"status": "failed", "reason": f"Slurm no longer knows job {jid} and it recorded no result"}
    elif state in ACTIVE:
        status = "pending" if state == "PENDING" else "running"
        update(key, status=status, slurm=_slurm_record(jid, st, result))
        return False
    if result is None:
        # A final state but no result yet: the result file may trail the state by a moment.
        seen_final[key] = seen_final.get(key, 0) + 1
        if seen_final[key] < 3:
            return False
        status = "interrupted" if state == CANCELLED else "failed"
        result = {
            "status": status,
            "reason": f"Slurm job {jid} ended {state} without recording a result; see {sweep_dir / 'slurm'}",
        }
    update(key, **_fields(result), slurm=_slurm_record(jid, st, result))
    on_log(
        f"cell {key}: {result['status']} (Slurm job {jid}: {state})"
        + (f": {result['reason']}" if result.get("reason") else "")
    )
    return True


def _fields(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result.get(k) for k in ("status", "reason", "run_id", "run_dir")}


def _slurm_record(jid: str, st: dict[str, Any] | None, result: dict[str, Any] | None) -> dict[str, Any]:
    raw = (st or {}).get("raw_job_id") or (((result or {}).get("slurm") or {}).get("job_id"))
    return {
        "job_id": jid,
        "raw_job_id": raw,
        "state": (st or {}).get("state"),
        "exit_code": (st or {}).get("exit_code"),
        "source": (st or {}).get("source"),
    }
