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
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reproexec import __version__
from reproexec.codebox import CODE_TAR, CodeState, capture_code, require_clean, write_code_tar
from reproexec.config import LoadedConfig
from reproexec.engine import ContainerSpec, Engine, Exit, Mount, RunHandle
from reproexec.errors import ConfigError, EngineError, RunError
from reproexec.runstore import (
    RUN_JSON,
    artifact_hashes,
    create_run_dir,
    make_run_id,
    now_iso,
    write_json_atomic,
    write_text_atomic,
)

Runtime = Literal["docker", "local"]
EventFn = Callable[[dict[str, Any]], None]
DATA_MOUNT = "/data"
RUN_MOUNT = "/run"
CODE_DIR = "/code"
WEIGHTS_MOUNT = "/weights/model.pt"
LOG_FILE = "stdout.log"


@dataclass(frozen=True)
class RunOptions:
    gpu: bool = False
    name: str | None = None
    runtime: Runtime = "docker"
    require_clean: bool = False
    runs_dir: Path = Path("runs")
    user: str | None = None  # uid:gid for the container; default: the invoking user's
    data_dir: Path | None = None  # dataset snapshot; default: the config's data.snapshot
    expect_image: dict[str, Any] | None = None  # rerun: the recorded image (tag, content hash, inputs)
    expect_dockerfile: str | None = None
    code_tar: Path | None = None  # rerun of a BYO run: its code.tar instead of the work tree

@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    run_dir: Path
    status: str
    reason: str | None
    summary: dict[str, Any]

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass
class Prepared:
    """Everything checked and decided before a run folder exists."""

    loaded: LoadedConfig
    code: CodeState
    data_dir: Path
    manifest: Any
    manifest_id: str
    image: dict[str, Any] | None
    dockerfile: str | None
    env: dict[str, str]
    fingerprint: str
    weights: Path | None = None  # the pinned weights file, verified on the host
    # BYO runs in Docker: the work-tree files that go into code.tar, or (rerun) the code.tar to copy
    code_rels: list[str] | None = None
    code_tar: Path | None = None


def check_options(loaded: LoadedConfig, opts: RunOptions) -> None:
    """Refusals that need neither the engine nor the data (the CLI calls this before connecting)."""
    cfg = loaded.config
    if opts.gpu and cfg.env.flavour != "cuda" and opts.runtime == "docker":
        raise ConfigError(
            f"--gpu needs a CUDA image, but {loaded.path} has env.flavour = {cfg.env.flavour!r}",
            "set env.flavour: cuda, or drop --gpu",
        )


def prepare_run(loaded: LoadedConfig, opts: RunOptions, engine: Engine | None, on_log: Callable[[str], None]) -> Prepared:
    from reproexec.data.manifest import verify_snapshot
    from reproexec.runtime.seeding import pinned_environment

    cfg = loaded.config
    check_options(loaded, opts)
    code = capture_code(loaded.base_dir, exclude=[opts.runs_dir])
    if opts.require_clean:
        require_clean(code)
    code_rels, code_tar = _byo_code(loaded, opts, code) if cfg.entrypoint else (None, None)
    if code_tar is not None:  # a BYO rerun runs the original's code.tar: that is its code state
        from reproexec.wheels import sha256_file

        patch = code_tar.parent / "code.patch"
        code = CodeState(
            kind="code.tar",
            root=str(code_tar.parent),
            tree_sha256=sha256_file(code_tar),
            patch=patch.read_text(encoding="utf-8") if patch.is_file() else "",
        )

    # Data box: full sha256 verification before anything starts.
    data_dir = (opts.data_dir or loaded.resolve(cfg.data.snapshot)).resolve()
    manifest_path = loaded.resolve(cfg.data.manifest) if cfg.data.manifest else None
    on_log(f"verifying dataset {data_dir}")
    report = verify_snapshot(data_dir, manifest_path)
    report.raise_for_problems()
    manifest = report.manifest  # the one just verified, not the file read again
    assert manifest is not None
    weights = _verified_weights(loaded)

    image: dict[str, Any] | None = None
    dockerfile = None
    if opts.runtime == "docker":
        assert engine is not None
        if opts.gpu and not engine.has_nvidia_runtime():  # before a long CUDA image build
            raise EngineError(
                "--gpu was given but this Docker engine has no NVIDIA runtime",
                "install the NVIDIA driver and nvidia-container-toolkit, run "
                "`nvidia-ctk runtime configure --runtime=docker`, restart dockerd; or run without --gpu",
            )
        image, dockerfile = _ensure_image(loaded, opts, engine, on_log)

    env = pinned_environment(cfg)
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "config": cfg.resolved(),
                "manifest_id": report.manifest_id,
                "image": image["content_hash"] if image else "local",
                "commit": code.commit or code.tree_sha256,
                "patch": code.patch_sha256 if code.patch else None,
                "env": env,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    return Prepared(
        loaded, code, data_dir, manifest, report.manifest_id, image, dockerfile, env, fingerprint, weights,
        code_rels, code_tar,
    )  # fmt: skip


