"""The run configuration: one YAML file declares everything, nothing is a hidden default.

Parse → validate (all errors at once, each naming the field path and the bad value) → resolve
(every default written out). The same model is used on the host and inside the container, so the
resolved config a run records is exactly what the trainer read.

Paths in the config (lockfile, dataset snapshot, weights) are relative to the config file's folder.
"""

from __future__ import annotations

import difflib
import errno
import functools
import re
import string
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from reproexec.errors import ConfigError
from reproexec.fsutil import UnreadableFile, read_bounded, relpath_problem

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SHA256_RE = r"^[0-9a-f]{64}$"
# Debian package pins: name=version, as `apt-get install` takes them.
_APT_PIN_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+=[A-Za-z0-9.+:~-]+$")
_SIZE_RE = r"^[0-9]{1,12}[bkmg]$"
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# A config (or a sweep file) is read whole, so at most this much of it: a real one is a few KB. The
# file is never trusted to be a regular file (a FIFO would hang the read, /dev/zero never ends).
MAX_CONFIG_BYTES = 1024**2
# How deep YAML may nest (a config needs 4 levels): deeper is refused before PyYAML's recursive
# composer can raise RecursionError.
MAX_YAML_DEPTH = 32
# What an entrypoint's arguments may name as ${VAR}; reproexec sets each for the command's process.
ENTRYPOINT_VARS = ("REPROEXEC_DATA_DIR", "REPROEXEC_METRICS", "REPROEXEC_RUN_DIR", "REPROEXEC_SEED")
BUILTIN_ONLY = ("model", "augment", "train", "smoke")  # sections a bring-your-own run does not use
ENTRYPOINT_ONLY = (("determinism", "seed_entrypoint"), ("output", "results"), ("output", "logs"))

# Docker's image reference grammar (distribution/reference): [HOST[:PORT]/]PATH[:TAG][@DIGEST], the
# path lowercase components joined by '/'. The reference reaches command lines (Fix hints print
# `reproexec base bootstrap --tag REF`), so anything else is refused before it gets that far.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IMAGE_REF_RE = re.compile(
    rf"(?P<name>(?:(?P<host>(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?)/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
MAX_IMAGE_NAME = 255  # Docker's limit on the name (host and path)

# Integers are integers: `true`, `1.0` or `1e20` are refused, not coerced (StrictInt). Numbers are
# numbers: `true` or "0.5" are refused, an integer is taken (StrictFloat).
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Probability = Annotated[StrictFloat, Field(ge=0.0, le=1.0)]

# torchvision's classification models (`torchvision.models.list_models(module=torchvision.models)`,
# torchvision 0.29); tests/unit/test_config.py checks the list against the installed torchvision.
CLASSIFICATION_ARCHS = frozenset(
    """
alexnet convnext_base convnext_large convnext_small convnext_tiny densenet121 densenet161 densenet169
densenet201 efficientnet_b0 efficientnet_b1 efficientnet_b2 efficientnet_b3 efficientnet_b4 efficientnet_b5
efficientnet_b6 efficientnet_b7 efficientnet_v2_l efficientnet_v2_m efficientnet_v2_s googlenet inception_v3
maxvit_t mnasnet0_5 mnasnet0_75 mnasnet1_0 mnasnet1_3 mobilenet_v2 mobilenet_v3_large mobilenet_v3_small
regnet_x_16gf regnet_x_1_6gf regnet_x_32gf regnet_x_3_2gf regnet_x_400mf regnet_x_800mf regnet_x_8gf
regnet_y_128gf regnet_y_16gf regnet_y_1_6gf regnet_y_32gf regnet_y_3_2gf regnet_y_400mf regnet_y_800mf
regnet_y_8gf resnet101 resnet152 resnet18 resnet34 resnet50 resnext101_32x8d resnext101_64x4d
resnext50_32x4d shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5 shufflenet_v2_x2_0 squeezenet1_0
squeezenet1_1 swin_b swin_s swin_t swin_v2_b swin_v2_s swin_v2_t vgg11 vgg11_bn vgg13 vgg13_bn vgg16
vgg16_bn vgg19 vgg19_bn vit_b_16 vit_b_32 vit_h_14 vit_l_16 vit_l_32 wide_resnet101_2 wide_resnet50_2
""".split()
)


