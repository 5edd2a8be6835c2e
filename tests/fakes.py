"""A narrow fake of reproexec.engine.Engine for unit tests: records calls, holds images in a dict."""

from __future__ import annotations

import contextlib
import hashlib
import re
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from reproexec.engine import ContainerResult, ImageInfo

PROBE_311 = '{"python_version": "3.11", "abi": "cp311", "machine": "x86_64", "glibc": "2.36"}'


class FakeEngine:
    def __init__(self) -> None:
        self.images: dict[str, ImageInfo] = {}
        self.builds: list[dict] = []
        self.served: list[dict] = []
        self.runs: list[tuple[str, list[str]]] = []
        self.freeze = ""
        self.fail_build: str | None = None
        self.removed: list[str] = []
        self.imports: list[dict] = []
        self.machine = "x86_64"  # `docker info`'s Architecture
        self.numerics_probe = "x86_64 0"  # what seeding.NUMERICS_PROBE prints in a container
        self.saved: dict[str, bytes] = {}  # reference -> the layer tar `save` gives

    def add_image(
        self,
        ref: str,
        image_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        layers: Sequence[str] | None = None,
        architecture: str = "amd64",
    ) -> ImageInfo:
        image_id = image_id or "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
        layers = (
            tuple(layers)
            if layers is not None
            else ("sha256:" + hashlib.sha256(f"layer of {ref}".encode()).hexdigest(),)
        )
        info = ImageInfo(
            id=image_id,
            tags=(ref,),
            repo_digests=(),
            labels=dict(labels or {}),
            layers=layers,
            architecture=architecture,
        )
        self.images[ref] = info
        self.images[image_id] = info
        return info

    def ping(self) -> None:
        pass

    def image(self, reference: str) -> ImageInfo | None:
        return self.images.get(reference)

    def pull(self, reference: str) -> ImageInfo:
        from reproexec.errors import EngineError

        raise EngineError(f"base image {reference} is not on this machine and could not be pulled: no registry")

    def import_rootfs(
        self, tar_path: Path, repository: str, tag: str, changes: Sequence[str], *, architecture: str = "amd64"
    ) -> str:
        self.imports.append(
            {"path": tar_path, "tag": f"{repository}:{tag}", "changes": list(changes), "architecture": architecture}
        )
        # Like `docker import`: one layer whose diff_id is the tar's sha256, a new image id each time.
        digest = hashlib.sha256(Path(tar_path).read_bytes()).hexdigest()
        image_id = "sha256:" + hashlib.sha256(f"{digest} {len(self.imports)}".encode()).hexdigest()
        return self.add_image(
            f"{repository}:{tag}", image_id=image_id, layers=[f"sha256:{digest}"], architecture=architecture
        ).id

    def load(self, tar_path: Path) -> list[str]:
        return [self.add_image(str(tar_path)).id]

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self.images[f"{repository}:{tag}"] = self.images[image_id]

    def remove_image(self, reference: str, *, force: bool = True) -> None:
        self.removed.append(reference)
        gone = self.images.get(reference)
        self.images = {k: v for k, v in self.images.items() if k != reference and v is not gone}

    def list_images(self, *, repository=None, dangling=False, label=None) -> list:
        seen, out = set(), []
        for info in self.images.values():
            if info.id in seen:
                continue
            if repository and not any(t.startswith(repository + ":") for t in info.tags):
                continue
            if dangling and info.tags:
                continue
            if label and label not in info.labels:
                continue
            seen.add(info.id)
            out.append(info)
        return out

    @contextlib.contextmanager
    def serve_folder(self, image, folder, *, port, outside, labels):
        """Records what a build would be served; the folder exists only while it is served."""
        files = sorted(Path(folder).iterdir())
        self.served.append(
            {
                "image": image,
                "files": [p.name for p in files],
                "port": port,
                "outside": outside,
                "folder": Path(folder),
                "labels": dict(labels),
                "modes": {p.name: p.stat().st_mode & 0o777 for p in files},
            }
        )
        yield f"container:fake-wheel-server-{len(self.served)}"

    def build(self, context: IO[bytes], *, tag, labels, network_mode, on_log=None) -> str:
        names, dockerfile = [], ""
        with tarfile.open(fileobj=context, mode="r|") as tar:
            for m in tar:
                names.append(m.name)
                if m.name == "Dockerfile":
                    dockerfile = tar.extractfile(m).read().decode()
        self.builds.append({"tag": tag, "labels": dict(labels), "network_mode": network_mode, "members": names})
        if self.fail_build:
            from reproexec.errors import BuildError

            raise BuildError(f"the image build failed: {self.fail_build}")
        image_id = "sha256:" + hashlib.sha256(repr(self.builds[-1]).encode()).hexdigest()
        # Like Docker: the new image's layers are its FROM image's, then its own.
        first_from = re.search(r"^FROM\s+(\S+)", dockerfile, re.M)
        base = self.images.get(first_from.group(1)) if first_from else None
        layers = (*(base.layers if base else ()), "sha256:" + hashlib.sha256(image_id.encode()).hexdigest())
        info = ImageInfo(id=image_id, tags=(tag,) if tag else (), repo_digests=(), labels=dict(labels), layers=layers)
        self.images[image_id] = info
        if tag:
            self.images[tag] = info
        return image_id

    def save(self, reference: str, out: IO[bytes]) -> None:
        """`docker save` as Docker 20.10 writes it: each layer as <id>/layer.tar (bytes from `saved`)."""
        import io

        layer = self.saved.get(reference, b"the bytes of some other layer")
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo("0123abcd/layer.tar")
            info.size = len(layer)
            tar.addfile(info, io.BytesIO(layer))

    def architecture(self) -> str:
        return self.machine

    def cpu_count(self) -> int:
        return 2

    def containers(self, label: str) -> list:
        return []

    def remove_container(self, ref: str) -> None:
        pass

    def has_nvidia_runtime(self) -> bool:
        return False

    def run_capture(
        self, image: str, command: Sequence[str], *, network: bool = False, environment: Mapping[str, str] | None = None
    ) -> ContainerResult:
        self.runs.append((image, list(command)))
        if "python3" in command and any("getauxval" in c for c in command):  # the numerics probe
            return ContainerResult(0, self.numerics_probe + "\n")
        if "pip" in command and "freeze" in command:
            return ContainerResult(0, self.freeze)
        return ContainerResult(0, PROBE_311 + "\n")
