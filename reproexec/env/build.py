"""Config + lockfile → pinned Dockerfile → image `reproexec-env:<content hash>`.

`plan_build` gathers every input and computes the tag without building anything; `build_image`
builds only when no image has that tag. The image is tagged only after it was built, its
environment was read back with `pip freeze` and checked against the lockfile — a failed or
half-done build never carries a reproexec tag.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproexec.config import Config, LoadedConfig
from reproexec.engine import Engine, ImageInfo
from reproexec.env.base import default_base, resolve_base
from reproexec.env.context import ContextEntry, streamed_context
from reproexec.env.lock import Lockfile, read_lock
from reproexec.env.selfwheel import reproexec_wheel
from reproexec.env.spec import (
    WHEEL_PORT,
    BaseImage,
    ImageSpec,
    build_context,
    content_hash,
    hash_inputs,
    image_tag,
    render_dockerfile,
)
from reproexec.env.wheels import (
    PROBE_SCRIPT,
    TargetPlatform,
    cache_dir,
    ensure_wheels,
    verify_wheels,
)
from reproexec.errors import BuildError, ConfigError, LockError, RunError
from reproexec.labels import (
    CODE_REPOSITORY,
    LABEL_BUILD_SERVER,
    LABEL_CODE,
    LABEL_FREEZE,
    LABEL_HASH,
    LABEL_INPUTS,
    LABEL_OWNER,
    this_process,
)

LogFn = Callable[[str], None]

# What the in-container trainer imports; a lockfile without them builds an image that cannot train.
TRAINER_PACKAGES = ["torch", "torchvision", "numpy", "pillow", "matplotlib", "pydantic", "pyyaml"]
# What reproexec's wrapper needs around a bring-your-own entrypoint.
WRAPPER_PACKAGES = ["pydantic", "pyyaml"]
# torch's CUDA wheels depend on these; a lock without them has a CPU-only torch.
CUDA_MARKER_PACKAGES = ["nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu11"]


@dataclass(frozen=True)
class BuildPlan:
    spec: ImageSpec
    dockerfile: str
    context: list[ContextEntry]
    inputs: dict[str, Any]
    content_hash: str

    @property
    def tag(self) -> str:
        return image_tag(self.content_hash)


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    cached: bool
    freeze: str


def plan_build(loaded: LoadedConfig, engine: Engine, *, gpu: bool = False, on_log: LogFn | None = None) -> BuildPlan:
    cfg = loaded.config
    if gpu and cfg.env.flavour != "cuda":
        raise ConfigError(
            f"--gpu needs a CUDA image, but {loaded.path} has env.flavour = {cfg.env.flavour!r}",
            "set env.flavour: cuda (with a lockfile whose torch is a CUDA build), or drop --gpu",
        )
    arch, _ = target_arch(cfg, engine)
    lock = read_lock(loaded.resolve(cfg.env.lockfile))
    check_lock_fits(lock, needs=WRAPPER_PACKAGES if cfg.entrypoint else TRAINER_PACKAGES, flavour=cfg.env.flavour)
    base = resolve_base(cfg.env.base_image, engine)
    check_base_arch(engine, base.image_id, cfg.env.base_image, arch)
    target = probe_target(engine, base.image_id)
    wheels = ensure_wheels(lock, target, on_log=on_log)
    spec = ImageSpec(
        flavour=cfg.env.flavour,
        base=base,
        lock=lock,
        wheels=tuple(wheels),
        self_wheel=reproexec_wheel(),
        apt_packages=tuple(cfg.env.apt_packages),
        cublas_workspace_config=cfg.determinism.cublas_workspace_config,
        arch=arch,
    )
    return plan_from_spec(spec)


def target_arch(cfg: Config, engine: Engine) -> tuple[str, bool]:
    """(the run image's platform, whether the engine runs it emulated): env.arch, else the engine's.

    arm64 on an amd64 engine runs under qemu-user (binfmt_misc); amd64 on an arm64 engine (Docker
    Desktop on Apple silicon, Graviton) is refused: the amd64 pins need AVX2, which neither Rosetta
    nor qemu-user executes bit for bit like a real x86-64 CPU, and emulated training is slow anyway."""
    from reproexec.runtime.seeding import check_arch_config, check_machine

    engine_arch = check_machine(engine.architecture(), "the Docker engine's machine")
    arch = cfg.env.arch or engine_arch
    if arch == "amd64" and engine_arch != "amd64":
        refuse_amd64_on(engine_arch, "env.arch is amd64")
    check_arch_config(cfg, arch, f"env.arch {arch}" if cfg.env.arch else f"this Docker engine ({arch})")
    return arch, arch != engine_arch


def refuse_amd64_on(engine_arch: str, what: str) -> None:
    raise RunError(
        f"{what}, but the Docker engine's machine is {engine_arch}: an amd64 image would run emulated there "
        "(Rosetta, qemu), and the amd64 CPU pins (AVX2, FMA) are not emulated bit for bit",
        "run linux/arm64 here (env.arch: arm64, or leave it out: the engine's platform; README: Apple silicon), "
        "or run on an x86-64 machine",
    )


def check_base_arch(engine: Engine, image_id: str, reference: str, arch: str) -> None:
    """ConfigError unless the base image is for `arch` (a linux/amd64 base under an arm64 run would
    build, then fail on the first wheel)."""
    info = engine.image(image_id)
    if info is not None and info.architecture != arch:
        raise ConfigError(
            f"env.base_image {reference} is a linux/{info.architecture} image, but the run is linux/{arch}",
            f"make an {arch} base with `reproexec base bootstrap --arch {arch}` (it is tagged "
            f"{default_base(arch)}) and set env.base_image to it",
        )


def plan_from_spec(spec: ImageSpec) -> BuildPlan:
    dockerfile = render_dockerfile(spec)
    context = build_context(spec, dockerfile)
    inputs = hash_inputs(spec, dockerfile, context)
    return BuildPlan(
        spec=spec, dockerfile=dockerfile, context=context, inputs=inputs, content_hash=content_hash(inputs)
    )


def check_lock_fits(lock: Lockfile, *, needs: list[str], flavour: str) -> None:
    missing = lock.missing(needs)
    if missing:
        raise LockError(
            f"lockfile {lock.path} lacks packages the run image needs: {', '.join(missing)}",
            "add them to requirements.in and run `reproexec lock requirements.in -o "
            f"{lock.path.name}` (see examples/digits/requirements.in)",
        )
    if flavour == "cuda" and not any(lock.get(n) for n in CUDA_MARKER_PACKAGES):
        torch = lock.get("torch")
        raise LockError(
            f"env.flavour is 'cuda' but lockfile {lock.path} has a CPU-only torch "
            f"({torch.pin if torch else 'no torch'}: no nvidia-cuda-runtime wheel)",
            "lock a CUDA build of torch (PyPI's default Linux torch is one), or set env.flavour: cpu",
        )


def probe_target(engine: Engine, base_image_id: str) -> TargetPlatform:
    """Ask the base image's python3 which wheels it takes (cached per image id)."""
    slot = cache_dir() / "probe" / f"{base_image_id.replace(':', '_')}.json"
    if slot.is_file():
        return TargetPlatform(**json.loads(slot.read_text()))
    result = engine.run_capture(base_image_id, ["python3", "-c", PROBE_SCRIPT])
    try:
        if result.exit_code != 0:
            raise ValueError(result.output.strip()[-300:])
        target = TargetPlatform(**json.loads(result.output.strip().splitlines()[-1]))
    except (ValueError, TypeError, IndexError) as e:
        raise BuildError(
            f"the base image {base_image_id} has no usable python3 ({e})",
            "use a base with python3 and python3-venv (e.g. `reproexec base bootstrap`)",
        ) from None
    slot.parent.mkdir(parents=True, exist_ok=True)
    slot.write_text(json.dumps(target.__dict__))
    return target


def build_image(plan: BuildPlan, engine: Engine, *, on_log: LogFn | None = None) -> BuildResult:
    existing = engine.image(plan.tag)
    if existing is not None:  # same inputs were built before: nothing to do
        check_built_here(existing, plan.tag, plan.content_hash, plan.inputs)
        return BuildResult(
            tag=plan.tag, image_id=existing.id, cached=True, freeze=existing.labels.get(LABEL_FREEZE, "")
        )

    verify_wheels([*plan.spec.wheels, plan.spec.self_wheel])
    labels = {
        LABEL_HASH: plan.content_hash,
        LABEL_INPUTS: json.dumps(plan.inputs, sort_keys=True, separators=(",", ":")),  # compared as JSON, not hashed
    }
    base = plan.spec.base
    if base.pinned_by == "content":  # FROM names the content tag: point it at exactly the base resolved
        repository, _, version = base.pinned.rpartition(":")
        engine.tag(base.image_id, repository, version)
    outside = plan.inputs.get("build_network") == "wheels+outside"
    with served_wheels(plan.spec, engine, outside=outside) as network_mode, streamed_context(plan.context) as ctx:
        staged = engine.build(ctx, tag=None, labels=labels, network_mode=network_mode, on_log=on_log)

    check_built_on_base(engine, staged, base)
    freeze = read_freeze(engine, staged)
    check_freeze(freeze, plan.spec.lock)

    # Tag last, in a one-line build that also records the frozen environment as a label.
    final = f"FROM {staged}\n".encode()
    with streamed_context([ContextEntry.from_bytes("Dockerfile", final)]) as ctx:
        image_id = engine.build(ctx, tag=plan.tag, labels={**labels, LABEL_FREEZE: freeze}, network_mode="none")
    return BuildResult(tag=plan.tag, image_id=image_id, cached=False, freeze=freeze)


def check_built_here(info: ImageInfo, tag: str, digest: str, inputs: dict[str, Any]) -> None:
    """An image found under a reproexec-env tag is trusted only if it carries the labels this tag's
    build gives (its content hash and hash inputs) and the pip freeze that build checked. Only
    `build_image` tags this repository; a bundle's image is loaded under reproexec-bundle: instead."""
    labels = info.labels
    try:
        recorded = json.loads(labels.get(LABEL_INPUTS, ""))
    except (ValueError, RecursionError):
        recorded = None
    if labels.get(LABEL_HASH) != digest or recorded != inputs or not labels.get(LABEL_FREEZE):
        raise BuildError(
            f"image {tag} does not carry the labels reproexec's build of it gives (content hash, build inputs, "
            "pip freeze); something other than reproexec tagged it, and it is not used",
            f"remove the tag (`docker rmi {tag}`) and run again: reproexec builds the image afresh",
        )


def image_record(plan: BuildPlan, result: BuildResult) -> dict[str, Any]:
    """What run.json (and a sweep) records of the image a run used."""
    base, wheel = plan.spec.base, plan.spec.self_wheel
    return {
        "tag": result.tag,
        "id": result.image_id,
        "content_hash": plan.content_hash,
        "hash_inputs": plan.inputs,
        "base": {
            "reference": base.reference,
            "id": base.image_id,
            "content_id": base.content_id,
            "layers": list(base.layers),
        },
        "pip_freeze": result.freeze,
        # the reproexec inside the image: its wheel is in the run folder's recipe/
        "reproexec": {"version": wheel.version, "wheel": wheel.filename, "sha256": wheel.sha256},
    }


@contextlib.contextmanager
def served_wheels(spec: ImageSpec, engine: Engine, *, outside: bool) -> Iterator[str]:
    """The spec's wheels, checked, in a folder of their own (hard links into the cache), served to
    the build by a throwaway server from the base image; yields the build's network mode. The
    build's steps share the server's network namespace, which has only loopback (apt pins add a
    route to Debian's mirror). So no wheel is ever sent as build context or kept in a layer: a cold
    build writes the environment once, not the wheels and two copies of the environment."""
    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=root, prefix="serve-"))
    try:
        folder.chmod(0o755)  # the server runs as nobody
        for w in spec.wheels:
            try:
                os.link(w.path, folder / w.filename)
            except OSError:  # another file system, or links not allowed: a copy serves as well
                shutil.copyfile(w.path, folder / w.filename)
            _readable_by_nobody(folder / w.filename, w.path)
        labels = {LABEL_BUILD_SERVER: "1", LABEL_OWNER: json.dumps(this_process())}
        with engine.serve_folder(spec.base.image_id, folder, port=WHEEL_PORT, outside=outside, labels=labels) as mode:
            yield mode
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _readable_by_nobody(served: Path, cached: Path) -> None:
    """The server runs as nobody, so every served wheel must be world-readable. One cached under a
    strict umask (0600) is made 0644 (a hard link shares the cached file's mode: wheels are public
    files); one this user may not chmod is served from a copy."""
    mode = served.stat().st_mode
    if mode & 0o004:
        return
    try:
        os.chmod(served, mode | 0o444)
    except PermissionError:
        served.unlink()
        shutil.copyfile(cached, served)
        os.chmod(served, 0o644)


