"""The sweep file: a base config, named variants deep-merged over it, seeds, a baseline and a metric.

    name: aug-ablation
    base: ../digits/config.yaml          # relative to this file
    seeds: [0, 1, 2, 3, 4]
    baseline: none
    metric: val_acc
    variants:
      none:  {augment: {random_crop: null, rotation_degrees: 0}}
      heavy: {augment: {rotation_degrees: 20, hflip_prob: 0.5}}
    slurm: {partition: debug, cpus_per_task: 1, mem: 4G, time: 30, sbatch: {qos: normal}}

Parse → validate everything (the sweep file's own fields, then every variant merged over the base
config through the run config's validator) → one ConfigError listing every problem, each naming the
variant and the field. Nothing runs before this passes. Paths inside variants are relative to the
base config's folder, as they are in the base config itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from reproexec.config import NAME_RE, Config, LoadedConfig, read_yaml_file, validate_config
from reproexec.errors import ConfigError

# The trainer's final metrics (summary.json "final") and which way is better.
METRICS: dict[str, Literal["max", "min"]] = {"val_acc": "max", "val_loss": "min", "train_loss": "min"}
_SBATCH_KEY = r"^[a-z][a-z0-9_-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlurmSection(_Strict):
    partition: str | None = Field(None, description="sbatch --partition; default: the cluster's default partition.")
    cpus_per_task: Annotated[StrictInt, Field(ge=1)] = Field(1, description="sbatch --cpus-per-task for each cell.")
    mem: str | None = Field(None, pattern=r"^[0-9]+[KMGT]?$", description="sbatch --mem per cell, e.g. 8G.")
    time: Annotated[StrictInt, Field(ge=1)] = Field(60, description="sbatch --time per cell, in minutes.")
    sbatch: dict[Annotated[str, Field(pattern=_SBATCH_KEY)], str | int | bool] = Field(
        default_factory=dict, description="Extra sbatch options, e.g. {qos: normal, account: vision}."
    )
    image_dir: str | None = Field(
        None,
        description="For nodes that do not share this host's Docker engine: a folder every node sees. The "
        "image is `docker save`d there once and `docker load`ed by a job whose engine lacks it, checked by "
        "its content hash. Relative to the sweep file.",
    )
    poll_s: StrictFloat = Field(3.0, gt=0, le=300, description="How often the sweep asks Slurm for job states.")


class SweepFile(_Strict):
    name: str = Field(..., pattern=NAME_RE, description="Sweep name; part of the sweep folder's name.")
    base: str = Field(..., description="The base config, relative to the sweep file.")
    seeds: list[Annotated[StrictInt, Field(ge=0, lt=2**32)]] = Field(
        ..., min_length=1, description="Every variant runs once per seed."
    )
    baseline: str = Field(..., description="The variant the others are compared against.")
    metric: str = Field("val_acc", description=f"The final metric to compare: {', '.join(METRICS)}.")
    variants: dict[Annotated[str, Field(pattern=NAME_RE)], dict[str, Any] | None] = Field(
        ..., min_length=1, description="variant name → partial config deep-merged over the base ({} = the base)."
    )
    slurm: SlurmSection = SlurmSection()


@dataclass(frozen=True)
class Cell:
    key: str  # "<variant>-s<seed>": unique in a sweep, used in file names
    variant: str
    seed: int
    config: Config


@dataclass
class SweepSpec:
    """A validated sweep: the file, the base config, every cell's config, each variant's differences."""

    path: Path
    text: str
    file: SweepFile
    base: LoadedConfig
    cells: list[Cell]
    differences: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)

    @property
    def goal(self) -> Literal["max", "min"]:
        return METRICS[self.file.metric]

    @property
    def variants(self) -> list[str]:
        return list(self.file.variants)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: mappings merge key by key, anything else (lists, null) replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1}; lists and scalars are leaves."""
    if not isinstance(d, dict) or not d:
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_differences(
    a: dict[str, Any], b: dict[str, Any], *, ignore: tuple[str, ...] = ()
) -> list[tuple[str, Any, Any]]:
    """Every leaf that differs between two resolved configs: (dotted path, a's value, b's value)."""
    fa, fb = flatten(a), flatten(b)
    keys = sorted(set(fa) | set(fb))
    return [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k) and not k.startswith(ignore)]


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file and every cell; one ConfigError lists every problem."""
    path = Path(path)
    text, raw = read_yaml_file(path, "sweep file", "pass the path of a sweep.yaml (see examples/ablation/)")
    return validate_sweep(raw, path.resolve(), text)


def validate_sweep(raw: dict[str, Any], path: Path, text: str = "") -> SweepSpec:
    errors: list[str] = []
    try:
        sweep = SweepFile.model_validate(raw)
    except ValidationError as e:
        errors += [_describe(err) for err in e.errors(include_url=False)]
        sweep = None
    # What can be checked without a valid sweep file is checked anyway, so one pass shows everything.
    variants = raw.get("variants") if isinstance(raw.get("variants"), dict) else {}
    seeds = raw.get("seeds") if isinstance(raw.get("seeds"), list) else []
    if len(set(map(repr, seeds))) != len(seeds):
        dupes = sorted({s for s in seeds if seeds.count(s) > 1}, key=repr)
        errors.append(f"seeds: {dupes} appear more than once (each seed pairs one cell per variant)")
    baseline = raw.get("baseline")
    if isinstance(baseline, str) and variants and baseline not in variants:
        errors.append(
            f"baseline = {baseline!r}: not a variant; the variants are {', '.join(map(str, variants))}"
            " (add an empty variant `{}` to compare against the base config itself)"
        )
    metric = raw.get("metric", "val_acc")
    if isinstance(metric, str) and metric not in METRICS:
        errors.append(f"metric = {metric!r}: the trainer does not log it; choose one of {', '.join(METRICS)}")
    base: LoadedConfig | None = None
    base_raw: dict[str, Any] = {}
    base_ref = raw.get("base")
    if isinstance(base_ref, str):
        base_path = _relative(path, base_ref)
        try:  # read once: the variants merge over the same mapping the base was validated from
            _, base_raw = read_yaml_file(base_path)
            base = LoadedConfig(config=validate_config(base_raw, str(base_path)), path=base_path.resolve())
        except ConfigError as e:
            errors.append(f"base = {base_ref!r}: {e.message}")
            errors += [f"  base: {d}" for d in e.details]
    cells: list[Cell] = []
    differences: dict[str, list[tuple[str, Any, Any]]] = {}
    if base is not None:
        if base.config.entrypoint:
            errors.append(
                f"base = {base_ref!r}: has an entrypoint (bring-your-own script); a sweep compares the built-in "
                "trainer's metrics, so its cells must use the built-in trainer"
            )
        first_seed = next((s for s in seeds if isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32), 0)
        for name, over in variants.items():
            over = over if over is not None else {}
            if not isinstance(over, dict):
                continue  # already reported by the schema
            if "seed" in over:
                errors.append(f"variants.{name}.seed: set by the sweep's `seeds` list, not by a variant; remove it")
                continue
            merged = deep_merge(base_raw, over)
            merged["seed"] = first_seed
            try:
                cfg = validate_config(merged, f"variant {name}")
            except ConfigError as e:
                errors += [f"variants.{name}.{d}" for d in e.details]
                continue
            if cfg.entrypoint and not base.config.entrypoint:
                errors.append(f"variants.{name}.entrypoint: a sweep compares the built-in trainer's metrics; remove it")
            differences[str(name)] = config_differences(base.config.resolved(), cfg.resolved(), ignore=("seed",))
            if sweep is not None:
                for seed in sweep.seeds:
                    cells.append(Cell(f"{name}-s{seed}", str(name), seed, cfg.model_copy(update={"seed": seed})))
    if errors:
        n = len(errors)
        raise ConfigError(
            f"{path}: {n} problem{'s' if n != 1 else ''} in the sweep; nothing was run",
            "fix the fields listed above (variant fields follow `reproexec config schema`)",
            details=errors,
        )
    assert sweep is not None and base is not None
    return SweepSpec(path=path, text=text, file=sweep, base=base, cells=cells, differences=differences)


def _relative(sweep_path: Path, ref: str) -> Path:
    p = Path(ref).expanduser()
    return p if p.is_absolute() else (sweep_path.parent / p).resolve()


def resolve_sweep_path(spec: SweepSpec, ref: str) -> Path:
    return _relative(spec.path, ref)


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = _allowed(err["loc"][:-1])
        return f"{loc}: unknown key; allowed here: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{loc}: required field is missing"
    value = repr(err.get("input"))
    value = value if len(value) <= 60 else value[:57] + "..."
    return f"{loc} = {value}: {err['msg'].removeprefix('Value error, ')}"


def _allowed(loc: tuple[Any, ...]) -> list[str]:
    model: Any = SweepFile
    for part in loc:
        f = getattr(model, "model_fields", {}).get(part)
        model = f.annotation if f is not None and isinstance(f.annotation, type) else None
    return sorted(getattr(model, "model_fields", {}) or [])
