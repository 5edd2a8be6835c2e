"""What a run image is made of, as data; the Dockerfile and the content hash are computed from it.

`ImageSpec` holds every input (the base's layers, lockfile, the chosen wheels, reproexec's own wheel,
apt pins, flavour, determinism settings that live in the image). `render_dockerfile` is the one
function that turns it into text, `build_context` lists the files the build sees, and
`content_hash` hashes a canonical JSON of all of it: same inputs → same tag on any machine, any
changed input → a new tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reproexec.env.context import ContextEntry
from reproexec.env.lock import LockedRequirement, Lockfile
from reproexec.env.wheels import Wheel
from reproexec.fsutil import canonical_sha256
from reproexec.labels import BASE_CONTENT_REPOSITORY, ENV_REPOSITORY

# bump when the meaning of the hash inputs changes (2: the base by its layers, not its id; 3: wheels
# served to the build, not copied into a stage; 4: the large wheels in a layer of their own; 5: the
# image's platform, amd64 or arm64, named)
HASH_SCHEMA = 5
# Where the build's install step finds the wheels: a server that exists only while the image builds,
# in whose network namespace (loopback only) the build's steps run (build.py). Fixed, so the
# Dockerfile (and Docker's layer cache key for the install step) is the same in every build.
WHEEL_HOST = "127.0.0.1"
WHEEL_PORT = 8000
WHEEL_URL = f"http://{WHEEL_HOST}:{WHEEL_PORT}/"
# Pins whose wheel is this large are installed first, in a layer of their own (torch, triton and the
# CUDA libraries: 13 wheels, 2.85 of the demo's 2.9 GB). A lockfile change that leaves them alone
# reuses that layer from Docker's cache and rebuilds only the small packages.
LARGE_WHEEL_BYTES = 32 * 2**20
# The image's unprivileged user (its `USER`): root's runs run as this, never as uid 0 (runs/launch.py).
SANDBOX_UID = SANDBOX_GID = 10001


@dataclass(frozen=True)
class BaseImage:
    """The base as the hash sees it: what it contains, not the id this engine gave it.

    `layers` are its diff_ids (sha256 of each uncompressed layer tar) and `config` what a build FROM
    it inherits (ENV, CMD, USER, ...). Both are the same on every machine that has the same image;
    the image id is not for an imported rootfs (`docker import` stamps the time into it), so it is
    kept only to tag and check the image on this machine.
    """

    reference: str  # as written in the config
    image_id: str  # sha256:... of the local image (machine-local for imported bases)
    pinned_by: Literal["digest", "content"]
    layers: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def content_id(self) -> str:
        return "sha256:" + canonical_sha256({"config": dict(self.config), "layers": list(self.layers)})

    @property
    def pinned(self) -> str:
        """What the Dockerfile's FROM names: the digest reference, or the content tag of a local base."""
        if self.pinned_by == "digest":
            return self.reference
        return f"{BASE_CONTENT_REPOSITORY}:{self.content_id.removeprefix('sha256:')}"


@dataclass(frozen=True)
class ImageSpec:
    flavour: Literal["cpu", "cuda"]
    base: BaseImage
    lock: Lockfile
    wheels: tuple[Wheel, ...]
    self_wheel: Wheel
    apt_packages: tuple[str, ...]
    cublas_workspace_config: str
    arch: str = "amd64"  # linux/amd64 or linux/arm64: the base's platform and the wheels'

    @property
    def template(self) -> str:
        return f"Dockerfile.{self.flavour}"

    @property
    def build_network(self) -> str:
        """What the build's steps can reach: only the wheel server, or, for apt pins, also the
        outside (Debian's mirror)."""
        return "wheels+outside" if self.apt_packages else "wheels-only"


def large_pins(spec: ImageSpec) -> list[LockedRequirement]:
    """The lockfile's pins whose chosen wheel is LARGE_WHEEL_BYTES or more, in the lockfile's order.
    The size is the file's, and the file is pinned by its sha256: the same on every machine."""
    by_hash = {w.sha256: w for w in spec.wheels}
    large = []
    for req in spec.lock.requirements:
        wheel = next((by_hash[h] for h in req.hashes if h in by_hash), None)
        if wheel is not None and wheel.path.stat().st_size >= LARGE_WHEEL_BYTES:
            large.append(req)
    return large


def templates_root() -> Path:
    """Where Dockerfile.cpu/.cuda and templates/ are: in the wheel, or at the checkout's top level."""
    package = Path(__file__).resolve().parent.parent  # reproexec/
    shipped = package / "_templates"
    return shipped if (shipped / "Dockerfile.cpu").is_file() else package.parent


def jinja_env() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_root())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_dockerfile(spec: ImageSpec) -> str:
    template = jinja_env().get_template(spec.template)
    text = template.render(
        reproexec_version=spec.self_wheel.version,
        template=spec.template,
        flavour=spec.flavour,
        base=spec.base,
        apt_packages=sorted(spec.apt_packages),
        lock_sha256=spec.lock.sha256,
        cublas_workspace_config=spec.cublas_workspace_config,
        wheel_url=WHEEL_URL,
        wheel_host=WHEEL_HOST,
        large_wheels=bool(large_pins(spec)),
        large_mib=LARGE_WHEEL_BYTES >> 20,
        sandbox_user=f"{SANDBOX_UID}:{SANDBOX_GID}",
    )
    # Collapse the blank lines left by empty blocks, so the text (and the hash) is tidy and stable.
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip() or (lines and lines[-1].strip()):
            lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"


def build_context(spec: ImageSpec, dockerfile: str) -> list[ContextEntry]:
    """Every file the build is sent, at fixed paths (the wheels are served, not sent)."""
    self_req = f"/build/selfwheel/{spec.self_wheel.filename} --hash=sha256:{spec.self_wheel.sha256}\n"
    entries = [
        ContextEntry.from_bytes("Dockerfile", dockerfile.encode()),
        ContextEntry.from_bytes("requirements.lock", spec.lock.text.encode()),
        *(
            [ContextEntry.from_bytes("requirements.large.lock", spec.lock.text_of(large).encode())]
            if (large := large_pins(spec))
            else []
        ),
        ContextEntry.from_bytes("selfwheel/requirements.txt", self_req.encode()),
        ContextEntry.from_file(f"selfwheel/{spec.self_wheel.filename}", spec.self_wheel.path, spec.self_wheel.sha256),
    ]
    return sorted(entries, key=lambda e: e.arcname)


def hash_inputs(spec: ImageSpec, dockerfile: str, context: list[ContextEntry]) -> dict[str, Any]:
    """Everything that went into the image, canonical (sorted, no paths, no timestamps)."""
    return {
        "schema": HASH_SCHEMA,
        "arch": spec.arch,
        "flavour": spec.flavour,
        "base_image": {"reference": spec.base.reference, "pinned_by": spec.base.pinned_by},
        "base_layers": list(spec.base.layers),
        "base_config": dict(spec.base.config),
        "dockerfile_sha256": hashlib.sha256(dockerfile.encode()).hexdigest(),
        "lock_sha256": spec.lock.sha256,
        "wheels": sorted([w.filename, w.sha256] for w in spec.wheels),
        "reproexec_wheel": [spec.self_wheel.filename, spec.self_wheel.sha256],
        "context": [[e.arcname, e.mode, e.sha256] for e in context],
        "build_network": spec.build_network,
    }


def content_hash(inputs: dict[str, Any]) -> str:
    return canonical_sha256(inputs)


def image_tag(digest: str) -> str:
    return f"{ENV_REPOSITORY}:{digest}"
