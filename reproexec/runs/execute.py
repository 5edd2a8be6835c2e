"""`reproexec run`: config → image → verified data → hardened container → one run folder.

A run is a list of phases, each a function that takes what the previous one returned:

    prepare   everything checked and decided before a run folder exists (runs/prepare.py)
    open      claim the run folder, write its first run.json (`running`), set aside room for the last
    inputs    what went in: the config as written and resolved, lockfile, recipe, manifest, code
    launch    start the run's process in its runtime (runs/launch.py)
    stream    its output into stdout.log and progress events, until it exits
    finish    take in its outputs, decide how it ended, write the last run.json (runs/finish.py)

Whatever fails before `open` leaves nothing behind. From `open` on, run.json tells the truth:
running, then succeeded, failed (with the reason) or interrupted. SIGINT and SIGTERM at any point
end as `interrupted` with no container left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproexec.codebox import CODE_TAR, write_code_tar
from reproexec.config import LoadedConfig
from reproexec.engine import Engine, Exit, RunHandle
from reproexec.env.lock import MAX_LOCK_BYTES
from reproexec.env.recipe import RECIPE_DIR, write_recipe
from reproexec.errors import Interrupted, RunError, signals_raise
from reproexec.fsutil import is_disk_full, read_bounded, write_atomic, write_json_atomic
from reproexec.runs.finish import LOG_FILE, Ending, finish, record_end, signum_of
from reproexec.runs.launch import entrypoint_env, expand_entrypoint, ids, launcher_for
from reproexec.runs.outputs import make_staging, remove_tree
from reproexec.runs.prepare import STORE_HINT, Prepared, RunOptions, prepare_run
from reproexec.runs.reap import reap_orphans
from reproexec.runs.record import RunJson, new_record
from reproexec.runs.store import RESERVE, RESOLVED_CONFIG, STAGING, create_run_dir, make_run_id
from reproexec.runs.timing import Clock

EventFn = Callable[[dict[str, Any]], None]
LogFn = Callable[[str], None]
MAX_LOG_BYTES = int(os.environ.get("REPROEXEC_MAX_LOG_BYTES", 256 * 1024**2))
RESERVE_BYTES = 256 * 1024  # set aside at the start, given back for the final run.json


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    run_dir: Path
    status: str
    reason: str | None
    summary: dict[str, Any]
    signum: int | None = None  # interrupted: the signal that stopped it (SIGINT or SIGTERM)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


def execute_run(
    loaded: LoadedConfig,
    opts: RunOptions,
    *,
    engine: Engine | None = None,
    on_event: EventFn = lambda e: None,
    on_log: LogFn = lambda s: None,
    clock: Clock | None = None,
) -> RunOutcome:
    """Prepare (nothing is written if that fails), then run in a fresh run folder whose run.json
    tells the truth at every moment; the outcome says which signal stopped it, if one did (the CLI
    exits 128 + N). `clock` collects where the time goes (run.json `timing`)."""
    with signals_raise():
        clock = clock or Clock()
        if engine is not None:
            with clock.phase("reap"):
                for line in reap_orphans(engine):
                    on_log(line)
        prep = prepare_run(loaded, opts, engine, on_log, clock)
        return run_prepared(prep, opts, engine, on_event, on_log)


def run_prepared(
    prep: Prepared,
    opts: RunOptions,
    engine: Engine | None,
    on_event: EventFn,
    on_log: LogFn,
    stop: threading.Event | None = None,
) -> RunOutcome:
    """The phases after prepare (see the module docstring). `stop`, when set from another thread,
    stops the run as Ctrl-C would (a smoke test's other run was interrupted)."""
    cfg = prep.loaded.config
    launcher = launcher_for(opts.runtime, engine, gpu=opts.gpu, user=opts.user, smoke=opts.smoke)
    record = new_record(prep, runtime=opts.runtime, gpu=opts.gpu, user=opts.user)
    arch = "custom" if cfg.entrypoint else cfg.model.arch
    run_dir = open_run_folder(opts.runs_dir, make_run_id(arch, opts.name or cfg.name, prep.fingerprint), record)
    staging = opts.runs_dir / STAGING / run_dir.name
    clock = prep.clock
    handle: RunHandle | None = None
    exit_info: Exit | None = None
    problem: BaseException | None = None
    watch = Watch(stop or threading.Event())
    try:
        if watch.stop.is_set():
            raise Interrupted(signal.SIGINT)
        with clock.phase("inputs"):
            make_staging(staging, ids(record.runtime.user), ("metrics",) if cfg.entrypoint else ())
            if cfg.entrypoint:  # the command as its process sees it, ${VAR}s expanded
                paths = launcher.paths(prep, run_dir, staging)
                record.command = expand_entrypoint(cfg.entrypoint, entrypoint_env(cfg, paths.run_dir, paths.data_dir))
            write_inputs(run_dir, prep)
        with clock.phase("start"):
            handle, record.runtime.image = launcher.start(prep, run_dir.name, run_dir, staging)
            record.runtime.handle = handle.id
            record.write(run_dir)
        with clock.phase("run"), watch.watching(handle, opts.time_limit_s):  # the process's life
            record.log = stream(handle, run_dir / LOG_FILE, on_event)
            exit_info = handle.wait()
        if watch.stopped:
            exit_info, problem = None, Interrupted(signal.SIGINT)  # stopped from outside: as Ctrl-C
    except BaseException as e:  # noqa: BLE001 - every way out is recorded, then re-raised or returned
        problem = e
    limit = opts.time_limit_s if watch.timed_out else None
    status, reason = _wrap_up(prep, record, run_dir, staging, handle, exit_info, problem, on_log, limit)
    if problem is not None and signum_of(problem) is None and not is_disk_full(problem):
        raise problem  # the run says failed with the reason; the error (or a bug's traceback) says it too
    return RunOutcome(
        run_id=run_dir.name,
        run_dir=run_dir,
        status=status,
        reason=reason,
        summary=record.summary or {},
        signum=signum_of(problem),
    )


def _wrap_up(
    prep: Prepared,
    record: RunJson,
    run_dir: Path,
    staging: Path,
    handle: RunHandle | None,
    exit_info: Exit | None,
    problem: BaseException | None,
    on_log: LogFn,
    time_limit_s: float | None,
) -> tuple[str, str | None]:
    """Stop and remove the process, then finish; with SIGINT/SIGTERM held, so the run is wrapped up
    whatever arrives. A signal that arrived meanwhile changes nothing: the run ended as recorded."""
    since = time.perf_counter()
    status, reason = "failed", "reproexec stopped while finishing the run"
    try:
        with _signals_held():
            if problem is not None:
                on_log(f"stopping the run: {_describe(problem)}")
            try:
                if handle is not None:
                    if exit_info is None:
                        handle.stop()
                    handle.remove()
                ending = Ending(problem=problem, exit=exit_info, started=handle is not None, time_limit_s=time_limit_s)
                status, reason = finish(
                    prep, record, ending, run_dir, staging, owner=ids(record.files_owner), clock=prep.clock, since=since
                )
            except Exception as e:  # a bug, or output that broke a reader: run.json still says how the run ended
                status, reason = "failed", f"reproexec could not finish the run: {type(e).__name__}: {e}"
                record_end(run_dir, record, status, reason)
                if problem is None:
                    raise
            finally:
                remove_tree(staging)
    except (KeyboardInterrupt, Interrupted) as late:  # delivered once finishing was done
        on_log(f"{_describe(late)} arrived while the run was being finished; it ended as run.json says ({status})")
    return status, reason


def open_run_folder(runs_dir: Path, run_id: str, record: RunJson) -> Path:
    """Claim the run's folder, write its first run.json and set aside room for the last one.

    If the disk cannot hold even that, the folder is removed again and the run never starts."""
    record.run_id, run_dir = create_run_dir(runs_dir, run_id)
    try:
        record.write(run_dir)
        fd = os.open(run_dir / RESERVE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
    except OSError as e:
        shutil.rmtree(run_dir, ignore_errors=True)
        if is_disk_full(e):
            free = shutil.disk_usage(runs_dir).free
            raise RunError(
                f"disk full: {runs_dir} has {free:,} bytes free, not enough to start a run; nothing was written",
                "free some space (or point --runs-dir / REPROEXEC_RUNS at a bigger disk) and run again",
            ) from None
        raise RunError(f"cannot write the run folder {run_dir}: {e.strerror or e}", STORE_HINT) from None
    return run_dir


def write_inputs(run_dir: Path, prep: Prepared) -> None:
    """What went in: config (as written and resolved), lockfile, recipe and Dockerfile, manifest, code."""
    cfg = prep.loaded.config
    write_atomic(run_dir / "config.yaml", prep.loaded.path.read_bytes())
    write_json_atomic(run_dir / RESOLVED_CONFIG, prep.resolved)
    lock = prep.loaded.resolve(cfg.env.lockfile)
    if lock.is_file():
        write_atomic(run_dir / "requirements.lock", read_bounded(lock, MAX_LOCK_BYTES))
    if prep.recipe is not None:
        write_recipe(prep.recipe, run_dir / RECIPE_DIR)
        dockerfile = next(e for e in prep.recipe if e.arcname == "Dockerfile")
        write_atomic(run_dir / "Dockerfile", dockerfile.data or b"")  # the rendered Dockerfile, for readers
    write_atomic(run_dir / "manifest.json", prep.manifest.to_json())
    if prep.code.patch:
        write_atomic(run_dir / "code.patch", prep.code.patch)
    if prep.code_tar is not None:
        shutil.copyfile(prep.code_tar, run_dir / CODE_TAR)
    elif prep.code_rels is not None:
        write_code_tar(Path(prep.code.root), prep.code_rels, run_dir / CODE_TAR)


def stream(handle: RunHandle, log_path: Path, on_event: EventFn) -> dict[str, Any]:
    """Copy the run's output to stdout.log (the host writes it; at most MAX_LOG_BYTES) and turn its
    JSON event lines into progress. Returns what run.json says about the log."""
    written = dropped = 0
    with open(log_path, "x", encoding="utf-8", errors="replace") as log:
        for line in handle.lines():
            if written + len(line) + 1 <= MAX_LOG_BYTES:
                log.write(line + "\n")
                log.flush()
                written += len(line) + 1
            else:
                dropped += 1
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    event = None
                if isinstance(event, dict) and "event" in event:
                    on_event(event)
                    continue
            on_event({"event": "output", "line": line})
    return {"bytes": written, "lines_dropped": dropped, "limit": MAX_LOG_BYTES}


class Watch:
    """Stops a run's process from outside: at its time limit (a smoke run's smoke.max_seconds), or
    when `stop` is set by another thread. Says which it did."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.timed_out = False
        self.stopped = False

    @contextmanager
    def watching(self, handle: RunHandle, seconds: float | None) -> Iterator[None]:
        done = threading.Event()
        deadline = time.monotonic() + seconds if seconds else None

        def watch() -> None:
            while not done.wait(0.2):
                if self.stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    self.stopped = self.stop.is_set()
                    self.timed_out = not self.stopped
                    handle.stop()
                    return

        watcher = threading.Thread(target=watch, name="run-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a run is wrapped up; one that arrived meanwhile is delivered after."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _describe(e: BaseException) -> str:
    signum = signum_of(e)
    return signal.Signals(signum).name if signum is not None else f"{type(e).__name__}: {e}"