def check_built_on_base(engine: Engine, image: str, base: BaseImage) -> None:
    """The built image's first layers must be the base's: FROM found exactly the base that was hashed."""
    info = engine.image(image)
    layers = tuple(info.layers) if info else ()
    if layers[: len(base.layers)] != tuple(base.layers):
        raise BuildError(
            f"the image was built on another base than {base.reference} ({base.content_id}); it was not tagged",
            f"something re-tagged {base.pinned} during the build; build again",
            details=[
                f"base layers  {', '.join(base.layers)}",
                f"built layers {', '.join(layers[: len(base.layers)]) or '-'}",
            ],
        )


def read_freeze(engine: Engine, image: str) -> str:
    result = engine.run_capture(
        image, ["/opt/venv/bin/python", "-m", "pip", "freeze", "--all", "--disable-pip-version-check"]
    )
    if result.exit_code != 0:
        raise BuildError("the built image cannot run `pip freeze`", details=result.output.splitlines()[-10:])
    return "\n".join(sorted(ln for ln in result.output.splitlines() if ln.strip())) + "\n"


def check_freeze(freeze: str, lock: Lockfile) -> None:
    from packaging.utils import canonicalize_name

    installed = {}
    for line in freeze.splitlines():
        if "==" in line:
            name, _, version = line.partition("==")
            installed[canonicalize_name(name)] = version.strip()
    wrong = [
        f"{r.name}: locked {r.version}, installed {installed.get(r.name, 'nothing')}"
        for r in lock.requirements
        if r.marker is None and installed.get(r.name) != r.version
    ]
    if wrong:
        raise BuildError(
            "the built environment differs from the lockfile; the image was not tagged",
            "report this: pip installed something other than the locked wheels",
            details=wrong,
        )


def build_code_image(engine: Engine, image_tag: str, code_tar: Path, code_dir: str) -> str:
    """The run image plus a run's code.tar at `code_dir` (bring-your-own entrypoint), tagged
    reproexec-code:<sha256 of the files and the Dockerfile>. Built from the code.tar in the run folder,
    for a run and its reruns alike: the same bytes, the same image; reused when the tag exists."""
    import dataclasses
    import hashlib

    from reproexec.codebox import read_code_tar

    entries = [dataclasses.replace(e, arcname=f"code/{e.arcname}") for e in read_code_tar(code_tar)]
    dockerfile = f"FROM {image_tag}\nCOPY code/ {code_dir}/\nWORKDIR {code_dir}\n"
    entries.append(ContextEntry.from_bytes("Dockerfile", dockerfile.encode()))
    digest = hashlib.sha256(
        json.dumps([[e.arcname, e.sha256] for e in sorted(entries, key=lambda e: e.arcname)]).encode()
    ).hexdigest()
    tag = f"{CODE_REPOSITORY}:{digest}"
    if engine.image(tag) is None:
        with streamed_context(entries) as ctx:
            engine.build(ctx, tag=tag, labels={LABEL_CODE: digest}, network_mode="none")
    return tag
