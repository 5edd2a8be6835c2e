"""`reproexec run`: config → image → verified data → hardened container → one run folder.

Everything that can fail before training (config, code state, image build, dataset verification,
GPU support) is checked before the run folder exists, so a refused run leaves nothing behind.
From the moment the folder exists, `run.json` tells the truth: running, then succeeded, failed
(with the reason) or interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import string
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reproexec._version import version
from reproexec.env.build import build_code_image
from reproexec.codebox import (
    CODE_TAR,
    CodeState,
    capture_code,
    code_of_tar,
    require_clean,
    write_code_tar,
)
from reproexec.config import LoadedConfig
from reproexec.env.context import ContextEntry
from reproexec.engine import ContainerSpec, Engine, Exit, Mount, RunHandle
from reproexec.errors import (
    ConfigError,
    DataError,
    EngineError,
    Interrupted,
    ReproexecError,
    RunError,
    signals_raise,
)
from reproexec.fsutil import canonical_sha256, is_disk_full, read_json_object, sha256_file, write_atomic, write_json_atomic
from reproexec.labels import (
    BUNDLE_REPOSITORY,
    LABEL_BUILD_SERVER,
    LABEL_OWNER,
    LABEL_RUN,
    LABEL_RUN_DIR,
    owner_is_gone,
    this_process,
)
from reproexec.runs.outputs import Intake, make_staging, remove_tree, take_outputs
from reproexec.env.recipe import RECIPE_DIR, write_recipe
from reproexec.runs.store import (
    RECORDS,
    RESERVE,
    RUN_JSON,
    RUN_SCHEMA,
    STAGING,
    artifact_hashes,
    create_run_dir,
    make_run_id,
    now_iso,
)

Runtime = Literal["docker", "local"]
EventFn = Callable[[dict[str, Any]], None]
DATA_MOUNT = "/data"
RUN_MOUNT = "/run"
CONFIG_MOUNT = "/reproexec/config.json"
CODE_DIR = "/code"
WEIGHTS_MOUNT = "/weights/model.pt"
LOG_FILE = "stdout.log"
METRICS_FILE = "metrics/metrics.jsonl"  # where reproexec.track writes ($REPROEXEC_METRICS)
MAX_LOG_BYTES = int(os.environ.get("REPROEXEC_MAX_LOG_BYTES", 256 * 1024**2))
RESERVE_BYTES = 256 * 1024  # set aside at the start, given back for the final run.json
# The image's unprivileged user (Dockerfile.cpu `USER`): root's runs run as this, never as uid 0.
SANDBOX_UID = SANDBOX_GID = 10001


# How the host starts the reproexec inside a run image (the modules and flags of `_process`, the mount
# points, the REPROEXEC_* variables, the files it leaves). A rerun starts the *recorded* reproexec in
# the recorded image, so a change to any of these needs a new number, and the old one kept.
RUNTIME_PROTOCOL = 1
SUPPORTED_PROTOCOLS = (1,)
# Variables a run's recorded environment may set when it is replayed (what any reproexec pins).
_PINNED_VAR = re.compile(r"^(ATEN_CPU_CAPABILITY|CUBLAS_WORKSPACE_CONFIG|PYTHONHASHSEED|(DNNL|MKL|OMP|ONEDNN|KMP|OPENBLAS)_[A-Z0-9_]+)$")


@dataclass(frozen=True)
class Replay:
    """What a run must reuse instead of deciding afresh (a rerun; a sweep's cells share an image)."""

    image: dict[str, Any] | None = None  # the recorded image (tag, content hash, hash inputs): reused or rebuilt to it
    source: Path | None = None  # the folder that holds its recipe/ (a run folder; a sweep's image folder)
    code_tar: Path | None = None  # a bring-your-own run's code.tar, instead of the work tree
    config: dict[str, Any] | None = None  # the resolved config the run's process gets, as the recorded reproexec wrote it
    environment: dict[str, str] | None = None  # the pinned variables, as recorded


@dataclass(frozen=True)
class RunOptions:
    gpu: bool = False
    name: str | None = None
    runtime: Runtime = "docker"
    require_clean: bool = False
    runs_dir: Path = Path("runs")
    user: str | None = None  # uid:gid for the container; default: the invoking user's
    data_dir: Path | None = None  # dataset snapshot; default: the config's data.snapshot
    replay: Replay = Replay()


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


class Clock:
    """Where a run's time goes: named phases of the host's own work, in seconds (run.json `timing`)."""

    def __init__(self, *, since: float | None = None) -> None:
        """since: a time.perf_counter() mark from before this clock (the command line's first import,
        reproexec.cli.STARTED): the time from it to now is recorded as the phase "startup". Not the
        process's start: a wrapper script that `exec`s reproexec shares its process with whatever the
        script did before."""
        self.phases: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self.age0 = max(0.0, self.t0 - since) if since is not None else None
        if self.age0 is not None:
            self.phases["startup"] = self.age0

    def wall(self) -> float:
        return time.perf_counter() - self.t0 + (self.age0 or 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class Prepared:
    """Everything checked and decided before a run folder exists."""

    loaded: LoadedConfig
    code: CodeState
    data_dir: Path
    manifest: Any
    manifest_id: str
    data_state: dict[str, Any]  # the verified files' stat, to check the snapshot did not change under the run
    image: dict[str, Any] | None
    recipe: list[ContextEntry] | None  # the image's build context, kept in the run folder (recipe/)
    resolved: dict[str, Any]  # config.resolved.json: what the run's process reads
    env: dict[str, str]
    fingerprint: str
    weights: Path | None = None  # the pinned weights file, verified on the host
    # BYO runs in Docker: the work-tree files that go into code.tar, or (rerun) the code.tar to copy
    code_rels: list[str] | None = None
    code_tar: Path | None = None
    clock: Clock | None = None


def check_options(loaded: LoadedConfig, opts: RunOptions) -> None:
    """Refusals that need neither the engine nor the data (the CLI calls this before connecting)."""
    cfg = loaded.config
    if opts.gpu and cfg.env.flavour != "cuda" and opts.runtime == "docker":
        raise ConfigError(
            f"--gpu needs a CUDA image, but {loaded.path} has env.flavour = {cfg.env.flavour!r}",
            "set env.flavour: cuda, or drop --gpu",
        )


def prepare_run(loaded: LoadedConfig, opts: RunOptions, engine: Engine | None, on_log: Callable[[str], None],
                clock: Clock | None = None) -> Prepared:  # fmt: skip
    from reproexec.data.manifest import verify_snapshot
    from reproexec.runtime.seeding import check_cpu_level, pinned_environment

    clock = clock or Clock()
    cfg = loaded.config
    check_options(loaded, opts)
    check_store(opts.runs_dir)
    if opts.runtime == "local":
        check_cpu_level(cfg)  # in Docker the host's CPU is the engine's too: checked below, before a build
    with clock.phase("code"):
        code = capture_code(loaded.base_dir, exclude=[opts.runs_dir])
        if opts.require_clean:
            require_clean(code)
        code_rels, code_tar = _byo_code(loaded, opts, code) if cfg.entrypoint else (None, None)
    if code_tar is not None:  # a BYO rerun runs the original's code.tar: that is its code state
        code = code_of_tar(code_tar)

    # Data box: full sha256 verification before anything starts.
    data_dir = (opts.data_dir or loaded.resolve(cfg.data.snapshot)).resolve()
    manifest_path = loaded.resolve(cfg.data.manifest) if cfg.data.manifest else None
    on_log(f"verifying dataset {data_dir}")
    with clock.phase("verify"):
        report = verify_snapshot(data_dir, manifest_path)
    report.raise_for_problems()
    manifest = report.manifest  # the one just verified, not the file read again
    assert manifest is not None
    data_state = dataset_state(data_dir, manifest)  # to tell, when the run ends, whether it read these files
    if not cfg.entrypoint:
        check_classes(cfg, data_dir)
    check_host(cfg, opts, engine)
    weights = _verified_weights(loaded)

    image: dict[str, Any] | None = None
    recipe = None
    if opts.runtime == "docker":
        assert engine is not None
        check_cpu_level(cfg)  # a CPU without the pinned level is refused before a long build
        if opts.gpu and not engine.has_nvidia_runtime():  # before a long CUDA image build
            raise EngineError(
                "--gpu was given but this Docker engine has no NVIDIA runtime",
                "install the NVIDIA driver and nvidia-container-toolkit, run "
                "`nvidia-ctk runtime configure --runtime=docker`, restart dockerd; or run without --gpu",
            )
        with clock.phase("image"):
            image, recipe = _ensure_image(loaded, opts, engine, on_log)

    env = replayed_environment(opts.replay.environment) if opts.replay.environment else pinned_environment(cfg)
    resolved = opts.replay.config if opts.replay.config is not None else cfg.resolved()
    fingerprint = canonical_sha256({
        "config": resolved,
        "manifest_id": report.manifest_id,
        "image": image["content_hash"] if image else "local",
        "commit": code.commit or code.tree_sha256,
        "patch": code.patch_sha256 if code.patch else None,
        "env": env,
    })
    return Prepared(
        loaded, code, data_dir, manifest, report.manifest_id, data_state, image, recipe, resolved, env, fingerprint,
        weights, code_rels, code_tar, clock,
    )  # fmt: skip


def dataset_state(root: Path, manifest: Any) -> dict[str, tuple[int, int, int, int] | None]:
    """Size, mtime, ctime and inode of every file of a verified snapshot: a file written or replaced
    after verification changes its ctime (which no one but root can set back)."""
    out: dict[str, tuple[int, int, int, int] | None] = {}
    for f in manifest.files:
        try:
            st = os.stat(root / f.relpath, follow_symlinks=False)
            out[f.relpath] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        except OSError:
            out[f.relpath] = None
    return out


def dataset_changes(root: Path, manifest: Any, before: Mapping[str, Any]) -> list[str]:
    """What changed in the snapshot since it was verified: files written, replaced, removed or added."""
    from reproexec.data.hashing import walk
    from reproexec.data.manifest import RESERVED_NAMES

    now = dataset_state(root, manifest)
    changed = [rel for rel, state in before.items() if now.get(rel) != state]
    added = [rel for rel in walk(str(root), manifest.excludes, RESERVED_NAMES).files if rel not in before]
    return [f"{rel} (changed)" for rel in changed] + [f"{rel} (added)" for rel in added]


def replayed_environment(recorded: Mapping[str, Any]) -> dict[str, str]:
    """A recorded run's pinned variables, to hand its process exactly what the recorded reproexec did
    (a newer one may pin more, or otherwise). Only variables that pin the math libraries, Python's
    hash seed or cuBLAS: anything else in an altered run.json is refused, not passed on."""
    bad = [k for k, v in recorded.items() if not (isinstance(k, str) and _PINNED_VAR.match(k) and isinstance(v, str)
                                                   and len(v) < 200 and v.isprintable())]  # fmt: skip
    if bad:
        raise RunError(
            f"run.json randomness.environment sets {', '.join(repr(k) for k in bad[:5])}, which no reproexec pins",
            "the run folder was altered; do not use it",
        )
    return dict(recorded)


def check_classes(cfg: Any, data_dir: Path) -> None:
    """model.num_classes against the classes the verified snapshot holds, as the trainer will count
    them (imagefolder: the folders under train_dir, none of them empty, and every val_dir class among
    them; cifar10: ten), so a run that would fail on its data fails before its folder exists."""
    from reproexec.data.manifest import class_folders

    d = cfg.data
    if d.format == "cifar10":
        classes = [str(i) for i in range(10)]
    else:
        classes = class_folders(data_dir, d.train_dir)
        if not classes:
            raise ConfigError(
                f"data.train_dir = {d.train_dir!r}: the snapshot has no class folders there",
                f"put the training images in {d.train_dir}/<class name>/ and snapshot again, or fix data.train_dir",
            )
        unknown = sorted(set(class_folders(data_dir, d.val_dir)) - set(classes)) if d.val_dir else []
        if unknown:
            raise DataError(
                f"{d.val_dir}/ has classes that {d.train_dir}/ does not: {', '.join(unknown[:12])}",
                f"every class in {d.val_dir}/ needs training images in {d.train_dir}/<class>/; take a new snapshot",
            )
    if len(classes) != cfg.model.num_classes:
        shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
        raise ConfigError(
            f"model.num_classes = {cfg.model.num_classes}, but the dataset has {len(classes)} classes ({shown})",
            f"set model.num_classes: {len(classes)}",
        )


def check_host(cfg: Any, opts: RunOptions, engine: Engine | None) -> None:
    """resources.cpus and resources.cpuset against the CPUs where the run will run."""
    r = cfg.resources
    if opts.runtime == "docker" and engine is not None:
        cpus, where = set(range(engine.cpu_count())), "the Docker host"
    else:
        cpus, where = set(os.sched_getaffinity(0)), "this process"
    missing = sorted(r.cpu_list() - cpus)
    if missing:
        raise ConfigError(
            f"resources.cpuset = {r.cpuset!r} names CPU {', '.join(map(str, missing[:8]))}, which {where} does not have "
            f"(it has {_ranges(sorted(cpus))})",
            f"use CPUs from {_ranges(sorted(cpus))}, or leave resources.cpuset out",
        )
    if r.cpus is not None and r.cpus > len(cpus):
        raise ConfigError(
            f"resources.cpus = {r.cpus}, but {where} has {len(cpus)} CPUs",
            f"use at most {len(cpus)}, or leave resources.cpus out",
        )


def _ranges(cpus: list[int]) -> str:
    out, start = [], None
    for i, c in enumerate(cpus):
        if start is None:
            start = c
        if i + 1 == len(cpus) or cpus[i + 1] != c + 1:
            out.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ",".join(out) or "none"


def _byo_code(loaded: LoadedConfig, opts: RunOptions, code: CodeState) -> tuple[list[str] | None, Path | None]:
    """What goes into a BYO run's code.tar (Docker runtime): the work tree's files, checked now, or
    (rerun) the original run's code.tar, checked now. A local BYO run runs in the work tree itself."""
    from reproexec.codebox import read_code_tar, work_tree_files

    if opts.replay.code_tar is not None:
        if opts.runtime != "docker":
            raise ConfigError(
                "a bring-your-own run is rerun in Docker only (its code comes from the run's code.tar)",
                "drop --runtime local",
            )
        read_code_tar(opts.replay.code_tar)  # refuse a bad one before any run folder exists
        return None, opts.replay.code_tar
    if opts.runtime != "docker":
        return None, None
    # The run store in use, and a default `runs/` beside the config, are results, not code.
    return work_tree_files(code, exclude=[opts.runs_dir, loaded.base_dir / "runs"]), None


def _verified_weights(loaded: LoadedConfig) -> Path | None:
    """The pinned weights file, checked against model.weights.sha256 before anything starts."""
    ref = loaded.config.model.weights
    if ref is None:
        return None
    path = loaded.resolve(ref.path)
    if not path.exists():
        raise ConfigError(f"model.weights.path {path} does not exist", "point it at a local state_dict file (never downloaded)")
    if not path.is_file():
        raise ConfigError(f"model.weights.path {path} is not a regular file (a folder, device or FIFO)",
                          "point it at a local state_dict file (never downloaded)")  # fmt: skip
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise ConfigError(
            f"model.weights: {path} has sha256 {actual}, but the config pins {ref.sha256}",
            "use the pinned file, or update model.weights.sha256 if the new file is intended",
        )
    return path


def _ensure_image(loaded: LoadedConfig, opts: RunOptions, engine: Engine,
                  on_log: Callable[[str], None]) -> tuple[dict[str, Any], list[ContextEntry] | None]:  # fmt: skip
    """Build or reuse the run image, and its recipe. A rerun (or a sweep's cell) reuses the recorded
    image if this machine has it, else rebuilds it from the recorded recipe (recipe.py): the same
    tag, with the recorded reproexec inside, whichever reproexec runs this."""
    from reproexec.env.build import build_image, image_record, plan_build
    from reproexec.env.recipe import plan_from_recipe, recipe_entries

    expected, source = opts.replay.image, opts.replay.source
    if expected:
        protocol = expected.get("runtime_protocol", 1)
        if protocol not in SUPPORTED_PROTOCOLS:
            raise RunError(
                f"the recorded image runs reproexec's in-container side by protocol {protocol!r}; this reproexec "
                f"({version()}) starts protocol {', '.join(map(str, SUPPORTED_PROTOCOLS))}",
                "rerun with a newer reproexec (run.json reproexec_version names the one that made it)",
            )
        found = _recorded_image(engine, expected)
        if found is not None:
            tag, image_id = found
            on_log(f"image {tag} (the recorded one, reused)")
            recipe = recipe_entries(source, expected, source=f"run {source.name}") if source is not None else None
            return {**expected, "id": image_id, "reused": True, "runtime_image": tag}, recipe
        if source is None:
            raise RunError(f"image {expected['tag']} is not on this machine and nothing records how to rebuild it")
        plan = plan_from_recipe(expected, source, engine, source=f"run {source.name}", on_log=on_log)
    else:
        plan = plan_build(loaded, engine, gpu=opts.gpu, on_log=on_log)
    result = build_image(plan, engine, on_log=on_log)
    on_log(f"image {result.tag} ({'cached' if result.cached else 'built'})")
    image = {**image_record(plan, result), "runtime_protocol": expected.get("runtime_protocol", 1) if expected else RUNTIME_PROTOCOL}
    return image, plan.context


def _recorded_image(engine: Engine, expected: dict[str, Any]) -> tuple[str, str] | None:
    """The tag under which this machine has the recorded image: built here (its labels checked), or
    loaded from a --with-image bundle (reproexec-bundle:, its id the recorded one)."""
    from reproexec.env.build import check_built_here

    info = engine.image(expected["tag"])
    if info is not None:
        check_built_here(info, expected["tag"], expected["content_hash"], expected.get("hash_inputs") or {})
        return expected["tag"], info.id
    loaded = f"{BUNDLE_REPOSITORY}:{expected['content_hash']}"
    info = engine.image(loaded)
    if info is not None and info.id == expected.get("id"):
        return loaded, info.id
    return None


def execute_run(
    loaded: LoadedConfig,
    opts: RunOptions,
    *,
    engine: Engine | None = None,
    on_event: EventFn = lambda e: None,
    on_log: Callable[[str], None] = lambda s: None,
    clock: Clock | None = None,
) -> RunOutcome:
    """Prepare (nothing is written if that fails), then run in a fresh run folder whose run.json
    tells the truth at every moment. SIGINT/SIGTERM at any point end as `interrupted` with no
    container left; the outcome says which signal (the CLI exits 128 + N). `clock` collects where
    the time goes (run.json `timing`)."""
    with signals_raise():
        clock = clock or Clock()
        if engine is not None:
            with clock.phase("reap"):
                for line in reap_orphans(engine):
                    on_log(line)
        prep = prepare_run(loaded, opts, engine, on_log, clock)
        return _execute(prep, opts, engine, on_event, on_log)


def _execute(prep: Prepared, opts: RunOptions, engine: Engine | None, on_event: EventFn,
             on_log: Callable[[str], None]) -> RunOutcome:  # fmt: skip
    cfg = prep.loaded.config
    arch = "custom" if cfg.entrypoint else cfg.model.arch
    record = _initial_record(prep, opts)
    run_id, run_dir = open_run_folder(opts.runs_dir, make_run_id(arch, opts.name or cfg.name, prep.fingerprint), record)
    staging = opts.runs_dir / STAGING / run_id
    clock = prep.clock or Clock()
    handle: RunHandle | None = None
    exit_info: Exit | None = None
    problem: BaseException | None = None
    try:
        with clock.phase("inputs"):
            make_staging(staging, _ids(record["runtime"]["user"]), ("metrics",) if cfg.entrypoint else ())
            if cfg.entrypoint:  # the command as its process sees it, ${VAR}s expanded
                record["command"] = expand_entrypoint(cfg.entrypoint, _entrypoint_env(prep, opts, staging))
            _write_inputs(run_dir, prep)
        with clock.phase("start"):
            handle, record["runtime"]["image"] = _start(prep, opts, run_id, run_dir, staging, engine)
            record["runtime"]["handle"] = handle.id
            write_json_atomic(run_dir / RUN_JSON, record)
        with clock.phase("run"):  # the process's life: start-up, training, exit
            record["log"] = _stream(handle, run_dir / LOG_FILE, on_event)
            exit_info = handle.wait()
    except BaseException as e:  # noqa: BLE001 - every way out is recorded, then re-raised or returned
        problem = e
    t_finish = time.perf_counter()
    status, reason = "failed", "reproexec stopped while finishing the run"
    try:
        with _signals_held():  # from here on the run is wrapped up whatever arrives
            if problem is not None:
                on_log(f"stopping the run: {_describe(problem)}")
            try:
                if handle is not None:
                    if exit_info is None:
                        handle.stop()
                    handle.remove()
                status, reason, intake = _conclude(prep, run_dir, staging, exit_info, problem, record)
                clock.phases["finish"] = time.perf_counter() - t_finish  # the report and run.json follow at once
                record["timing"] = _timing(clock, run_dir)
                status, reason = _finish(run_dir, record, status, reason, exit_info, intake, owner=_ids(record["files_owner"]))
            except Exception as e:  # a bug, or output that broke a reader: run.json still says how the run ended
                status, reason = "failed", f"reproexec could not finish the run: {type(e).__name__}: {e}"
                _record_end(run_dir, record, status, reason)
                problem = problem or e
            finally:
                remove_tree(staging)
    except (KeyboardInterrupt, Interrupted) as late:  # delivered once finishing was done: the run ended as recorded
        on_log(f"{_describe(late)} arrived while the run was being finished; it ended as run.json says ({status})")
    if problem is not None and _signum(problem) is None and not is_disk_full(problem):
        raise problem  # the run says failed with the reason; the error (or a bug's traceback) says it too
    return RunOutcome(run_id=run_id, run_dir=run_dir, status=status, reason=reason,
                      summary=record.get("summary") or {}, signum=_signum(problem))  # fmt: skip


def _conclude(prep: Prepared, run_dir: Path, staging: Path, exit_info: Exit | None, problem: BaseException | None,
              record: dict[str, Any]) -> tuple[str, str | None, Intake | None]:  # fmt: skip
    """Take in what the run wrote (as untrusted input) and decide its status and reason."""
    intake: Intake | None = None
    intake_error: OSError | None = None
    try:
        if staging.is_dir():
            intake = take_outputs(staging, run_dir, owner=_ids(record["files_owner"]), reserved=RECORDS)
    except OSError as e:
        intake_error = e
    if intake_error is not None and is_disk_full(intake_error) and problem is None:
        problem = intake_error
    if problem is not None:
        signum = _signum(problem)
        if signum is not None:
            return "interrupted", f"stopped by {signal.Signals(signum).name}" + (
                " (Ctrl-C)" if signum == signal.SIGINT else ""), intake  # fmt: skip
        if is_disk_full(problem):
            return "failed", f"disk full: {problem}", intake
        what = problem.message if isinstance(problem, ReproexecError) else f"{type(problem).__name__}: {problem}"
        if record["runtime"]["handle"] is None:
            return "failed", f"could not start: {what}", intake
        return "failed", f"reproexec lost the run: {what}", intake
    assert exit_info is not None
    if intake_error is not None:
        return "failed", f"the run's outputs could not be taken in: {intake_error}", intake
    status, reason = _verdict(exit_info, run_dir, byo=bool(prep.loaded.config.entrypoint))
    changed = dataset_changes(prep.data_dir, prep.manifest, prep.data_state)
    if changed and status == "succeeded":
        status, reason = "failed", (
            f"the dataset changed while the run read it ({len(changed)} files: {', '.join(changed[:3])}"
            f"{', ...' if len(changed) > 3 else ''}): its results are not those of the verified snapshot "
            f"(manifest {prep.manifest_id[:12]}); keep the snapshot read-only and run again"
        )
    if intake is not None and intake.unsafe and status == "succeeded":
        first = intake.refused[0]
        status, reason = "failed", (
            f"unsafe outputs refused ({len(intake.refused)}): {first['path']}: {first['why']}; see run.json outputs.refused"
        )
    return status, reason, intake


def _timing(clock: Clock, run_dir: Path) -> dict[str, Any]:
    """Where the time went: the host's phases, the trainer's own (timing.json), and what is neither."""
    wall = clock.wall()
    phases = [[k, round(v, 3)] for k, v in clock.phases.items()]  # in the order they happened
    phases.append(["other", round(max(0.0, wall - sum(clock.phases.values())), 3)])
    trainer = read_json_object(run_dir / "timing.json") or {}
    out: dict[str, Any] = {"phases_s": phases, "wall_s": round(wall, 3)}
    trainer_wall = trainer.get("wall_s")
    if isinstance(trainer_wall, (int, float)):
        out["trainer_wall_s"] = round(float(trainer_wall), 3)
        out["outside_trainer_s"] = round(wall - float(trainer_wall), 3)
        out["process_overhead_s"] = round(clock.phases.get("run", 0.0) - float(trainer_wall), 3)  # start-up + exit
    return out


def _describe(e: BaseException) -> str:
    signum = _signum(e)
    if signum is not None:
        return signal.Signals(signum).name
    return f"{type(e).__name__}: {e}"


def _signum(e: BaseException | None) -> int | None:
    if isinstance(e, KeyboardInterrupt):
        return int(signal.SIGINT)
    if isinstance(e, Interrupted):
        return e.signum
    return None


def open_run_folder(runs_dir: Path, run_id: str, record: dict[str, Any]) -> tuple[str, Path]:
    """Claim the run's folder, write its first run.json and set aside room for the last one.

    If the disk cannot hold even that, the folder is removed again and the run never starts."""
    run_id, run_dir = create_run_dir(runs_dir, run_id)
    record["run_id"] = run_id
    try:
        write_json_atomic(run_dir / RUN_JSON, record)
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
    return run_id, run_dir


STORE_HINT = "point --runs-dir (or REPROEXEC_RUNS) at a folder you can write"


def check_store(runs_dir: Path) -> None:
    """The run store can take a run folder (or be made where it is missing): checked before an image
    is built or data verified, and without creating anything."""
    probe = runs_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        what = "the run store" if probe == runs_dir else f"the run store {runs_dir} cannot be made: its parent"
        raise RunError(f"{what} {probe} is not a folder this user can write", STORE_HINT)


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


def _initial_record(prep: Prepared, opts: RunOptions) -> dict[str, Any]:
    cfg = prep.loaded.config
    return {
        "schema": RUN_SCHEMA,
        "run_id": None,  # set when the folder is claimed
        "status": "running",
        "reason": None,
        "started_at": now_iso(),
        "finished_at": None,
        "reproexec_version": version(),
        "owner": this_process(),
        "config": {"path": str(prep.loaded.path), "name": cfg.name, "sha256": _sha(prep.loaded.path.read_bytes())},
        "code": prep.code.record(),
        "data": {
            "snapshot": str(prep.data_dir),
            "manifest_id": prep.manifest_id,
            "files": prep.manifest.count,
            "bytes": prep.manifest.total_bytes,
        },
        "image": prep.image,
        "runtime": {
            "kind": opts.runtime,
            "gpu": opts.gpu,
            "user": container_user(opts.user),  # who the run's process is
            "container": None,
            "handle": None,
        },
        "files_owner": opts.user or f"{os.getuid()}:{os.getgid()}",  # who the run folder belongs to
        "randomness": {
            "seed": cfg.seed,
            "determinism": cfg.determinism.model_dump(),
            "environment": prep.env,
        },
        "resources": cfg.resources.model_dump(),
        "weights": {"path": str(prep.weights), "sha256": cfg.model.weights.sha256} if prep.weights else None,
        "entrypoint": cfg.entrypoint,
        "fingerprint": prep.fingerprint,
    }


def container_user(user: str | None) -> str:
    """uid:gid of the run's process: never 0. Root's runs use the image's unprivileged user."""
    if user is not None:
        uid, gid = _ids(user)
        if uid == 0 or gid == 0:
            raise ConfigError(
                f"--user {user}: a run never runs as root (uid or gid 0)",
                "pass an unprivileged UID:GID, or leave --user out (root's runs use 10001:10001)",
            )
        return user
    if os.geteuid() == 0:
        return f"{SANDBOX_UID}:{SANDBOX_GID}"
    return f"{os.getuid()}:{os.getgid()}"


def _ids(user: str) -> tuple[int, int]:
    uid, gid = (int(x) for x in user.split(":"))
    return uid, gid


def _write_inputs(run_dir: Path, prep: Prepared) -> None:
    """What went in: config (as written and resolved), lockfile, Dockerfile, manifest, code patch."""
    cfg = prep.loaded.config
    write_atomic(run_dir / "config.yaml", prep.loaded.path.read_bytes())
    write_json_atomic(run_dir / "config.resolved.json", prep.resolved)
    lock = prep.loaded.resolve(cfg.env.lockfile)
    if lock.is_file():
        write_atomic(run_dir / "requirements.lock", lock.read_bytes())
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


def _process(prep: Prepared, opts: RunOptions, run_dir: Path, staging: Path) -> tuple[list[str], dict[str, str]]:
    """The run's command line and environment, one recipe for both runtimes: in Docker the paths are
    the container's mount points, locally the host's own."""
    cfg = prep.loaded.config
    local = opts.runtime == "local"
    python = sys.executable if local else "python"
    out, data = (str(staging), str(prep.data_dir)) if local else (RUN_MOUNT, DATA_MOUNT)
    env = dict(prep.env)
    if cfg.entrypoint:
        env.update(_entrypoint_env(prep, opts, staging))
        return [python, "-m", "reproexec.runtime.byo", "--out", out, "--", *expand_entrypoint(cfg.entrypoint, env)], env
    config = str(run_dir / "config.resolved.json") if local else CONFIG_MOUNT
    command = [python, "-m", "reproexec.runtime.train", "--config", config, "--data", data, "--out", out,
               "--device", "cuda" if opts.gpu else "cpu"]  # fmt: skip
    if prep.weights:
        command += ["--weights", str(prep.weights) if local else WEIGHTS_MOUNT]
    return command, env


def _start(prep: Prepared, opts: RunOptions, run_id: str, run_dir: Path, staging: Path,
           engine: Engine | None) -> tuple[RunHandle, str | None]:  # fmt: skip
    """Start the run's process; returns it and the image it runs in (None: local). It sees the
    dataset (read-only), its resolved config (read-only) and the staging folder (its only writable
    place); never the run folder."""
    cfg = prep.loaded.config
    command, env = _process(prep, opts, run_dir, staging)
    if opts.runtime == "local":
        from reproexec.runs.local import LocalRun

        cwd = Path(prep.code.root) if cfg.entrypoint else staging
        return LocalRun(command, {**os.environ, **env}, cwd=cwd, cpuset=cfg.resources.cpuset), None

    assert engine is not None and prep.image is not None
    mounts = [Mount(str(prep.data_dir), DATA_MOUNT, read_only=True), Mount(str(staging), RUN_MOUNT, read_only=False)]
    if not cfg.entrypoint:
        mounts.append(Mount(str(run_dir / "config.resolved.json"), CONFIG_MOUNT, read_only=True))
        if prep.weights:
            mounts.append(Mount(str(prep.weights), WEIGHTS_MOUNT, read_only=True))
    run_image = prep.image.get("runtime_image") or prep.image["tag"]
    image = build_code_image(engine, run_image, run_dir / CODE_TAR, CODE_DIR) if cfg.entrypoint else run_image
    r = cfg.resources
    spec = ContainerSpec(
        image=image,
        command=("python", "-m", "reproexec.runtime.guard", "--", *command),
        mounts=tuple(mounts),
        environment=env,
        user=container_user(opts.user),
        workdir=CODE_DIR if cfg.entrypoint else None,
        network=False,
        gpus=opts.gpu,
        pids_limit=r.pids_limit,
        shm_size=r.shm_size,
        memory=r.memory,
        cpus=r.cpus,
        cpuset=r.cpuset,
        labels={LABEL_RUN: run_id, LABEL_RUN_DIR: str(run_dir), LABEL_OWNER: json.dumps(this_process())},
        name=f"reproexec-{run_id}-{secrets.token_hex(4)}",
        guard_stdin=True,
    )
    return engine.start(spec), image


def entrypoint_env(cfg: Any, run_dir: str, data_dir: str) -> dict[str, str]:
    """What a bring-your-own command's process is told (config.ENTRYPOINT_VARS and the seeding hook's)."""
    return {
        "REPROEXEC_RUN_DIR": run_dir,
        "REPROEXEC_DATA_DIR": data_dir,
        "REPROEXEC_SEED": str(cfg.seed),
        "REPROEXEC_METRICS": f"{run_dir}/{METRICS_FILE}",
        "REPROEXEC_DETERMINISM": cfg.determinism.mode,
        "REPROEXEC_SEED_HOOK": "1" if cfg.determinism.seed_entrypoint else "0",
    }


def _entrypoint_env(prep: Prepared, opts: RunOptions, staging: Path) -> dict[str, str]:
    if opts.runtime == "docker":
        return entrypoint_env(prep.loaded.config, RUN_MOUNT, DATA_MOUNT)
    return entrypoint_env(prep.loaded.config, str(staging), str(prep.data_dir))


def expand_entrypoint(command: list[str], env: dict[str, str]) -> list[str]:
    """${VAR} / $VAR in the arguments, as the process will see them ($$ is a literal $); the config
    has already refused any variable reproexec does not define."""
    return [string.Template(arg).substitute(env) for arg in command]


def _stream(handle: RunHandle, log_path: Path, on_event: EventFn) -> dict[str, Any]:
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


def _verdict(exit_info: Exit, run_dir: Path, *, byo: bool) -> tuple[str, str | None]:
    if exit_info.oom_killed:
        return "failed", "out of memory: the container was killed by the kernel (raise resources.memory)"
    if exit_info.code != 0:
        tail = _tail(run_dir / LOG_FILE, 3)
        if any("No space left on device" in ln or "[Errno 28]" in ln for ln in tail):
            if any("/dev/shm" in ln or "/torch_" in ln or "shared memory" in ln for ln in tail):
                return "failed", (f"shared memory full: /dev/shm (resources.shm_size) could not hold what the DataLoader "
                                  f"workers pass on (exit code {exit_info.code}: {tail[-1]}); raise resources.shm_size")  # fmt: skip
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


def _finish(run_dir: Path, record: dict[str, Any], status: str, reason: str | None, exit_info: Exit | None,
            intake: Intake | None, *, owner: tuple[int, int]) -> tuple[str, str | None]:  # fmt: skip
    """Render the report and write the final run.json last. On a full disk the room set aside when
    the run started is given back first, so run.json always says how the run ended."""
    record.update(finished_at=now_iso())
    record["exit"] = None if exit_info is None else {"code": exit_info.code, "oom_killed": exit_info.oom_killed}
    record["outputs"] = intake.record() if intake is not None else None
    summary = read_json_object(run_dir / "summary.json")  # an object, or None: a script's list is its own business
    record["summary"] = summary
    if record.get("entrypoint"):
        from reproexec.runs.compare import read_final_metrics

        metrics, problem = read_final_metrics(run_dir)  # the last value of each metric the script logged
        record["metrics"] = metrics or None
        if problem:
            record["metrics_problem"] = problem  # e.g. a line that is not JSON: the other rows were kept
    else:
        final = (summary or {}).get("final")
        record["metrics"] = final if isinstance(final, dict) else None
    environment = read_json_object(run_dir / "environment.json")
    if environment:
        record["environment"] = {k: environment.get(k) for k in ("python", "torch", "cuda", "cpu", "os", "threads")}
    (run_dir / RESERVE).unlink(missing_ok=True)
    record.update(status=status, reason=reason)
    record["artifacts"] = artifact_hashes(run_dir, known=intake.files if intake is not None else {})
    try:
        from reproexec.runs.report import render_report

        write_atomic(run_dir / "report.html", render_report(run_dir, record))
        record["artifacts"]["report.html"] = sha256_file(run_dir / "report.html")
    except Exception as e:  # a report problem must never hide the run's true status
        record["report_error"] = f"{type(e).__name__}: {e}"
        (run_dir / "report.html").unlink(missing_ok=True)
        record["artifacts"].pop("report.html", None)
        if is_disk_full(e) and status == "succeeded":
            status, reason = "failed", f"disk full: {e}"
    record.update(status=status, reason=reason)
    write_json_atomic(run_dir / RUN_JSON, record)
    _hand_over(run_dir, owner)
    return status, reason


def _record_end(run_dir: Path, record: dict[str, Any], status: str, reason: str) -> None:
    """The last resort when finishing failed: run.json says the run ended, and why, whatever else broke."""
    record.update(status=status, reason=reason, finished_at=now_iso())
    (run_dir / RESERVE).unlink(missing_ok=True)
    try:
        record["artifacts"] = artifact_hashes(run_dir)
    except OSError:
        pass
    write_json_atomic(run_dir / RUN_JSON, record)


def _hand_over(run_dir: Path, owner: tuple[int, int]) -> None:
    """The records reproexec wrote belong to the run's owner (root running for someone else)."""
    if os.geteuid() != 0 or owner == (0, 0):
        return
    for dirpath, dirnames, filenames in os.walk(run_dir):  # never follows links; lchown never does
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), *owner)
    os.lchown(run_dir, *owner)