def _byo_code(loaded: LoadedConfig, opts: RunOptions, code: CodeState) -> tuple[list[str] | None, Path | None]:
    """What goes into a BYO run's code.tar (Docker runtime): the work tree's files, checked now, or
    (rerun) the original run's code.tar, checked now. A local BYO run runs in the work tree itself."""
    from reproexec.codebox import read_code_tar, work_tree_files

    if opts.code_tar is not None:
        if opts.runtime != "docker":
            raise ConfigError(
                "a bring-your-own run is rerun in Docker only (its code comes from the run's code.tar)",
                "drop --runtime local",
            )
        read_code_tar(opts.code_tar)  # refuse a bad one before any run folder exists
        return None, opts.code_tar
    if opts.runtime != "docker":
        return None, None
    runs = loaded.resolve(loaded.config.output.runs_dir)
    return work_tree_files(code, exclude=[runs, opts.runs_dir]), None


def _verified_weights(loaded: LoadedConfig) -> Path | None:
    """The pinned weights file, checked against model.weights.sha256 before anything starts."""
    ref = loaded.config.model.weights
    if ref is None:
        return None
    from reproexec.wheels import sha256_file

    path = loaded.resolve(ref.path)
    if not path.is_file():
        raise ConfigError(f"model.weights.path {path} does not exist", "point it at a local state_dict file (never downloaded)")
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise ConfigError(
            f"model.weights: {path} has sha256 {actual}, but the config pins {ref.sha256}",
            "use the pinned file, or update model.weights.sha256 if the new file is intended",
        )
    return path


def _ensure_image(
    loaded: LoadedConfig, opts: RunOptions, engine: Engine, on_log: Callable[[str], None]
) -> tuple[dict[str, Any], str]:
    """Build or reuse the run image; for a rerun, the recorded image or an identical rebuild."""
    from reproexec.build import build_image, plan_build
    from reproexec.imagespec import input_differences

    expected = opts.expect_image
    if expected:
        info = engine.image(expected["tag"])
        if info is not None:  # still here, or loaded from a --with-image bundle
            on_log(f"image {expected['tag']} (the recorded one, reused)")
            return {**expected, "id": info.id, "reused": True}, opts.expect_dockerfile or ""
    plan = plan_build(loaded, engine, gpu=opts.gpu, on_log=on_log)
    if expected and plan.content_hash != expected["content_hash"]:
        raise RunError(
            f"the rebuilt image is not the recorded one (content hash {plan.content_hash[:12]}, recorded "
            f"{expected['content_hash'][:12]}); nothing was run",
            "bring the recorded image (`reproexec export --with-image`), or make the inputs listed above match "
            "(same base image id, same reproexec version)",
            details=input_differences(expected.get("hash_inputs") or {}, plan.inputs),
        )
    result = build_image(plan, engine, on_log=on_log)
    on_log(f"image {result.tag} ({'cached' if result.cached else 'built'})")
    image = {
        "tag": result.tag,
        "id": result.image_id,
        "content_hash": plan.content_hash,
        "hash_inputs": plan.inputs,
        "base": {"reference": plan.spec.base.reference, "id": plan.spec.base.image_id},
        "pip_freeze": result.freeze,
    }
    return image, plan.dockerfile


def execute_run(
    loaded: LoadedConfig,
    opts: RunOptions,
    *,
    engine: Engine | None = None,
    on_event: EventFn = lambda e: None,
    on_log: Callable[[str], None] = lambda s: None,
) -> RunOutcome:
    cfg = loaded.config
    prep = prepare_run(loaded, opts, engine, on_log)
    arch = "custom" if cfg.entrypoint else cfg.model.arch
    run_id, run_dir = create_run_dir(opts.runs_dir, make_run_id(arch, opts.name or cfg.name, prep.fingerprint))
    _hand_over(run_dir, opts.user)
    record = _initial_record(run_id, prep, opts)
    try:
        _write_inputs(run_dir, prep)
        write_json_atomic(run_dir / RUN_JSON, record)
        handle = _start(prep, opts, run_dir, engine)
    except BaseException as e:
        _finish(run_dir, record, "failed", f"could not start: {e}", None, owner=opts.user)
        raise
    record["runtime"]["handle"] = handle.id
    write_json_atomic(run_dir / RUN_JSON, record)

    status, reason = "failed", None
    exit_info: Exit | None = None
    try:
        with _sigterm_as_interrupt():
            _stream(handle, run_dir / LOG_FILE, on_event)
            exit_info = handle.wait()
    except KeyboardInterrupt:
        on_log("interrupted: stopping the run")
        handle.stop()
        status, reason = "interrupted", "stopped by the user (Ctrl-C / SIGTERM)"
    except Exception as e:  # e.g. the engine went away mid-run: say so in run.json, then report it
        handle.stop()
        handle.remove()
        _finish(run_dir, record, "failed", f"reproexec lost the run: {type(e).__name__}: {e}", None, owner=opts.user)
        raise
    finally:
        handle.remove()

    summary = _read_json(run_dir / "summary.json")
    if exit_info is not None:
        status, reason = _verdict(exit_info, run_dir, summary, byo=bool(cfg.entrypoint))
    _finish(run_dir, record, status, reason, exit_info, owner=opts.user)
    return RunOutcome(run_id=run_id, run_dir=run_dir, status=status, reason=reason, summary=summary or {})


