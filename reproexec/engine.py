"""The container engine: the only module that imports `docker`.

Everything else talks to the narrow `Engine` protocol below, so unit tests drive the core with a
small fake and integration tests run the same code against a real Docker engine. `docker` is
imported lazily, inside `DockerEngine`, so `reproexec --help` never pays for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from reproexec.errors import BuildError, EngineError

LogFn = Callable[[str], None]

_START_HINT = (
    "start a Docker engine: install it (Debian: `apt-get install docker.io`), start the daemon "
    "(`dockerd &` or `systemctl start docker`), check with `docker info`; set DOCKER_HOST if it "
    "listens elsewhere"
)


@dataclass(frozen=True)
class ContainerResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    size: int = 0
    layers: tuple[str, ...] = ()  # RootFS.Layers: the diff_ids, the same wherever the same files are
    config: Mapping[str, Any] = field(default_factory=dict)  # what a build inherits: BUILD_CONFIG_KEYS


@dataclass(frozen=True)
class Mount:
    source: str  # host path
    target: str  # container path
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """A hardened run container, as data. Defaults are the safe ones."""

    image: str
    command: tuple[str, ...]
    mounts: tuple[Mount, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None  # "uid:gid"
    workdir: str | None = None
    network: bool = False
    gpus: bool = False
    pids_limit: int = 4096
    shm_size: str = "1g"
    memory: str | None = None
    cpus: float | None = None
    cpuset: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True)
class Exit:
    code: int
    oom_killed: bool = False
    error: str = ""


class RunHandle(Protocol):
    """A started training process: a container, or a local subprocess."""

    id: str

    def lines(self) -> Iterator[str]: ...
    def wait(self) -> Exit: ...
    def stop(self, timeout: int = 10) -> None: ...
    def remove(self) -> None: ...


class Engine(Protocol):
    """What reproexec needs from a container engine, and nothing more."""

    def ping(self) -> None: ...
    def image(self, reference: str) -> ImageInfo | None: ...
    def pull(self, reference: str) -> ImageInfo: ...
    def import_rootfs(self, tar_path: Path, repository: str, tag: str, changes: Sequence[str]) -> str: ...
    def load(self, source: Path | IO[bytes]) -> list[str]: ...
    def tag(self, image_id: str, repository: str, tag: str) -> None: ...
    def remove_image(self, reference: str) -> None: ...
    def save(self, reference: str, out: IO[bytes]) -> None: ...
    def build(
        self,
        context: IO[bytes],
        *,
        tag: str | None,
        labels: Mapping[str, str],
        network_mode: str,
        on_log: LogFn | None = None,
    ) -> str: ...
    def run_capture(self, image: str, command: Sequence[str], *, network: bool = False) -> ContainerResult: ...
    def start(self, spec: ContainerSpec) -> RunHandle: ...
    def has_nvidia_runtime(self) -> bool: ...


class DockerEngine:
    """`Engine` on the Docker Engine API through docker-py."""

    def __init__(self, client: Any = None) -> None:
        import docker  # heavy; only when an engine is really needed
        import docker.errors

        self._errors = docker.errors
        if client is None:
            try:
                client = docker.from_env(timeout=600)
            except docker.errors.DockerException as e:
                raise EngineError(f"no Docker engine answers: {_first_line(e)}", _START_HINT) from None
        self._client = client
        self._api = client.api

    # -- engine --------------------------------------------------------------------------------
    def ping(self) -> None:
        try:
            self._api.ping()
        except Exception as e:  # requests' connection errors and docker's APIError alike
            raise EngineError(f"no Docker engine answers: {_first_line(e)}", _START_HINT) from None

    def info(self) -> dict[str, Any]:
        return self._api.info()

    # -- images --------------------------------------------------------------------------------
    def image(self, reference: str) -> ImageInfo | None:
        try:
            data = self._api.inspect_image(reference)
        except self._errors.ImageNotFound:
            return None
        except self._errors.APIError as e:
            if e.status_code in (400, 404):  # malformed or unknown reference
                return None
            raise EngineError(f"Docker could not inspect image {reference}: {e.explanation}") from None
        return _image_info(data)

    def pull(self, reference: str) -> ImageInfo:
        try:
            self._client.images.pull(reference)
        except self._errors.DockerException as e:
            raise EngineError(
                f"base image {reference} is not on this machine and could not be pulled: {_first_line(e)}",
                "load it from a file (`docker load -i FILE` or `reproexec base bootstrap --from-tar FILE`), "
                "or make one offline with `reproexec base bootstrap` and set env.base_image to its tag",
            ) from None
        info = self.image(reference)
        assert info is not None
        return info

    def import_rootfs(self, tar_path: Path, repository: str, tag: str, changes: Sequence[str]) -> str:
        try:
            out = self._api.import_image_from_file(
                str(tar_path), repository=repository, tag=tag, changes=list(changes)
            )
        except self._errors.APIError as e:
            raise EngineError(f"Docker could not import {tar_path}: {e.explanation}") from None
        status = out if isinstance(out, str) else json.dumps(out)
        info = self.image(f"{repository}:{tag}")
        if info is None:
            raise EngineError(f"Docker did not create {repository}:{tag} from {tar_path}: {status[-300:]}")
        return info.id

    def load(self, source: Path | IO[bytes]) -> list[str]:
        """`docker load` from a file path or a readable stream (e.g. a member of a bundle)."""
        try:
            if isinstance(source, Path):
                with open(source, "rb") as f:
                    images = self._client.images.load(f)
            else:
                images = self._client.images.load(source)
        except self._errors.DockerException as e:
            raise EngineError(f"Docker could not load the image from {source}: {_first_line(e)}") from None
        return [img.id for img in images]

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self._api.tag(image_id, repository, tag)

    def remove_image(self, reference: str) -> None:
        try:
            self._api.remove_image(reference, force=True)
        except self._errors.ImageNotFound:
            pass

    def save(self, reference: str, out: IO[bytes]) -> None:
        for chunk in self._api.get_image(reference):
            out.write(chunk)

    def build(
        self,
        context: IO[bytes],
        *,
        tag: str | None,
        labels: Mapping[str, str],
        network_mode: str,
        on_log: LogFn | None = None,
    ) -> str:
        """Build from an uncompressed tar context; return the image id. Raise BuildError with the
        log's last lines if any step fails."""
        log: list[str] = []
        image_id: str | None = None
        try:
            stream = self._api.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                labels=dict(labels),
                network_mode=network_mode,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    for line in chunk["stream"].splitlines():
                        log.append(line)
                        if on_log and line.startswith("Step "):  # one line per Dockerfile step
                            on_log(line if len(line) <= 110 else line[:107] + "...")
                if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    log.append(chunk["error"].rstrip())
                    raise BuildError(
                        f"the image build failed: {chunk['error'].strip().splitlines()[-1]}",
                        "read the build log above; the lockfile and base image must match (same Python, "
                        "same platform)",
                        details=[ln for ln in log[-25:] if ln.strip()],
                    )
        except self._errors.APIError as e:
            raise BuildError(
                f"the image build failed: {e.explanation}", details=[ln for ln in log[-25:] if ln.strip()]
            ) from None
        if image_id is None:
            raise BuildError("the image build ended without an image id", details=log[-25:])
        return image_id

    # -- containers ----------------------------------------------------------------------------
    def run_capture(self, image: str, command: Sequence[str], *, network: bool = False) -> ContainerResult:
        """Run a short command with no network and no capabilities; return its exit code and output."""
        container = self._client.containers.create(
            image,
            command=list(command),
            network_disabled=not network,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            detach=True,
        )
        try:
            container.start()
            rc = container.wait().get("StatusCode", 1)
            output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            container.remove(force=True)
        return ContainerResult(exit_code=rc, output=output)

    def has_nvidia_runtime(self) -> bool:
        runtimes = self.info().get("Runtimes") or {}
        return "nvidia" in runtimes

    def start(self, spec: ContainerSpec) -> DockerRun:
        """Create and start a hardened container: no network, no capabilities, no new privileges,
        read-only root filesystem with a private /tmp, limits on pids, memory, CPU and /dev/shm."""
        import docker.types

        device_requests = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if spec.gpus else None
        kwargs: dict[str, Any] = {}
        if spec.memory:
            kwargs["mem_limit"] = spec.memory
            kwargs["memswap_limit"] = spec.memory  # no swap: an OOM is an OOM, not a slow run
        if spec.cpus:
            kwargs["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.cpuset:
            kwargs["cpuset_cpus"] = spec.cpuset
        try:
            container = self._client.containers.create(
                spec.image,
                command=list(spec.command),
                mounts=[
                    docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts
                ],
                environment=dict(spec.environment),
                user=spec.user,
                working_dir=spec.workdir,
                network_disabled=not spec.network,
                network_mode=None if spec.network else "none",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                init=True,  # a real PID 1 forwards SIGTERM, so `stop` ends the trainer at once
                tmpfs={"/tmp": "rw,nosuid,nodev,size=1g"},
                pids_limit=spec.pids_limit,
                shm_size=spec.shm_size,
                device_requests=device_requests,
                labels=dict(spec.labels),
                name=spec.name,
                detach=True,
                **kwargs,
            )
            container.start()
        except self._errors.APIError as e:
            raise EngineError(f"Docker could not start the run container: {e.explanation}") from None
        return DockerRun(container)


class DockerRun:
    """A started run container."""

    def __init__(self, container: Any) -> None:
        self._c = container
        self.id = container.id

    def lines(self) -> Iterator[str]:
        buf = b""
        for chunk in self._c.logs(stream=True, follow=True, stdout=True, stderr=True):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.decode("utf-8", "replace")
        if buf:
            yield buf.decode("utf-8", "replace")

    def wait(self) -> Exit:
        status = self._c.wait()
        self._c.reload()
        state = self._c.attrs.get("State", {})
        return Exit(
            code=int(status.get("StatusCode", 1)),
            oom_killed=bool(state.get("OOMKilled")),
            error=(status.get("Error") or {}).get("Message", "") if isinstance(status.get("Error"), dict) else "",
        )

    def stop(self, timeout: int = 10) -> None:
        try:
            self._c.stop(timeout=timeout)
        except Exception:  # already gone
            pass

    def remove(self) -> None:
        try:
            self._c.remove(force=True)
        except Exception:
            pass


# The parts of an image's config that a build FROM it inherits and that can change what it does.
BUILD_CONFIG_KEYS = ("Entrypoint", "Cmd", "Env", "OnBuild", "Shell", "User", "WorkingDir")


def _image_info(data: Mapping[str, Any]) -> ImageInfo:
    config = data.get("Config") or {}
    return ImageInfo(
        id=data["Id"],
        tags=tuple(data.get("RepoTags") or ()),
        repo_digests=tuple(data.get("RepoDigests") or ()),
        labels=dict(config.get("Labels") or {}),
        size=int(data.get("Size") or 0),
        layers=tuple((data.get("RootFS") or {}).get("Layers") or ()),
        config={k: config[k] for k in BUILD_CONFIG_KEYS if config.get(k) not in (None, "", [])},
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:400]


def connect() -> DockerEngine:
    """A DockerEngine that has answered a ping."""
    engine = DockerEngine()
    engine.ping()
    return engine