def size_bytes(text: str) -> int:
    """'8g' → bytes (the units Docker takes: b, k, m, g)."""
    return int(text[:-1]) * _UNITS[text[-1]]


class _Section(BaseModel):
    # Floats are finite: .inf and .nan are refused everywhere.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class EnvSection(_Section):
    flavour: Literal["cpu", "cuda"] = Field(
        "cpu", description="Which run-image template to render: Dockerfile.cpu or Dockerfile.cuda."
    )
    base_image: str = Field(
        "reproexec-base:bookworm",
        description="Base image: a registry reference pinned by digest (name@sha256:...), or a local "
        "image made by `reproexec base bootstrap`, which the build pins by its image id.",
    )
    arch: Literal["amd64", "arm64"] | None = Field(
        None,
        description="The run image's platform, linux/amd64 or linux/arm64; null: the Docker engine's (with "
        "--runtime local, this machine's). arm64 on an amd64 engine runs emulated (qemu-user, binfmt), and "
        "is recorded as such; amd64 on an arm64 engine is refused.",
    )
    lockfile: str = Field(
        "requirements.lock",
        description="Hashed lockfile from `reproexec lock` (for arm64: `reproexec lock --platform linux/arm64`).",
    )
    apt_packages: list[str] = Field(
        default_factory=list,
        description="Extra Debian packages pinned as name=version. They need the base image's apt "
        "sources during the build; for air-gapped sites bake them into the base instead.",
    )

    @field_validator("base_image")
    @classmethod
    def _image_reference(cls, v: str) -> str:
        match = _IMAGE_REF_RE.fullmatch(v) if len(v) <= 2 * MAX_IMAGE_NAME else None
        host = match["host"] if match else None
        # Docker reads a first component as a registry host only if it has a '.' or a ':port'
        # (or is localhost); otherwise it is part of the path, and a path is lowercase.
        if host is not None and host != host.lower() and not any(c in host for c in ".:"):
            match = None
        if match is None:
            raise ValueError(
                "not a Docker image reference [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST], NAME in lowercase letters, "
                "digits, '.', '_', '-' and '/' (e.g. 'reproexec-base:bookworm')"
            )
        if len(match["name"]) > MAX_IMAGE_NAME:
            raise ValueError(f"the name is longer than {MAX_IMAGE_NAME} characters, Docker's limit")
        return v

    @field_validator("apt_packages")
    @classmethod
    def _pinned(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if not _APT_PIN_RE.match(p)]
        if bad:
            raise ValueError(f"not pinned as name=version: {', '.join(bad)} (e.g. 'libgomp1=12.2.0-14')")
        return sorted(set(v))  # sorted: order must not change the image hash


class DataSection(_Section):
    snapshot: str = Field(..., description="Dataset snapshot folder (holds manifest.json).")
    manifest: str | None = Field(None, description="Manifest file; default <snapshot>/manifest.json.")
    format: Literal["imagefolder", "cifar10"] = "imagefolder"
    train_dir: str = Field("train", description="imagefolder: sub-folder of training class folders.")
    val_dir: str | None = Field(
        "val", description="imagefolder: sub-folder of validation class folders; null = seeded split."
    )
    val_fraction: StrictFloat | None = Field(
        None, gt=0.0, lt=1.0, description="Seeded split of train_dir when val_dir is null."
    )
    subset: PositiveInt | None = Field(None, description="Use a seeded subset of this many training images.")

    @field_validator("train_dir", "val_dir")
    @classmethod
    def _inside_snapshot(cls, v: str | None) -> str | None:
        # Training reads only what was verified: a sub-folder of the snapshot, nothing beside it.
        if v is None:
            return v
        if v.startswith("~") or relpath_problem(v):
            raise ValueError("must be a plain folder path inside the snapshot (no '..', no absolute path)")
        return v

    @model_validator(mode="after")
    def _split_declared(self) -> DataSection:
        if self.format == "imagefolder" and self.val_dir is None and self.val_fraction is None:
            raise ValueError("imagefolder needs either val_dir or val_fraction (a seeded split)")
        if self.val_dir is not None and self.val_fraction is not None:
            raise ValueError("set val_dir or val_fraction, not both")
        return self


