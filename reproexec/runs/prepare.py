"""Before a run folder exists: everything checked and decided, returned as one value.

Config, code state, dataset verification (full sha256), classes, host CPUs, pinned weights, the
image (built, reused, or rebuilt from a recorded recipe), the pinned environment and the run's
fingerprint. Whatever fails here fails before anything is written, so a refused run leaves nothing
behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reproexec._version import version
from reproexec.codebox import CodeState, capture_code, code_of_tar, require_clean
from reproexec.config import LoadedConfig
from reproexec.engine import Engine
from reproexec.env.context import ContextEntry
from reproexec.errors import ConfigError, DataError, EngineError, RunError
from reproexec.fsutil import canonical_sha256, sha256_file
from reproexec.keys import load_signer
from reproexec.labels import BUNDLE_REPOSITORY
from reproexec.runs.arch import RunPlatform, check_same_class, probe_platform, run_arch
from reproexec.runs.launch import RUNTIME_PROTOCOL, SUPPORTED_PROTOCOLS
from reproexec.runs.timing import Clock

Runtime = Literal["docker", "local"]
LogFn = Callable[[str], None]
STORE_HINT = "point --runs-dir (or REPROEXEC_RUNS) at a folder you can write"
# Variables a run's recorded environment may set when it is replayed (what any reproexec pins).
_PINNED_VAR = re.compile(
    r"^(ATEN_CPU_CAPABILITY|CUBLAS_WORKSPACE_CONFIG|PYTHONHASHSEED|(DNNL|MKL|OMP|ONEDNN|KMP|OPENBLAS)_[A-Z0-9_]+)$"
)


@dataclass(frozen=True)
class Replay:
    """What a run must reuse instead of deciding afresh (a rerun; a sweep's cells share an image)."""

    image: dict[str, Any] | None = None  # the recorded image (tag, content hash, hash inputs): reused or rebuilt to it
    platform: dict[str, Any] | None = None  # the recorded platform (arch, numerics class): checked up front
    source: Path | None = None  # the folder that holds its recipe/ (a run folder; a sweep's image folder)
    code_tar: Path | None = None  # a bring-your-own run's code.tar, instead of the work tree
    config: dict[str, Any] | None = (
        None  # the resolved config the run's process gets, as the recorded reproexec wrote it
    )
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
    smoke: bool = False  # the built-in trainer's smoke run (smoke.steps on a smoke.subset)
    time_limit_s: float | None = None  # a process still running after this long is stopped (smoke.max_seconds)


@dataclass(frozen=True)
class Prepared:
    """Everything checked and decided before a run folder exists."""

    loaded: LoadedConfig
    code: CodeState
    data_dir: Path
    manifest: Any  # the DatasetManifest just verified
    data_state: dict[str, Any]  # the verified files' stat, to check the snapshot did not change under the run
    image: dict[str, Any] | None  # None: the local runtime
    recipe: list[ContextEntry] | None  # the image's build context, kept in the run folder (recipe/)
    resolved: dict[str, Any]  # config.resolved.json: what the run's process reads
    env: dict[str, str]  # the pinned variables the process starts with
    fingerprint: str
    platform: RunPlatform = RunPlatform("amd64", "amd64")  # arch, numerics class, emulation
    weights: Path | None = None  # the pinned weights file, verified on the host
    code_rels: list[str] | None = None  # BYO runs in Docker: the work-tree files that go into code.tar
    code_tar: Path | None = None  # ... or (rerun) the code.tar to copy
    clock: Clock = field(default_factory=Clock)
    signer: Any = None  # (securesystemslib signer, PublicKey) of this user's key, or None: unsigned

    @property
    def manifest_id(self) -> str:
        return str(self.manifest.manifest_id)


def check_options(loaded: LoadedConfig, opts: RunOptions) -> None:
    """Refusals that need neither the engine nor the data (the CLI calls this before connecting)."""
    cfg = loaded.config
    if opts.gpu and cfg.env.flavour != "cuda" and opts.runtime == "docker":
        raise ConfigError(
            f"--gpu needs a CUDA image, but {loaded.path} has env.flavour = {cfg.env.flavour!r}",
            "set env.flavour: cuda, or drop --gpu",
        )


def prepare_run(
    loaded: LoadedConfig, opts: RunOptions, engine: Engine | None, on_log: LogFn, clock: Clock | None = None
) -> Prepared:
    from reproexec.data.manifest import snapshot_state, verify_snapshot
    from reproexec.runtime.seeding import check_cpu_level, pinned_environment

    clock = clock or Clock()
    cfg = loaded.config
    check_options(loaded, opts)
    check_store(opts.runs_dir)
    signer = load_signer()  # a key that cannot be used is refused now, not when the run has finished
    docker = opts.runtime == "docker" and engine is not None
    arch, emulated = run_arch(cfg, engine if docker else None, opts.replay.image if docker else None)
    if not emulated:
        check_cpu_level(cfg)  # the host's CPU is the Docker engine's too: refused before a long build
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
    data_state = snapshot_state(data_dir, manifest)  # to tell, when the run ends, whether it read these files
    if not cfg.entrypoint:
        check_classes(cfg, data_dir)
    check_host(cfg, opts, engine)
    weights = _verified_weights(loaded)

    image, recipe = None, None
    if opts.runtime == "docker":
        assert engine is not None
        if opts.gpu and not engine.has_nvidia_runtime():  # before a long CUDA image build
            raise EngineError(
                "--gpu was given but this Docker engine has no NVIDIA runtime",
                "install the NVIDIA driver and nvidia-container-toolkit, run "
                "`nvidia-ctk runtime configure --runtime=docker`, restart dockerd; or run without --gpu",
            )
        with clock.phase("image"):
            image, recipe = _ensure_image(loaded, opts, engine, on_log)

    run_platform = probe_platform(
        engine, (image or {}).get("runtime_image") or (image or {}).get("tag"), arch, emulated
    )
    check_same_class(opts.replay.platform, run_platform)
    env = replayed_environment(opts.replay.environment) if opts.replay.environment else pinned_environment(cfg, arch)
    resolved = opts.replay.config if opts.replay.config is not None else cfg.resolved()
    fingerprint = canonical_sha256(
        {
            "config": resolved,
            "manifest_id": report.manifest_id,
            "image": image["content_hash"] if image else "local",
            "commit": code.commit or code.tree_sha256,
            "patch": code.patch_sha256 if code.patch else None,
            "env": env,
            # amd64's class is its pinned level (in env): its fingerprints stay what they were
            **({"numerics_class": run_platform.numerics_class} if arch != "amd64" else {}),
        }
    )
    return Prepared(
        loaded=loaded,
        code=code,
        data_dir=data_dir,
        manifest=manifest,
        data_state=data_state,
        image=image,
        recipe=recipe,
        resolved=resolved,
        env=env,
        fingerprint=fingerprint,
        platform=run_platform,
        weights=weights,
        code_rels=code_rels,
        code_tar=code_tar,
        clock=clock,
        signer=signer,
    )


def check_store(runs_dir: Path) -> None:
    """The run store can take a run folder (or be made where it is missing): checked before an image
    is built or data verified, and without creating anything."""
    probe = runs_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        what = "the run store" if probe == runs_dir else f"the run store {runs_dir} cannot be made: its parent"
        raise RunError(f"{what} {probe} is not a folder this user can write", STORE_HINT)


def replayed_environment(recorded: Mapping[str, Any]) -> dict[str, str]:
    """A recorded run's pinned variables, to hand its process exactly what the recorded reproexec did
    (a newer one may pin more, or otherwise). Only variables that pin the math libraries, Python's
    hash seed or cuBLAS: anything else in an altered run.json is refused, not passed on."""
    bad = [
        k
        for k, v in recorded.items()
        if not (isinstance(k, str) and _PINNED_VAR.match(k) and isinstance(v, str) and len(v) < 200 and v.isprintable())
    ]
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
        raise ConfigError(
            f"model.weights.path {path} does not exist", "point it at a local state_dict file (never downloaded)"
        )
    if not path.is_file():
        raise ConfigError(
            f"model.weights.path {path} is not a regular file (a folder, device or FIFO)",
            "point it at a local state_dict file (never downloaded)",
        )
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise ConfigError(
            f"model.weights: {path} has sha256 {actual}, but the config pins {ref.sha256}",
            "use the pinned file, or update model.weights.sha256 if the new file is intended",
        )
    return path


def _ensure_image(
    loaded: LoadedConfig, opts: RunOptions, engine: Engine, on_log: LogFn
) -> tuple[dict[str, Any], list[ContextEntry] | None]:
    """Build or reuse the run image, and its recipe. A rerun (or a sweep's cell) reuses the recorded
    image if this machine has it, else rebuilds it from the recorded recipe (env/recipe.py): the same
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
    protocol = expected.get("runtime_protocol", 1) if expected else RUNTIME_PROTOCOL
    return {**image_record(plan, result), "runtime_protocol": protocol}, plan.context


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