def reap_orphans(engine: Engine) -> list[str]:
    """Remove run containers whose reproexec process is gone (killed, even by SIGKILL) and mark
    their runs interrupted. Only this host's runs: a label names the owner process by host, boot,
    pid and start time, so a reused pid is not mistaken for the owner."""
    notes: list[str] = []
    for c in engine.containers(LABEL_RUN):
        owner = _gone_owner(c.labels)
        if owner is None:
            continue
        engine.remove_container(c.id)
        run_id, run_dir = c.labels.get(LABEL_RUN, ""), Path(c.labels.get(LABEL_RUN_DIR, "/nonexistent"))
        notes.append(f"removed the container of run {run_id}: the reproexec process that ran it (pid {owner.get('pid')}) is gone")
        mark_interrupted(run_dir, c.id, owner)
    for c in engine.containers(LABEL_BUILD_SERVER):  # a build's wheel server whose build was killed
        owner = _gone_owner(c.labels)
        if owner is not None:
            engine.remove_container(c.id)
            notes.append(f"removed a build's wheel server: the reproexec process that started it (pid {owner.get('pid')}) is gone")
    return notes


def _gone_owner(labels: Mapping[str, str]) -> dict[str, Any] | None:
    """The owner a container's label names, when that process is gone; None if it lives or the label is bad."""
    try:
        owner = json.loads(labels.get(LABEL_OWNER, ""))
    except (json.JSONDecodeError, RecursionError):
        return None
    return owner if isinstance(owner, dict) and owner_is_gone(owner) else None


def mark_interrupted(run_dir: Path, container_id: str, owner: dict[str, Any]) -> None:
    """Finish a run whose owner died: run.json says interrupted, its staging folder is deleted."""
    record = read_json_object(run_dir / RUN_JSON)
    if not record or record.get("status") != "running" or record.get("owner") != owner:
        return
    if (record.get("runtime") or {}).get("handle") not in (None, container_id):
        return
    record.update(status="interrupted", finished_at=now_iso(),
                  reason=f"reproexec (pid {owner.get('pid')}) was killed; a later reproexec removed its container")
    (run_dir / RESERVE).unlink(missing_ok=True)
    record["artifacts"] = artifact_hashes(run_dir)
    write_json_atomic(run_dir / RUN_JSON, record)
    remove_tree(run_dir.parent / STAGING / run_dir.name)


def _tail(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-n:]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