class WeightsRef(_Section):
    path: str = Field(..., description="Local weights file (state_dict); never downloaded.")
    sha256: str = Field(..., pattern=_SHA256_RE)


class ModelSection(_Section):
    arch: str = Field(
        "resnet18",
        description="torchvision classification model name.",
        json_schema_extra={"enum": sorted(CLASSIFICATION_ARCHS)},
    )
    num_classes: StrictInt = Field(10, ge=2, le=1_000_000)
    weights: WeightsRef | None = None

    @field_validator("arch")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in CLASSIFICATION_ARCHS:
            near = difflib.get_close_matches(v, sorted(CLASSIFICATION_ARCHS), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(f"not a torchvision classification model{hint} (`reproexec config schema` lists them)")
        return v


class RandomCrop(_Section):
    size: tuple[PositiveInt, PositiveInt]
    padding: StrictInt = Field(0, ge=0, le=4096)


class ColorJitter(_Section):
    brightness: StrictFloat = Field(0.0, ge=0.0)
    contrast: StrictFloat = Field(0.0, ge=0.0)
    saturation: StrictFloat = Field(0.0, ge=0.0)
    hue: StrictFloat = Field(0.0, ge=0.0, le=0.5)


class Normalize(_Section):
    mean: tuple[StrictFloat, StrictFloat, StrictFloat] = (0.485, 0.456, 0.406)
    std: tuple[StrictFloat, StrictFloat, StrictFloat] = (0.229, 0.224, 0.225)

    @field_validator("std")
    @classmethod
    def _positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):  # pixels are divided by it: 0 gives inf and a NaN loss
            raise ValueError("each std must be greater than 0 (normalize divides by it)")
        return v


class AugmentSection(_Section):
    resize: tuple[PositiveInt, PositiveInt] | None = (32, 32)
    random_crop: RandomCrop | None = None
    hflip_prob: Probability = 0.0
    rotation_degrees: StrictFloat = Field(0.0, ge=0.0, le=180.0)
    color_jitter: ColorJitter | None = None
    normalize: Normalize = Normalize()

    @field_validator("random_crop")
    @classmethod
    def _crop_fits(cls, v: RandomCrop | None, info: ValidationInfo) -> RandomCrop | None:
        # The crop is taken from the resized image with `padding` added on each side; a larger one
        # is a RuntimeError in the first training batch. Without resize the images' sizes are not
        # known here. (resize is declared first, so it is validated by now.)
        resize = info.data.get("resize")
        if v is not None and resize is not None and any(c > r + 2 * v.padding for c, r in zip(v.size, resize)):
            fits = f"augment.resize {list(resize)}" + (f" plus padding {v.padding} on each side" if v.padding else "")
            raise ValueError(f"size {list(v.size)} is larger than {fits}; make the crop smaller or the resize larger")
        return v


class SchedulerSection(_Section):
    name: Literal["none", "cosine", "step"] = "cosine"
    step_size: PositiveInt = Field(10, description="step: epochs between decays.")
    gamma: StrictFloat = Field(0.1, gt=0.0, le=1.0)
    warmup_epochs: StrictInt = Field(0, ge=0)


class TrainSection(_Section):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: StrictFloat = Field(0.1, gt=0.0)
    momentum: StrictFloat = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: StrictFloat = Field(5e-4, ge=0.0)
    label_smoothing: StrictFloat = Field(0.0, ge=0.0, lt=1.0)
    scheduler: SchedulerSection = SchedulerSection()
    num_workers: StrictInt = Field(0, ge=0, le=256)
    eval_every: PositiveInt = 1
    selection_metric: Literal["val_acc", "val_loss"] = "val_acc"
    max_steps: PositiveInt | None = Field(None, description="Stop after this many optimizer steps.")
    log_every: PositiveInt = 10


