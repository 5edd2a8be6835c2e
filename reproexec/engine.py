"""The container engine: the only module that imports `docker`.

Everything else talks to the narrow `Engine` protocol below, so unit tests drive the core with a
small fake and integration tests run the same code against a real Docker engine. `docker` is
imported lazily, inside `DockerEngine`, so `reproexec --help` never pays for it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from reproexec.errors import BuildError, EngineError, ReproexecError

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
    created: int = 0  # seconds since the epoch
    layers: tuple[str, ...] = ()  # RootFS.Layers: the diff_ids, the same wherever the same files are
    config: Mapping[str, Any] = field(default_factory=dict)  # what a build inherits: BUILD_CONFIG_KEYS


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    state: str  # created | running | exited | ...
    labels: Mapping[str, str] = field(default_factory=dict)


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
    # Keep the container's stdin attached to this process; the in-container guard stops the run
    # when it closes (this process died). Only for commands run under reproexec.runtime.guard.
    guard_stdin: bool = False


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
    def remove(self) -> None: ...  # removes the container / reaps the process; idempotent


class Engine(Protocol):
    """What reproexec needs from a container engine, and nothing more."""

    def ping(self) -> None: ...
    def image(self, reference: str) -> ImageInfo | None: ...
    def pull(self, reference: str) -> ImageInfo: ...
    def import_rootfs(self, tar_path: Path, repository: str, tag: str, changes: Sequence[str]) -> str: ...
    def load(self, source: Path | IO[bytes] | Iterable[bytes]) -> list[str]: ...
    def tag(self, image_id: str, repository: str, tag: str) -> None: ...
    def remove_image(self, reference: str, *, force: bool = True) -> None: ...
    def list_images(self, *, repository: str | None = None, dangling: bool = False, label: str | None = None) -> list[ImageInfo]: ...
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
    def serve_folder(self, image: str, folder: Path, *, port: int, outside: bool, labels: Mapping[str, str]) -> AbstractContextManager[str]: ...
    def run_capture(self, image: str, command: Sequence[str], *, network: bool = False) -> ContainerResult: ...
    def start(self, spec: ContainerSpec) -> RunHandle: ...
    def containers(self, label: str) -> list[ContainerInfo]: ...
    def remove_container(self, ref: str) -> None: ...
    def has_nvidia_runtime(self) -> bool: ...
    def cpu_count(self) -> int: ...


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

    def load(self, source: Path | IO[bytes] | Iterable[bytes]) -> list[str]:
        """`docker load` from a file path, a readable stream or an iterator of chunks (streamed);
        returns the ids (or names) Docker reports."""
        try:
            if isinstance(source, Path):
                with open(source, "rb") as f:
                    images = self._client.images.load(f)
            else:
                images = self._client.images.load(source)
        except self._errors.DockerException as e:
            raise EngineError(f"Docker could not load the image from {source}: {_first_line(e)}") from None
        except Exception as e:  # e.g. the stream's producer refused the archive
            if isinstance(e, ReproexecError):
                raise
            raise EngineError(f"Docker could not load the image: {type(e).__name__}: {_first_line(e)}") from None
        return [img.id for img in images]

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self._api.tag(image_id, repository, tag)

    def remove_image(self, reference: str, *, force: bool = True) -> None:
        """Remove an image (and its untagged parents). Without force, Docker refuses one a
        container uses; that refusal is raised as EngineError."""
        try:
            self._api.remove_image(reference, force=force)
        except self._errors.ImageNotFound:
            pass
        except self._errors.APIError as e:
            raise EngineError(f"Docker did not remove {reference}: {e.explanation}") from None

    def list_images(self, *, repository: str | None = None, dangling: bool = False, label: str | None = None) -> list[ImageInfo]:
        """Images of a repository (all its tags), or untagged leaf images (dangling), optionally
        only those carrying `label`."""
        filters: dict[str, Any] = {}
        if dangling:
            filters["dangling"] = True
        if label:
            filters["label"] = label
        try:
            found = self._api.images(name=repository, filters=filters or None)
        except self._errors.APIError as e:
            raise EngineError(f"Docker could not list images: {e.explanation}") from None
        return [
            ImageInfo(id=i["Id"], tags=tuple(t for t in (i.get("RepoTags") or ()) if t != "<none>:<none>"),
                      repo_digests=tuple(i.get("RepoDigests") or ()), labels=dict(i.get("Labels") or {}),
                      size=int(i.get("Size") or 0), created=int(i.get("Created") or 0))
            for i in found
        ]  # fmt: skip

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
        log's last lines if any step fails. `network_mode` is "none" or what `serve_folder` gives."""
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

    @contextlib.contextmanager
    def serve_folder(self, image: str, folder: Path, *, port: int, outside: bool, labels: Mapping[str, str]) -> Iterator[str]:
        """Serve `folder` read-only over HTTP on 127.0.0.1:`port` from a container of `image` (its
        python3); yields the `network_mode` that puts a build's steps in that container's network
        namespace, where the server is their localhost. Without `outside` the namespace has no
        interface but loopback: the build reaches the server and nothing else. The server runs
        unprivileged (no capabilities, read-only root, uid 65534) and is removed afterwards."""
        container = None
        try:
            host_config = self._api.create_host_config(
                binds={str(folder): {"bind": "/srv", "mode": "ro"}},
                network_mode=None if outside else "none",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                pids_limit=64,
            )
            container = self._api.create_container(
                image,
                command=["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", "/srv"],
                user="65534:65534",
                environment={"PYTHONUNBUFFERED": "1"},
                labels=dict(labels),
                host_config=host_config,
            )["Id"]
            self._api.start(container)
            deadline = time.monotonic() + 30
            while b"Serving HTTP" not in self._api.logs(container):
                state = self._api.inspect_container(container)["State"]
                if not state.get("Running") or time.monotonic() > deadline:
                    out = self._api.logs(container).decode("utf-8", "replace").strip()
                    raise EngineError(f"the build's wheel server did not start: {out[-500:] or state.get('Error') or 'no output'}")
                time.sleep(0.05)
        except BaseException as e:
            self._remove_quietly(container)
            if isinstance(e, self._errors.APIError):
                raise EngineError(f"Docker could not start the build's wheel server: {e.explanation}") from None
            raise
        try:
            yield f"container:{container}"
        finally:
            self._remove_quietly(container)

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

    def cpu_count(self) -> int:
        """CPUs of the Docker host (what --cpuset-cpus may name: 0..N-1)."""
        return int(self.info().get("NCPU") or 0)

    def start(self, spec: ContainerSpec) -> DockerRun:
        """Create and start a hardened container: no network, no capabilities, no new privileges,
        read-only root filesystem with a private /tmp, limits on pids, memory, CPU and /dev/shm.

        The container's stdin stays attached to this process for the whole run (`DockerRun.close`
        lets go of it). If this process dies, even by SIGKILL, the engine closes that stdin and the
        guard inside the container (reproexec.runtime.guard) stops the run by itself.
        A container that exists but could not be started (an error, Ctrl-C, SIGTERM) is removed
        again by its name before the exception goes on."""
        import docker.types

        api = self._api
        device_requests = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if spec.gpus else None
        limits: dict[str, Any] = {}
        if spec.memory:
            limits["mem_limit"] = spec.memory
            limits["memswap_limit"] = spec.memory  # no swap: an OOM is an OOM, not a slow run
        if spec.cpus:
            limits["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.cpuset:
            limits["cpuset_cpus"] = spec.cpuset
        host_config = api.create_host_config(
            mounts=[docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts],
            network_mode=None if spec.network else "none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            init=True,  # a real PID 1 forwards SIGTERM, so `stop` ends the run at once
            tmpfs={"/tmp": "rw,nosuid,nodev,size=1g"},
            pids_limit=spec.pids_limit,
            shm_size=spec.shm_size,
            device_requests=device_requests,
            **limits,
        )
        created: str | None = None
        try:
            created = api.create_container(
                spec.image,
                command=list(spec.command),
                environment=dict(spec.environment),
                user=spec.user,
                working_dir=spec.workdir,
                network_disabled=not spec.network,
                labels=dict(spec.labels),
                name=spec.name,
                stdin_open=spec.guard_stdin,  # with detach=False this also sets StdinOnce
                detach=False,
                host_config=host_config,
            )["Id"]
            stdin = api.attach_socket(created, params={"stdin": 1, "stream": 1}) if spec.guard_stdin else None
            api.start(created)
        except BaseException as e:
            self._remove_quietly(created or spec.name)
            if isinstance(e, self._errors.APIError):
                raise EngineError(f"Docker could not start the run container: {e.explanation}") from None
            raise
        return DockerRun(api, created, stdin)

    def containers(self, label: str) -> list[ContainerInfo]:
        """Every container (running or not) that carries `label`, with its labels and state."""
        try:
            found = self._api.containers(all=True, filters={"label": label})
        except self._errors.APIError as e:
            raise EngineError(f"Docker could not list containers: {e.explanation}") from None
        return [ContainerInfo(id=c["Id"], state=c.get("State", ""), labels=dict(c.get("Labels") or {})) for c in found]

    def remove_container(self, ref: str) -> None:
        """Stop and remove a container at once (SIGKILL); a missing one is not an error."""
        self._remove_quietly(ref)

    def _remove_quietly(self, ref: str | None) -> None:
        if not ref:
            return
        try:
            self._api.remove_container(ref, force=True)
        except Exception:  # already gone (or never created)
            pass


# A line longer than this is cut: the host keeps no unbounded buffer of what a container prints.
MAX_LINE_BYTES = 1 << 20


class DockerRun:
    """A started run container (low-level API: no extra inspect per call)."""

    def __init__(self, api: Any, container_id: str, stdin: Any = None) -> None:
        self._api = api
        self.id = container_id
        self._stdin = stdin

    def lines(self) -> Iterator[str]:
        buf = b""
        for chunk in self._api.logs(self.id, stream=True, follow=True, stdout=True, stderr=True):
            buf += chunk
            while b"\n" in buf or len(buf) > MAX_LINE_BYTES:
                cut = buf.find(b"\n")
                if cut < 0 or cut > MAX_LINE_BYTES:
                    line, buf = buf[:MAX_LINE_BYTES], buf[MAX_LINE_BYTES:]
                else:
                    line, buf = buf[:cut], buf[cut + 1 :]
                yield line.decode("utf-8", "replace")
        if buf:
            yield buf.decode("utf-8", "replace")

    def wait(self) -> Exit:
        status = self._api.wait(self.id)
        state = (self._api.inspect_container(self.id) or {}).get("State", {})
        error = status.get("Error")
        return Exit(
            code=int(status.get("StatusCode", 1)),
            oom_killed=bool(state.get("OOMKilled")),
            error=error.get("Message", "") if isinstance(error, dict) else "",
        )

    def stop(self, timeout: int = 10) -> None:
        try:
            self._api.stop(self.id, timeout=timeout)
        except Exception:  # already gone
            pass

    def remove(self) -> None:
        self.close()
        try:
            self._api.remove_container(self.id, force=True)
        except Exception:
            pass

    def close(self) -> None:
        """Let go of the container's stdin (the run is over, or being stopped on purpose)."""
        if self._stdin is not None:
            try:
                self._stdin.close()
            except Exception:
                pass
            self._stdin = None


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