def _initial_record(run_id: str, prep: Prepared, opts: RunOptions) -> dict[str, Any]:
    cfg = prep.loaded.config
    return {
        "schema": 1,
        "run_id": run_id,
        "status": "running",
        "reason": None,
        "started_at": now_iso(),
        "finished_at": None,
        "reproexec_version": __version__,
        "owner": {"host": socket.gethostname(), "pid": os.getpid()},
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
            "user": opts.user or _invoking_user(),
            "handle": None,
        },
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


def _write_inputs(run_dir: Path, prep: Prepared) -> None:
    """What went in: config (as written and resolved), lockfile, Dockerfile, manifest, code patch."""
    cfg = prep.loaded.config
    shutil.copyfile(prep.loaded.path, run_dir / "config.yaml")
    write_json_atomic(run_dir / "config.resolved.json", cfg.resolved())
    lock = prep.loaded.resolve(cfg.env.lockfile)
    if lock.is_file():
        shutil.copyfile(lock, run_dir / "requirements.lock")
    if prep.dockerfile:
        write_text_atomic(run_dir / "Dockerfile", prep.dockerfile)
    write_text_atomic(run_dir / "manifest.json", prep.manifest.to_json())
    if prep.code.patch:
        write_text_atomic(run_dir / "code.patch", prep.code.patch)
    if prep.code_tar is not None:
        shutil.copyfile(prep.code_tar, run_dir / CODE_TAR)
    elif prep.code_rels is not None:
        write_code_tar(Path(prep.code.root), prep.code_rels, run_dir / CODE_TAR)


def _start(prep: Prepared, opts: RunOptions, run_dir: Path, engine: Engine | None) -> RunHandle:
    cfg = prep.loaded.config
    env = dict(prep.env)
    if opts.runtime == "local":
        from reproexec.localrun import LocalRun

        if cfg.entrypoint:
            env.update(REPROEXEC_RUN_DIR=str(run_dir), REPROEXEC_DATA_DIR=str(prep.data_dir))
            command = [sys.executable, "-m", "reproexec.runtime.byo", "--out", str(run_dir), "--", *cfg.entrypoint]
            cwd = Path(prep.code.root)
        else:
            command = _trainer_command(
                sys.executable, str(run_dir / "config.resolved.json"), str(prep.data_dir), str(run_dir), opts.gpu
            )
            if prep.weights:
                command += ["--weights", str(prep.weights)]
            cwd = run_dir
        return LocalRun(command, {**os.environ, **env}, cwd=cwd)

    assert engine is not None and prep.image is not None
    image = prep.image["tag"]
    workdir = None
    if cfg.entrypoint:
        image = code_image(engine, prep, run_dir)
        workdir = CODE_DIR
        env.update(REPROEXEC_RUN_DIR=RUN_MOUNT, REPROEXEC_DATA_DIR=DATA_MOUNT)
        command = ["python", "-m", "reproexec.runtime.byo", "--out", RUN_MOUNT, "--", *cfg.entrypoint]
    else:
        command = _trainer_command("python", f"{RUN_MOUNT}/config.resolved.json", DATA_MOUNT, RUN_MOUNT, opts.gpu)
    mounts = [Mount(str(prep.data_dir), DATA_MOUNT, read_only=True), Mount(str(run_dir), RUN_MOUNT, read_only=False)]
    if prep.weights and not cfg.entrypoint:
        mounts.append(Mount(str(prep.weights), WEIGHTS_MOUNT, read_only=True))
        command += ["--weights", WEIGHTS_MOUNT]
    r = cfg.resources
    spec = ContainerSpec(
        image=image,
        command=tuple(command),
        mounts=tuple(mounts),
        environment=env,
        user=opts.user or _invoking_user(),
        workdir=workdir,
        network=False,
        gpus=opts.gpu,
        pids_limit=r.pids_limit,
        shm_size=r.shm_size,
        memory=r.memory,
        cpus=r.cpus,
        cpuset=r.cpuset,
        labels={"org.reproexec.run-id": run_dir.name},
    )
    return engine.start(spec)