class DeterminismSection(_Section):
    mode: Literal["strict", "relaxed"] = Field(
        "strict",
        description="strict: deterministic algorithms, cuDNN benchmark off, fail on ops without a "
        "deterministic implementation. relaxed: faster, and recorded as such in the run.",
    )
    threads: PositiveInt = Field(1, le=1024, description="torch intra-op threads; part of the numerics.")
    cpu_capability: Literal["default", "avx2", "avx512"] = Field(
        "avx2", description="ATEN_CPU_CAPABILITY: the CPU kernels' SIMD level; part of the numerics."
    )
    cublas_workspace_config: Literal[":4096:8", ":16:8"] = ":4096:8"
    seed_entrypoint: bool = Field(
        True,
        description="Bring-your-own runs: seed the command's Python processes (random, NumPy, torch on CPU and "
        "CUDA, DataLoader workers) from `seed` and apply `mode`, with no change to your files. Turn off only "
        "if your script seeds itself.",
    )


MIN_MEMORY = "128m"
MIN_CPUS = 0.01  # Docker refuses a smaller --cpus ("invalid argument"), but only as the container starts
MIN_SHM = "1m"


class ResourcesSection(_Section):
    """Checked here for form; `reproexec run` also checks cpus and cpuset against the host."""

    cpus: StrictFloat | None = Field(
        None, gt=0, le=4096, description=f"CPU quota for the run container (at least {MIN_CPUS})."
    )
    cpuset: str | None = Field(
        None,
        pattern=r"^[0-9]{1,4}(-[0-9]{1,4})?(,[0-9]{1,4}(-[0-9]{1,4})?)*$",
        description="CPUs the run may use, e.g. '0' or '0-1' or '0,2'.",
    )
    memory: str = Field("8g", pattern=_SIZE_RE, description=f"Memory limit (b, k, m or g; at least {MIN_MEMORY}).")
    shm_size: str = Field("1g", pattern=_SIZE_RE, description="/dev/shm for DataLoader workers.")
    pids_limit: StrictInt = Field(4096, ge=64, le=4_194_304)

    @field_validator("cpuset")
    @classmethod
    def _ranges(cls, v: str | None) -> str | None:
        for part in (v or "").split(","):
            a, _, b = part.partition("-")
            if b and int(b) < int(a):
                raise ValueError(f"range {part!r} runs backwards (write it low-high)")
        return v

    @field_validator("cpus")
    @classmethod
    def _cpus_floor(cls, v: float | None) -> float | None:
        if v is not None and v < MIN_CPUS:
            raise ValueError(f"at least {MIN_CPUS}, the smallest CPU quota Docker takes, e.g. 0.5")
        return v

    @field_validator("memory")
    @classmethod
    def _memory_floor(cls, v: str) -> str:
        if size_bytes(v) < size_bytes(MIN_MEMORY):
            raise ValueError(f"at least {MIN_MEMORY} (Python and torch alone need more), e.g. '8g'")
        return v

    @field_validator("shm_size")
    @classmethod
    def _shm_floor(cls, v: str) -> str:
        if size_bytes(v) < size_bytes(MIN_SHM):
            raise ValueError(f"at least {MIN_SHM}, e.g. '1g'")
        return v

    def cpu_list(self) -> set[int]:
        out: set[int] = set()
        for part in (self.cpuset or "").split(","):
            if part:
                a, _, b = part.partition("-")
                out.update(range(int(a), int(b or a) + 1))
        return out


DEFAULT_RESULTS = ("*.pt", "*.pth", "*.safetensors", "*.ckpt", "*.bin", "*.npy", "*.npz", "*.json", "*.jsonl", "*.csv")
DEFAULT_LOGS = ("stdout.log", "*.log", "*.txt", "events.out.tfevents.*")


