"""The container engine: the only module that imports `docker`.

Everything else talks to the narrow `Engine` protocol below, so unit tests drive the core with a
small fake and integration tests run the same code against a real Docker engine. `docker` is
imported lazily, inside `DockerEngine`, so `reproexec --help` never pays for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
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
    architecture: str = "amd64"  # the image's platform as Docker names it (amd64, arm64)


@dataclass(frozen=True)
class ContainerInfo:
    id: str
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
    def import_rootfs(
        self, tar_path: Path, repository: str, tag: str, changes: Sequence[str], *, architecture: str = "amd64"
    ) -> str: ...
    def load(self, source: Path | IO[bytes] | Iterable[bytes]) -> list[str]: ...
    def tag(self, image_id: str, repository: str, tag: str) -> None: ...
    def remove_image(self, reference: str, *, force: bool = True) -> None: ...
    def list_images(
        self, *, repository: str | None = None, dangling: bool = False, label: str | None = None
    ) -> list[ImageInfo]: ...
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
    def serve_folder(
        self, image: str, folder: Path, *, port: int, outside: bool, labels: Mapping[str, str]
    ) -> AbstractContextManager[str]: ...
    def run_capture(
        self, image: str, command: Sequence[str], *, network: bool = False, environment: Mapping[str, str] | None = None
    ) -> ContainerResult: ...
    def start(self, spec: ContainerSpec) -> RunHandle: ...
    def containers(self, label: str) -> list[ContainerInfo]: ...
    def remove_container(self, ref: str) -> None: ...
    def has_nvidia_runtime(self) -> bool: ...
    def cpu_count(self) -> int: ...


class DockerEngine:
    """`Engine` on the Docker Engine API through docker-py's low-level client (one SDK level: the
    calls map one to one to the engine's REST API and to `docker` commands)."""

    def __init__(self, client: Any = None) -> None:
        import docker  # heavy; only when an engine is really needed
        import docker.errors

        self._errors = docker.errors
        if client is None:
            try:
                client = docker.from_env(timeout=600)
            except docker.errors.DockerException as e:
                raise EngineError(f"no Docker engine answers: {_first_line(e)}", _START_HINT) from None
        self._api = client.api

    @contextlib.contextmanager
    def _failing(self, what: str, hint: str | None = None) -> Iterator[None]:
        """Docker's errors (an API error, a lost connection) as one EngineError: 'Docker could not
        <what>: <the engine's words>'. The one place that turns them into text."""
        try:
            yield
        except (self._errors.DockerException, OSError) as e:  # requests' connection errors are OSErrors
            if isinstance(e, ReproexecError):
                raise
            raise EngineError(f"Docker could not {what}: {_explanation(e)}", hint) from None

    # -- engine --------------------------------------------------------------------------------
    def ping(self) -> None:
        try:
            self._api.ping()
        except (self._errors.DockerException, OSError) as e:  # requests' connection errors are OSErrors
            raise EngineError(f"no Docker engine answers: {_explanation(e)}", _START_HINT) from None

    def info(self) -> dict[str, Any]:
        with self._failing("report its configuration"):
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
        hint = (
            "load it from a file (`docker load -i FILE` or `reproexec base bootstrap --from-tar FILE`), "
            "or make one offline with `reproexec base bootstrap` and set env.base_image to its tag"
        )
        with self._failing(f"pull base image {reference} (it is not on this machine)", hint):
            for chunk in self._api.pull(reference, stream=True, decode=True):
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise EngineError(f"Docker could not pull base image {reference}: {chunk['error']}", hint)
        info = self.image(reference)
        if info is None:
            raise EngineError(f"Docker pulled {reference} but does not have it", hint)
        return info

    def import_rootfs(
        self, tar_path: Path, repository: str, tag: str, changes: Sequence[str], *, architecture: str = "amd64"
    ) -> str:
        """`docker import` as an image for `architecture`. Docker 20.10 ignores import's platform and
        labels every import with its own; then the image's config is rewritten (save, edit, load):
        the layer is the same, only the config (and so the id) changes."""
        with self._failing(f"import {tar_path}"):
            out = self._api.import_image_from_file(str(tar_path), repository=repository, tag=tag, changes=list(changes))
        status = out if isinstance(out, str) else json.dumps(out)
        info = self.image(f"{repository}:{tag}")
        if info is None:
            raise EngineError(f"Docker did not create {repository}:{tag} from {tar_path}: {status[-300:]}")
        if info.architecture != architecture:
            info = self._set_architecture(f"{repository}:{tag}", architecture)
        return info.id

    def _set_architecture(self, reference: str, architecture: str) -> ImageInfo:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="reproexec-arch-") as tmp:
            saved, edited = Path(tmp) / "saved.tar", Path(tmp) / "edited.tar"
            with open(saved, "wb") as out:
                self.save(reference, out)
            with tarfile.open(saved) as src, tarfile.open(edited, "w") as dst:
                manifest = json.loads(src.extractfile("manifest.json").read())  # type: ignore[union-attr]
                config_name = manifest[0]["Config"]
                config = json.loads(src.extractfile(config_name).read())  # type: ignore[union-attr]
                config["architecture"] = architecture
                if architecture == "arm64":
                    config["variant"] = "v8"
                data = json.dumps(config, separators=(",", ":")).encode()
                new_name = hashlib.sha256(data).hexdigest() + ".json"
                manifest[0]["Config"] = new_name
                manifest[0]["RepoTags"] = [reference]
                for m in src:
                    if m.name in ("manifest.json", config_name, "repositories"):
                        continue
                    dst.addfile(m, src.extractfile(m) if m.isfile() else None)
                for name, payload in ((new_name, data), ("manifest.json", json.dumps(manifest).encode())):
                    member = tarfile.TarInfo(name)
                    member.size = len(payload)
                    dst.addfile(member, io.BytesIO(payload))
            self.load(edited)
        info = self.image(reference)
        if info is None or info.architecture != architecture:
            raise EngineError(f"Docker did not take {reference} as a linux/{architecture} image")
        return info

    def load(self, source: Path | IO[bytes] | Iterable[bytes]) -> list[str]:
        """`docker load` from a file path, a readable stream or an iterator of chunks (streamed);
        returns the ids of the images Docker loaded."""
        loaded: list[str] = []
        where = f" from {source}" if isinstance(source, Path) else ""
        with (
            self._failing(f"load the image{where}"),
            open(source, "rb") if isinstance(source, Path) else contextlib.nullcontext(source) as data,
        ):
            for chunk in self._api.load_image(data):
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("errorDetail") or chunk.get("error"):
                    detail = chunk.get("errorDetail") or {}
                    raise EngineError(
                        f"Docker could not load the image{where}: {detail.get('message') or chunk.get('error')}"
                    )
                line = str(chunk.get("stream") or "").strip()
                for prefix in ("Loaded image ID: ", "Loaded image: "):
                    if line.startswith(prefix):
                        loaded.append(line.removeprefix(prefix))
        ids = []
        for ref in loaded:  # a name (an archive that carried tags) is resolved to its id
            info = None if ref.startswith("sha256:") else self.image(ref)
            ids.append(info.id if info is not None else ref)
        return ids

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        with self._failing(f"tag {image_id} as {repository}:{tag}"):
            self._api.tag(image_id, repository, tag)

    def remove_image(self, reference: str, *, force: bool = True) -> None:
        """Remove an image (and its untagged parents). Without force, Docker refuses one a
        container uses; that refusal is raised as EngineError."""
        with self._failing(f"remove {reference}"), contextlib.suppress(self._errors.ImageNotFound):
            self._api.remove_image(reference, force=force)

    def list_images(
        self, *, repository: str | None = None, dangling: bool = False, label: str | None = None
    ) -> list[ImageInfo]:
        """Images of a repository (all its tags), or untagged leaf images (dangling), optionally
        only those carrying `label`."""
        filters: dict[str, Any] = {}
        if dangling:
            filters["dangling"] = True
        if label:
            filters["label"] = label
        with self._failing("list images"):
            found = self._api.images(name=repository, filters=filters or None)
        return [
            ImageInfo(
                id=i["Id"],
                tags=tuple(t for t in (i.get("RepoTags") or ()) if t != "<none>:<none>"),
                repo_digests=tuple(i.get("RepoDigests") or ()),
                labels=dict(i.get("Labels") or {}),
                size=int(i.get("Size") or 0),
                created=int(i.get("Created") or 0),
            )
            for i in found
        ]

    def save(self, reference: str, out: IO[bytes]) -> None:
        with self._failing(f"save {reference}"):
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
        # REPROEXEC_BUILD_CPU_SHARES: the build's steps get this CPU weight (Docker's default 1024), so
        # a build in the background (scripts/arm64.sh) takes only what other work leaves idle
        shares = os.environ.get("REPROEXEC_BUILD_CPU_SHARES", "")
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
                container_limits={"cpushares": int(shares)} if shares.isdigit() and int(shares) >= 2 else None,
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
                        "read the build log above; the lockfile and base image must match (same Python, same platform)",
                        details=[ln for ln in log[-25:] if ln.strip()],
                    )
        except (self._errors.DockerException, OSError) as e:
            raise BuildError(
                f"the image build failed: {_explanation(e)}", details=[ln for ln in log[-25:] if ln.strip()]
            ) from None
        if image_id is None:
            raise BuildError("the image build ended without an image id", details=log[-25:])
        return image_id

    @contextlib.contextmanager
    def serve_folder(
        self, image: str, folder: Path, *, port: int, outside: bool, labels: Mapping[str, str]
    ) -> Iterator[str]:
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
                    raise EngineError(
                        f"the build's wheel server did not start: {out[-500:] or state.get('Error') or 'no output'}"
                    )
                time.sleep(0.05)
        except BaseException as e:
            self._remove_quietly(container)
            if isinstance(e, (self._errors.DockerException, OSError)) and not isinstance(e, ReproexecError):
                raise EngineError(f"Docker could not start the build's wheel server: {_explanation(e)}") from None
            raise
        try:
            yield f"container:{container}"
        finally:
            self._remove_quietly(container)

    # -- containers ----------------------------------------------------------------------------
    def run_capture(
        self, image: str, command: Sequence[str], *, network: bool = False, environment: Mapping[str, str] | None = None
    ) -> ContainerResult:
        """Run a short command with no network and no capabilities; return its exit code and output.
        A command the image cannot start (no such program) is an EngineError naming the image."""
        container = None
        try:
            with self._failing(f"run `{' '.join(command)[:60]}` in image {image}"):
                host_config = self._api.create_host_config(
                    network_mode=None if network else "none", cap_drop=["ALL"], security_opt=["no-new-privileges"]
                )
                container = self._api.create_container(
                    image, command=list(command), environment=dict(environment or {}), host_config=host_config
                )["Id"]
                self._api.start(container)
                rc = int(self._api.wait(container).get("StatusCode", 1))
                output = self._api.logs(container, stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            self._remove_quietly(container)
        return ContainerResult(exit_code=rc, output=output)

    def has_nvidia_runtime(self) -> bool:
        runtimes = self.info().get("Runtimes") or {}
        return "nvidia" in runtimes

    def architecture(self) -> str:
        """The Docker host's machine as `uname -m` names it (x86_64, aarch64): where containers run."""
        return str(self.info().get("Architecture") or "")

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
            # no core files: the root filesystem is read-only anyway, and qemu-user (an emulated run)
            # would otherwise hang writing one for a crashed process
            ulimits=[docker.types.Ulimit(name="core", soft=0, hard=0)],
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
            if isinstance(e, (self._errors.DockerException, OSError)) and not isinstance(e, ReproexecError):
                raise EngineError(f"Docker could not start the run container: {_explanation(e)}") from None
            raise
        return DockerRun(api, created, stdin, self._errors)

    def containers(self, label: str) -> list[ContainerInfo]:
        """Every container (running or not) that carries `label`, with its labels and state."""
        with self._failing("list containers"):
            found = self._api.containers(all=True, filters={"label": label})
        return [ContainerInfo(id=c["Id"], labels=dict(c.get("Labels") or {})) for c in found]

    def remove_container(self, ref: str) -> None:
        """Stop and remove a container at once (SIGKILL); a missing one is not an error."""
        self._remove_quietly(ref)

    def _remove_quietly(self, ref: str | None) -> None:
        if ref:
            _quietly(self._errors, self._api.remove_container, ref, force=True)  # already gone, or never created


# A line longer than this is cut: the host keeps no unbounded buffer of what a container prints.
MAX_LINE_BYTES = 1 << 20


class DockerRun:
    """A started run container (low-level API: no extra inspect per call)."""

    def __init__(self, api: Any, container_id: str, stdin: Any, errors: Any) -> None:
        self._api = api
        self.id = container_id
        self._stdin = stdin
        self._errors = errors  # the docker.errors module

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
        return Exit(code=int(status.get("StatusCode", 1)), oom_killed=bool(state.get("OOMKilled")))

    def stop(self, timeout: int = 10) -> None:
        _quietly(self._errors, self._api.stop, self.id, timeout=timeout)  # already gone: nothing to stop

    def remove(self) -> None:
        self.close()
        _quietly(self._errors, self._api.remove_container, self.id, force=True)

    def close(self) -> None:
        """Let go of the container's stdin (the run is over, or being stopped on purpose)."""
        if self._stdin is not None:
            with contextlib.suppress(OSError):  # the socket is already closed: the container is gone
                self._stdin.close()
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
        architecture=str(data.get("Architecture") or "amd64"),
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:400]


def _explanation(e: BaseException) -> str:
    """What the engine said (an APIError's explanation), else the error's first line."""
    explanation = getattr(e, "explanation", None)
    return str(explanation).strip()[:400] if explanation else _first_line(e)


def _quietly(errors: Any, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call, ignoring Docker's errors and a lost connection: for clean-ups of what may be gone already."""
    try:
        call(*args, **kwargs)
    except (errors.DockerException, OSError):
        pass


def connect() -> DockerEngine:
    """A DockerEngine that has answered a ping."""
    engine = DockerEngine()
    engine.ping()
    return engine
