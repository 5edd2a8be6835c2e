"""Starting a run's process: one launcher per runtime, each deciding its paths and how it starts.

The host starts the reproexec inside a run image by a fixed interface, runtime protocol 1: the
modules and flags of `process` (`reproexec.runtime.guard`, `.train`, `.byo`), the mount points below,
the REPROEXEC_* variables of `entrypoint_env`, and the files the process leaves in its run folder.
A rerun starts the reproexec *recorded* in the image, perhaps an older one, so a change to any of
these needs a new protocol number, and the old one kept beside it.

The process sees the dataset (read-only), its resolved config (read-only) and its staging folder
(its only writable place), never the run folder. In Docker the paths are the container's mount
points; locally they are the host's own.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproexec.codebox import CODE_TAR
from reproexec.engine import ContainerSpec, Engine, Mount, RunHandle
from reproexec.env.spec import SANDBOX_GID, SANDBOX_UID
from reproexec.errors import ConfigError
from reproexec.labels import LABEL_OWNER, LABEL_RUN, LABEL_RUN_DIR, this_process
from reproexec.runs.store import RESOLVED_CONFIG

RUNTIME_PROTOCOL = 1
SUPPORTED_PROTOCOLS = (1,)
DATA_MOUNT = "/data"
RUN_MOUNT = "/run"
CONFIG_MOUNT = "/reproexec/config.json"
CODE_DIR = "/code"
WEIGHTS_MOUNT = "/weights/model.pt"
METRICS_FILE = "metrics/metrics.jsonl"  # where reproexec.track writes ($REPROEXEC_METRICS)


@dataclass(frozen=True)
class ProcessPaths:
    """Where the run's process finds things, as it sees them."""

    python: str
    run_dir: str  # its staging folder: the one place it writes
    data_dir: str
    config: str
    weights: str | None


class DockerLauncher:
    """The run in a hardened container of the run image (engine.ContainerSpec's safe defaults)."""

    kind = "docker"

    def __init__(self, engine: Engine, *, gpu: bool, user: str | None, smoke: bool = False) -> None:
        self.engine, self.gpu, self.user, self.smoke = engine, gpu, user, smoke

    def paths(self, prep: Any, run_dir: Path, staging: Path) -> ProcessPaths:
        return ProcessPaths("python", RUN_MOUNT, DATA_MOUNT, CONFIG_MOUNT, WEIGHTS_MOUNT if prep.weights else None)

    def start(self, prep: Any, run_id: str, run_dir: Path, staging: Path) -> tuple[RunHandle, str | None]:
        """Start the container; returns it and the image it runs (the run image, or its code image)."""
        cfg = prep.loaded.config
        command, env = process(prep, self.paths(prep, run_dir, staging), gpu=self.gpu, smoke=self.smoke)
        mounts = [
            Mount(str(prep.data_dir), DATA_MOUNT, read_only=True),
            Mount(str(staging), RUN_MOUNT, read_only=False),
        ]
        if not cfg.entrypoint:
            mounts.append(Mount(str(run_dir / RESOLVED_CONFIG), CONFIG_MOUNT, read_only=True))
            if prep.weights:
                mounts.append(Mount(str(prep.weights), WEIGHTS_MOUNT, read_only=True))
        environment = {**env, **prep.platform.container_env()}
        if prep.platform.emulated_cpu:  # qemu-user 7.2 shows the host's x86 text, on which torch's cpuinfo crashes
            from reproexec.runs.arch import CPUINFO_MOUNT, cpuinfo_file

            mounts.append(Mount(str(cpuinfo_file()), CPUINFO_MOUNT, read_only=True))
        run_image = prep.image.get("runtime_image") or prep.image["tag"]
        if cfg.entrypoint:
            from reproexec.env.build import build_code_image

            run_image = build_code_image(self.engine, run_image, run_dir / CODE_TAR, CODE_DIR)
        r = cfg.resources
        spec = ContainerSpec(
            image=run_image,
            command=("python", "-m", "reproexec.runtime.guard", "--", *command),
            mounts=tuple(mounts),
            environment=environment,
            user=container_user(self.user),
            workdir=CODE_DIR if cfg.entrypoint else None,
            network=False,
            gpus=self.gpu,
            pids_limit=r.pids_limit,
            shm_size=r.shm_size,
            memory=r.memory,
            cpus=r.cpus,
            cpuset=r.cpuset,
            labels={LABEL_RUN: run_id, LABEL_RUN_DIR: str(run_dir), LABEL_OWNER: json.dumps(this_process())},
            name=f"reproexec-{run_id}-{secrets.token_hex(4)}",
            guard_stdin=True,
        )
        return self.engine.start(spec), run_image