class OutputSection(_Section):
    sample_predictions: StrictInt = Field(16, ge=0, le=256)
    results: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RESULTS),
        description="Bring-your-own runs: globs (matched against the file name, or the relative path when the "
        "glob has a '/') of the files that ARE the result; `reproexec rerun` decides its verdict by them.",
    )
    logs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LOGS),
        description="Bring-your-own runs: globs of log files. A log that differs is reported, never a reason for "
        "`differs` (scripts print timings). Files matching neither list are reported the same way.",
    )


class SmokeSection(_Section):
    steps: PositiveInt = Field(50, description="Optimizer steps of the built-in trainer's smoke run.")
    subset: PositiveInt = Field(
        100,
        description="Training images of the built-in trainer's smoke run; for a bring-your-own script, files "
        "per split (top-level folder) of the derived snapshot it runs on.",
    )
    max_seconds: StrictFloat = Field(
        600.0,
        gt=0,
        description="A smoke run still going after this long is stopped; the invariants use what it logged.",
    )
    min_loss_drop: StrictFloat = Field(0.05, ge=0.0, lt=1.0, description="Required relative loss decrease.")
    ranges: dict[str, tuple[StrictFloat, StrictFloat]] = Field(
        default_factory=dict, description="metric name → [low, high] the smoke run must land in."
    )


class Config(_Section):
    name: str = Field(..., pattern=NAME_RE, description="Config name; part of every run id.")
    seed: StrictInt = Field(1337, ge=0, lt=2**32)
    env: EnvSection = EnvSection()
    data: DataSection
    model: ModelSection = ModelSection()
    augment: AugmentSection = AugmentSection()
    train: TrainSection = TrainSection()
    determinism: DeterminismSection = DeterminismSection()
    resources: ResourcesSection = ResourcesSection()
    output: OutputSection = OutputSection()
    smoke: SmokeSection = SmokeSection()
    entrypoint: list[str] | None = Field(
        None,
        min_length=1,
        description="Bring your own training command instead of the built-in trainer. Arguments may use "
        f"${{VAR}} (or $VAR) for {', '.join(ENTRYPOINT_VARS)}; $$ is a literal $.",
    )
    tolerance: dict[str, Annotated[StrictFloat, Field(ge=0.0)]] = Field(
        default_factory=dict, description="metric → absolute tolerance used by `reproexec rerun`."
    )

    @field_validator("entrypoint")
    @classmethod
    def _known_variables(cls, v: list[str] | None) -> list[str] | None:
        for i, arg in enumerate(v or []):
            template = string.Template(arg)
            if not template.is_valid():
                raise ValueError(f"argument {i} {arg!r} has a '$' that starts no variable (write $$ for a literal $)")
            unknown = [n for n in template.get_identifiers() if n not in ENTRYPOINT_VARS]
            if unknown:
                raise ValueError(
                    f"argument {i} {arg!r} uses ${{{unknown[0]}}}, which reproexec does not define "
                    f"(it defines {', '.join(ENTRYPOINT_VARS)}; write $$ for a literal $)"
                )
        return v

    def resolved(self) -> dict[str, Any]:
        """Every field that applies, defaults included, as plain JSON-able data (what a run records).
        A bring-your-own run has no built-in model, augmentation, training or smoke settings."""
        data = self.model_dump(mode="json")
        if self.entrypoint:
            for section in BUILTIN_ONLY:
                data.pop(section)
            data["output"].pop("sample_predictions")
        else:
            for section, key in ENTRYPOINT_ONLY:
                data[section].pop(key)
        return data


class LoadedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    config: Config
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, relpath: str) -> Path:
        p = Path(relpath).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()


def load_config(path: str | Path) -> LoadedConfig:
    path = Path(path)
    _, raw = read_yaml_file(path)
    return LoadedConfig(config=validate_config(raw, str(path)), path=path.resolve())