def _trainer_command(python: str, config: str, data: str, out: str, gpu: bool) -> list[str]:
    return [python, "-m", "reproexec.runtime.train", "--config", config, "--data", data, "--out", out,
            "--device", "cuda" if gpu else "cpu"]  # fmt: skip


def code_image(engine: Engine, prep: Prepared, run_dir: Path) -> str:
    """The run image plus the run's code.tar at /code (bring-your-own entrypoint). Built from the
    code.tar in the run folder, for a run and its reruns alike: the same bytes, the same image."""
    import dataclasses
    import tempfile

    from reproexec.context import ContextEntry, write_context
    from reproexec.wheels import cache_dir

    from reproexec.codebox import read_code_tar

    assert prep.image is not None
    entries = [dataclasses.replace(e, arcname=f"code/{e.arcname}") for e in read_code_tar(run_dir / CODE_TAR)]
    dockerfile = f"FROM {prep.image['tag']}\nCOPY code/ {CODE_DIR}/\nWORKDIR {CODE_DIR}\n"
    entries.append(ContextEntry.from_bytes("Dockerfile", dockerfile.encode()))
    digest = hashlib.sha256(json.dumps([[e.arcname, e.sha256] for e in sorted(entries, key=lambda e: e.arcname)]).encode()).hexdigest()
    tag = f"reproexec-code:{digest}"
    if engine.image(tag) is None:
        (cache_dir() / "tmp").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache_dir() / "tmp") as ctx:
            write_context(entries, ctx)
            ctx.seek(0)
            engine.build(ctx, tag=tag, labels={"org.reproexec.code-sha256": digest}, network_mode="none")
    return tag


def _stream(handle: RunHandle, log_path: Path, on_event: EventFn) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        for line in handle.lines():
            log.write(line + "\n")
            log.flush()
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    event = None
                if isinstance(event, dict) and "event" in event:
                    on_event(event)
                    continue
            on_event({"event": "output", "line": line})


def _verdict(exit_info: Exit, run_dir: Path, summary: dict | None, *, byo: bool) -> tuple[str, str | None]:
    if exit_info.oom_killed:
        return "failed", "out of memory: the container was killed by the kernel (raise resources.memory)"
    if exit_info.code != 0:
        err = _read_json(run_dir / "error.json")
        if err and err.get("message"):
            return "failed", f"exit code {exit_info.code}: {err['message']}"
        if exit_info.code == 137:
            return "failed", "exit code 137: the process was killed (SIGKILL: docker kill, or out of memory)"
        if exit_info.code == 143:
            return "failed", "exit code 143: the process was terminated (SIGTERM)"
        tail = _tail(run_dir / LOG_FILE, 1)
        return "failed", f"exit code {exit_info.code}" + (f": {tail[0]}" if tail else "")
    if not byo and summary is None:
        return "failed", "the trainer exited 0 but wrote no summary.json"
    return "succeeded", None


def _finish(
    run_dir: Path, record: dict[str, Any], status: str, reason: str | None, exit_info: Exit | None, *, owner: str | None
) -> None:
    """Collect artifacts, render the report, and write the final run.json last."""
    record.update(status=status, reason=reason, finished_at=now_iso())
    record["exit"] = None if exit_info is None else {"code": exit_info.code, "oom_killed": exit_info.oom_killed}
    summary = _read_json(run_dir / "summary.json")
    record["metrics"] = (summary or {}).get("final")
    record["summary"] = summary
    environment = _read_json(run_dir / "environment.json")
    if environment:
        record["environment"] = {k: environment.get(k) for k in ("python", "torch", "cuda", "cpu", "os", "threads")}
    try:
        from reproexec.report import render_report

        write_text_atomic(run_dir / "report.html", render_report(run_dir, record))
    except Exception as e:  # a report problem must never hide the run's true status
        record["report_error"] = f"{type(e).__name__}: {e}"
    record["artifacts"] = artifact_hashes(run_dir)
    write_json_atomic(run_dir / RUN_JSON, record)
    _hand_over(run_dir, owner)


def _hand_over(run_dir: Path, user: str | None) -> None:
    """With an explicit --user (root running for someone else), the whole run folder is theirs."""
    if not user or os.geteuid() != 0:
        return
    uid, gid = (int(x) for x in user.split(":"))
    for p in [run_dir, *run_dir.rglob("*")]:
        os.lchown(p, uid, gid)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _invoking_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _tail(path: Path, n: int) -> list[str]:
    try:
        return [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()][-n:]
    except OSError:
        return []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