class LocalLauncher:
    """The run in a subprocess of this Python (runs/local.py): no sandbox, the same lifecycle."""

    kind = "local"

    def __init__(self, *, gpu: bool, smoke: bool = False) -> None:
        self.gpu, self.smoke = gpu, smoke

    def paths(self, prep: Any, run_dir: Path, staging: Path) -> ProcessPaths:
        weights = str(prep.weights) if prep.weights else None
        return ProcessPaths(sys.executable, str(staging), str(prep.data_dir), str(run_dir / RESOLVED_CONFIG), weights)

    def start(self, prep: Any, run_id: str, run_dir: Path, staging: Path) -> tuple[RunHandle, str | None]:
        from reproexec.runs.local import LocalRun

        cfg = prep.loaded.config
        command, env = process(prep, self.paths(prep, run_dir, staging), gpu=self.gpu, smoke=self.smoke)
        cwd = Path(prep.code.root) if cfg.entrypoint else staging  # a BYO script runs in its work tree
        return LocalRun(command, {**os.environ, **env}, cwd=cwd, cpuset=cfg.resources.cpuset), None


Launcher = DockerLauncher | LocalLauncher


def launcher_for(runtime: str, engine: Engine | None, *, gpu: bool, user: str | None, smoke: bool = False) -> Launcher:
    if runtime == "docker":
        assert engine is not None
        return DockerLauncher(engine, gpu=gpu, user=user, smoke=smoke)
    return LocalLauncher(gpu=gpu, smoke=smoke)


def process(prep: Any, paths: ProcessPaths, *, gpu: bool, smoke: bool = False) -> tuple[list[str], dict[str, str]]:
    """The run's command line and environment (runtime protocol 1), one recipe for both runtimes."""
    cfg = prep.loaded.config
    env = dict(prep.env)
    if cfg.entrypoint:
        env.update(entrypoint_env(cfg, paths.run_dir, paths.data_dir))
        command = [
            paths.python,
            "-m",
            "reproexec.runtime.byo",
            "--out",
            paths.run_dir,
            "--",
            *expand_entrypoint(cfg.entrypoint, env),
        ]
        return command, env
    command = [
        paths.python,
        "-m",
        "reproexec.runtime.train",
        "--config",
        paths.config,
        "--data",
        paths.data_dir,
        "--out",
        paths.run_dir,
        "--device",
        "cuda" if gpu else "cpu",
    ]
    if paths.weights:
        command += ["--weights", paths.weights]
    if smoke:
        command.append("--smoke")
    return command, env


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


def expand_entrypoint(command: list[str], env: dict[str, str]) -> list[str]:
    """${VAR} / $VAR in the arguments, as the process will see them ($$ is a literal $); the config
    has already refused any variable reproexec does not define."""
    return [string.Template(arg).substitute(env) for arg in command]


def container_user(user: str | None) -> str:
    """uid:gid of the run's process: never 0. Root's runs use the image's unprivileged user."""
    if user is not None:
        uid, gid = ids(user)
        if uid == 0 or gid == 0:
            raise ConfigError(
                f"--user {user}: a run never runs as root (uid or gid 0)",
                f"pass an unprivileged UID:GID, or leave --user out (root's runs use {SANDBOX_UID}:{SANDBOX_GID})",
            )
        return user
    if os.geteuid() == 0:
        return f"{SANDBOX_UID}:{SANDBOX_GID}"
    return f"{os.getuid()}:{os.getgid()}"


def ids(user: str) -> tuple[int, int]:
    uid, gid = (int(x) for x in user.split(":"))
    return uid, gid