def read_yaml_file(
    path: Path, what: str = "config file", missing_hint: str = "pass the path of a config.yaml"
) -> tuple[str, dict[str, Any]]:
    """The text of a YAML file (a config or a sweep file) and its mapping: at most MAX_CONFIG_BYTES
    of a regular file, UTF-8, parsed by parse_yaml; ConfigError naming the file otherwise."""
    try:
        data = read_bounded(path, MAX_CONFIG_BYTES)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", missing_hint) from None
    except UnreadableFile as e:
        if e.errno == errno.EFBIG:
            raise ConfigError(
                f"{what} {path} is larger than {MAX_CONFIG_BYTES:,} bytes", f"a {what} is a short YAML file"
            ) from None
        raise ConfigError(
            f"{what} {path} cannot be read: it is {e.strerror}", "pass a readable UTF-8 YAML file"
        ) from None
    except OSError as e:
        raise ConfigError(
            f"{what} {path} cannot be read: {e.strerror or e}", "pass a readable UTF-8 YAML file"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text: {e.reason} at byte {e.start}", "save it as UTF-8"
        ) from None
    return text, parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """YAML → a mapping. Refused, each as a ConfigError naming the line: anchors and aliases (&x / *x),
    which add nothing a config needs (the resolved config writes every value out anyway) and nest
    into exponential expansions (a 436-byte "billion laughs" file), and merge keys (<<) with them; a
    key twice in one mapping, which YAML would silently resolve to the last value; nesting deeper
    than MAX_YAML_DEPTH."""
    import yaml

    try:
        raw = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except _Refused as e:
        raise ConfigError(f"{source}: {e.problem}", e.hint) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}", "fix the YAML syntax there") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of sections, not {type(raw).__name__}",
            "start from examples/digits/config.yaml",
        )
    return raw


class _Refused(Exception):
    """What the loader refuses; parse_yaml turns it into a ConfigError."""

    def __init__(self, problem: str, hint: str):
        super().__init__(problem)
        self.problem, self.hint = problem, hint


@functools.cache
def _loader() -> Any:
    import yaml  # only when a config is parsed: keeps `reproexec --help` fast

    class StrictLoader(yaml.SafeLoader):
        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self.depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            line = event.start_mark.line + 1
            if self.check_event(yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                what = f"alias *{event.anchor}" if self.check_event(yaml.AliasEvent) else f"anchor &{event.anchor}"
                raise _Refused(
                    f"YAML anchors and aliases are not allowed ({what} at line {line})",
                    "write the values out where they are used",
                )
            if self.depth >= MAX_YAML_DEPTH:
                raise _Refused(
                    f"YAML nested too deeply (more than {MAX_YAML_DEPTH} levels at line {line})",
                    "a config nests a few sections deep; fix the brackets or indentation there",
                )
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            first: dict[Any, int] = {}
            for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
                line = key_node.start_mark.line + 1
                if key_node.tag == "tag:yaml.org,2002:merge":  # without aliases `<<:` only hides keys
                    raise _Refused(f"YAML merge keys (<<) are not allowed (line {line})", "write the keys out")
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    continue  # SafeLoader refuses it, naming the line
                if key in first:
                    raise _Refused(
                        f"duplicate key {_short(key)} at line {line} (first at line {first[key]})",
                        "keep one of the two: YAML would silently use the last",
                    )
                first[key] = line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def validate_config(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        details = [_describe(err) for err in e.errors(include_url=False)]
        n = len(details)
        raise ConfigError(
            f"{source}: {n} invalid field{'s' if n != 1 else ''}",
            "correct the fields listed above; `reproexec config schema` lists every field",
            details=details,
        ) from None


def config_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "reproexec run config"
    return schema


def _describe(err: dict[str, Any]) -> str:
    loc = _loc(err["loc"])
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(err["loc"][:-1])
        near = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        suggestion = f"did you mean '{near[0]}'? " if near else ""
        return f"{loc}: unknown key; {suggestion}allowed here: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{loc}: required field is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{loc} = {_short(value)}: {msg}"


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Config
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(part)
        model = _model_of(field.annotation) if field else None
    return sorted(getattr(model, "model_fields", {}).keys()) if model else []


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        m = _model_of(arg)
        if m is not None:
            return m
    return None
