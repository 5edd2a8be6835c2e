"""`reproexec env diff A B`: every environment difference, and whether it can change the numbers.

A side is a run id (or run folder), a bundle, an image tag, or `host`. Each becomes a flat view
(`torch.version`, `package numpy`, `cpu.flags`, `determinism.threads`, ...) built from the
environment the trainer captured inside the container (`environment.json`) plus what `run.json`
recorded; the views are compared key by key and each difference is classified by the rules
below — the *why* is part of the output, so a user sees at once why two runs differ.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproexec.errors import EngineError, ReproexecError
from reproexec.fsutil import MAX_JSON_BYTES, read_json_object

# Packages whose code computes (or decodes, or dispatches) the tensors a run trains on.
NUMERIC_PACKAGES = re.compile(
    r"^(torch|torchvision|torchaudio|numpy|scipy|pillow|triton|opencv.*|mkl.*|intel-openmp|nvidia-.*|cuda-.*)$"
)
# Debian packages of the image that compute for the trainer: glibc's libm (exp, log, ...) and OpenMP.
NUMERIC_DEBS = re.compile(r"^(libc6|libgomp1)$")
# CPU features the math libraries pick kernels by (ATen, oneDNN, MKL): a difference in them can change
# the numbers, unless every library is pinned to a level both CPUs have (then the extra ones go unused).
DISPATCH_FLAGS = re.compile(r"^(sse\d.*|ssse3|avx.*|fma|f16c|amx.*)$")
# The capture is a few levels deep; an environment.json nested deeper was not written by it (and
# walking ~1000 levels json.loads accepts could exhaust Python's stack).
MAX_DEPTH = 8

# (key pattern, can change numerics, why) — first match wins.
RULES: list[tuple[str, bool, str]] = [
    (r"^run\.arch$", True, "another instruction set: other kernels, other rounding"),
    (
        r"^(run|cpu_math)\.numerics_class$",
        True,
        "arm64: the SVE vector length picks other kernels in oneDNN/ACL and the BLAS (no SVE, SVE 128, "
        "SVE 256 and SVE 512 each train different weights)",
    ),
    (r"^run\.emulated$", False, "qemu-user executes the same instructions; the numerics class is what counts"),
    (r"^python\.version$", True, "another interpreter takes other wheels and C extensions"),
    (r"^torch\.(intra_op_threads|interop_threads)$", True, "reductions are split differently across threads"),
    (r"^torch\.cpu_capability$", True, "CPU kernels dispatch on this SIMD level (avx2 vs avx512 round differently)"),
    (r"^torch\.", True, "another torch build"),
    (r"^cuda\.devices\.\d+\.(uuid|total_memory)$", False, "another card of the same model computes the same"),
    (r"^cuda\.", True, "cuBLAS/cuDNN are bitwise stable only for the same CUDA, cuDNN, GPU architecture and SM count"),
    (r"^cpu_math\.", True, "the level a CPU math library really ran at (ATen, MKL's CNR branch, oneDNN's ISA)"),
    (r"^cpu\.(flags|model_name|vendor|family|model|stepping)", True, "CPU kernels dispatch on the CPU's features"),
    (r"^cpu\.", False, "thread count and dispatch level are pinned separately"),
    (r"^os\.glibc$", True, "glibc's libm computes exp/log/sin differently between versions"),
    (r"^(os\.|platform$)", False, "the kernel and OS release do not compute tensors"),
    (
        r"^env\.(ATEN_CPU_CAPABILITY|OMP_NUM_THREADS|MKL_NUM_THREADS|OPENBLAS_NUM_THREADS|CUBLAS_WORKSPACE_CONFIG"
        r"|CUDA_VISIBLE_DEVICES|TORCH_ALLOW_TF32_CUBLAS_OVERRIDE|PYTHONHASHSEED|KMP_AFFINITY|MKL_CBWR|MKL_DYNAMIC"
        r"|MKL_ENABLE_INSTRUCTIONS|OMP_DYNAMIC|ONEDNN_MAX_CPU_ISA|DNNL_MAX_CPU_ISA|ONEDNN_DEFAULT_FPMATH_MODE"
        r"|ONEDNN_CPU_ISA_HINTS|OPENBLAS_CORETYPE)$",
        True,
        "read by torch, MKL, oneDNN, OpenMP or cuBLAS when they start: picks kernels, branches or threads",
    ),
    (r"^env\.", False, "not read by the numerical libraries"),
    (r"^determinism\.|^seed$", True, "part of the Randomness box: seeds, algorithms, threads, dispatch level"),
    (r"^image\.", True, "another image: the package and library lines say what is inside"),
    (r"^host\.|^python\.(executable|implementation)$", False, "names and paths do not compute"),
]


@dataclass(frozen=True)
class Difference:
    key: str
    a: str
    b: str
    numerics: bool
    why: str


@dataclass(frozen=True)
class EnvView:
    label: str
    values: dict[str, str]


def classify(key: str) -> tuple[bool, str]:
    if key.startswith("package "):
        if NUMERIC_PACKAGES.match(key[len("package ") :]):
            return True, "numerical library: kernels, defaults and decoding change between versions"
        return False, "does not compute the tensors a run trains on"
    if key.startswith("deb "):
        if NUMERIC_DEBS.match(key[len("deb ") :]):
            return True, "Debian package of the image that computes for the trainer (libm, OpenMP)"
        return False, "Debian package of the image (its base moved on); does not compute the tensors"
    for pattern, numerics, why in RULES:
        if re.search(pattern, key):
            return numerics, why
    return True, "unknown to reproexec: assume it can"


def diff_env(a: EnvView, b: EnvView) -> list[Difference]:
    out = []
    for key in sorted(set(a.values) | set(b.values)):
        va, vb = a.values.get(key, "—"), b.values.get(key, "—")
        if va == vb:
            continue
        if (
            key == "image.id"
            and a.values.get("image.content_hash")
            and a.values.get("image.content_hash") == b.values.get("image.content_hash")
        ):
            numerics, why = (
                False,
                (
                    "two builds of the same content tag (the same recorded Dockerfile, lockfile, wheels "
                    "and base layers): Docker gives every build a new id"
                ),
            )
        elif key == "cpu.flags":
            fa, fb = set(va.split()), set(vb.split())
            va = " ".join(sorted(fa - fb)) or "—"
            vb = " ".join(sorted(fb - fa)) or "—"
            numerics, why = classify_cpu_flags(fa ^ fb, a.values, b.values)
        else:
            numerics, why = classify(key)
        out.append(Difference(key, va, vb, numerics, why))
    return sorted(out, key=lambda d: (not d.numerics, d.key))


def classify_cpu_flags(differing: set[str], a: dict[str, str], b: dict[str, str]) -> tuple[bool, str]:
    """CPU flags change the numbers only where a math library dispatches on them and is not pinned."""
    dispatch = sorted(f for f in differing if DISPATCH_FLAGS.match(f))
    if not dispatch:
        return False, "no feature a CPU math library dispatches on differs"
    unpinned = sorted(set(unpinned_libraries(a)) | set(unpinned_libraries(b)))
    if unpinned:
        return True, f"CPU kernels dispatch on {', '.join(dispatch)}, and nothing pins {', '.join(unpinned)}"
    return False, (
        f"{', '.join(dispatch)} differ, but ATen, oneDNN and MKL are pinned on both sides "
        "(env.ATEN_CPU_CAPABILITY, env.ONEDNN_MAX_CPU_ISA, env.MKL_CBWR), so they go unused"
    )


def unpinned_libraries(values: dict[str, str]) -> list[str]:
    """The CPU math libraries a view's run did not pin to a fixed level (from its env and read-back)."""
    out = []
    if not values.get("env.ATEN_CPU_CAPABILITY"):
        out.append("ATen")
    if values.get("cpu_math.onednn.enabled") != "False" and not values.get("env.ONEDNN_MAX_CPU_ISA"):
        out.append("oneDNN")
    branch = values.get("cpu_math.mkl.cnr_branch") or ("OFF" if not values.get("env.MKL_CBWR") else None)
    if branch is not None and branch.split(",")[0] in ("OFF", "AUTO"):  # AUTO: MKL still dispatches by CPU
        out.append("MKL")
    return out


def view_from_parts(label: str, environment: dict[str, Any] | None, record: dict[str, Any] | None) -> EnvView:
    """The flat view of a captured environment and a run record, both read from files someone else
    wrote: a section of the wrong type counts as missing."""
    env = _dict(environment)
    values: dict[str, str] = {}
    py = _dict(env.get("python"))
    if py:
        values["python.version"] = (str(py.get("version", "")).split() or [""])[0]
        values["python.implementation"] = str(py.get("implementation", ""))
    for name, version in _dict(env.get("packages")).items():
        values[f"package {name.lower()}"] = _scalar(version)
    for name, version in _dict(env.get("debian_packages")).items():
        values[f"deb {name}"] = _scalar(version)
    for section in ("torch", "cuda", "cpu", "cpu_math", "os"):
        _flatten(env.get(section), section, values)
    values.pop("torch.parallel_info", None)  # a rendering of the thread lines above
    if env.get("platform"):
        values["platform"] = _scalar(env["platform"])
    for k, v in _dict(env.get("env")).items():
        if v is not None:
            values[f"env.{k}"] = _scalar(v)
    rec = _dict(record)
    rnd = _dict(rec.get("randomness"))
    if "seed" in rnd:
        values["seed"] = _scalar(rnd["seed"])
    for k, v in _dict(rnd.get("determinism")).items():
        values[f"determinism.{k}"] = _scalar(v)
    image = _dict(rec.get("image"))
    if image.get("id"):
        values["image.id"] = _scalar(image["id"])
    if image.get("content_hash"):
        values["image.content_hash"] = _scalar(image["content_hash"])
    run_platform = _dict(rec.get("platform"))
    if rec and not run_platform:  # run.json from before the platform was recorded: amd64, not emulated
        run_platform = {"arch": "amd64", "numerics_class": "amd64", "emulated": None}
    for key in ("arch", "numerics_class"):
        if run_platform.get(key):
            values[f"run.{key}"] = _scalar(run_platform[key])
    if run_platform:
        emulated = _dict(run_platform.get("emulated"))
        values["run.emulated"] = f"{emulated.get('by')} {emulated.get('cpu')}" if emulated else "no"
    host = _dict(rec.get("owner")).get("host")
    if host:
        values["host.name"] = _scalar(host)
    return EnvView(label=label, values=values)


def _dict(obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else {}


def _scalar(v: Any) -> str:
    """A value as text; a list or an object where one value was expected is not walked (it may be
    nested as deep as json.loads allows, and str() of that would exhaust the stack)."""
    return "(not a single value)" if isinstance(v, (dict, list)) else str(v)


def _flatten(obj: Any, prefix: str, out: dict[str, str], depth: int = 0) -> None:
    if obj is None:
        return
    if isinstance(obj, (dict, list)) and depth >= MAX_DEPTH:
        out[prefix] = f"(nested deeper than {MAX_DEPTH} levels)"
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}", out, depth + 1)
    elif isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj):
        for i, x in enumerate(obj):
            _flatten(x, f"{prefix}.{i}", out, depth + 1)
    elif isinstance(obj, list):
        out[prefix] = " ".join(str(x) for x in obj)
    else:
        out[prefix] = str(obj)


# -- the sides ------------------------------------------------------------------------------------
def view_of_run_dir(path: Path, label: str | None = None) -> EnvView:
    return view_from_parts(
        label or path.name, read_json_object(path / "environment.json"), read_json_object(path / "run.json")
    )


def view_of_bundle(path: Path) -> EnvView:
    """A bundle from elsewhere, read as `reproexec import` reads it (bundle.open_bundle: every member
    checked, run.json bounded and validated); environment.json bounded (one that is too large, not
    JSON or not an object counts as missing)."""
    from reproexec.runs.bundle import open_bundle

    with open_bundle(path) as b:
        env_raw = _member_bytes(b.tar, b.by_name.get(f"{b.run_id}/environment.json"), MAX_JSON_BYTES)
        record, run_id = b.record, b.run_id
    try:
        environment = json.loads(env_raw) if env_raw is not None and len(env_raw) <= MAX_JSON_BYTES else None
    except (ValueError, RecursionError):
        environment = None
    return view_from_parts(f"{run_id} (bundle)", environment if isinstance(environment, dict) else None, record)


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo | None, limit: int) -> bytes | None:
    """A regular member's bytes, at most `limit + 1` of them (a caller's parser refuses more); None
    if there is no such member."""
    f = tar.extractfile(member) if member is not None and member.isreg() else None
    return f.read(limit + 1) if f is not None else None


CAPTURE = "import json; from reproexec.runtime.environment import capture_environment; print(json.dumps(capture_environment()))"


def view_of_image(engine: Any, tag: str) -> EnvView:
    """The environment inside an image, captured by running reproexec's own capture in it: the image
    needs a `python` that imports reproexec (a run image does)."""
    info = engine.image(tag)
    try:
        result = engine.run_capture(tag, ["python", "-c", CAPTURE])
    except EngineError as e:  # e.g. the image has no `python` at all: the container cannot start
        raise _no_capture(tag, e.message.splitlines()[-5:]) from None
    lines = result.output.strip().splitlines()
    try:
        env = json.loads(lines[-1]) if result.exit_code == 0 and lines else None
    except (ValueError, RecursionError):
        env = None
    if not isinstance(env, dict):
        raise _no_capture(tag, lines[-5:])
    return view_from_parts(tag, env, {"image": {"id": info.id if info else None}})


def _no_capture(tag: str, details: list[str]) -> ReproexecError:
    return ReproexecError(
        f"could not read the environment inside image {tag}: it needs a `python` that can import reproexec",
        "pass a run image (the `image` that `reproexec runs show RUN` names), a run id, a bundle or host",
        details=details,
    )


def view_of_host() -> EnvView:
    import socket

    proc = subprocess.run([sys.executable, "-c", CAPTURE], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReproexecError(
            "could not capture this host's environment",
            "install the trainer's libraries (torch)",
            details=proc.stderr.splitlines()[-5:],
        )
    return view_from_parts(
        "host", json.loads(proc.stdout.strip().splitlines()[-1]), {"owner": {"host": socket.gethostname()}}
    )


def resolve_side(ref: str, runs_dir: Path, engine_factory: Any) -> EnvView:
    from reproexec.runs.store import RUN_JSON, load_run

    if ref == "host":
        return view_of_host()
    p = Path(ref)
    if p.is_file() and (p.name.endswith((".tar", ".tar.gz", ".tgz"))):
        return view_of_bundle(p)
    if (p / RUN_JSON).is_file() or (runs_dir / ref / RUN_JSON).is_file():
        record = load_run(ref, runs_dir)
        return view_of_run_dir(record.path, record.run_id)
    if ":" in ref or ref.startswith("sha256"):
        engine = engine_factory()
        if engine.image(ref) is not None:
            return view_of_image(engine, ref)
    raise ReproexecError(
        f"{ref!r} is not a run id, a bundle, an image tag or 'host'",
        "pass a run id from `reproexec runs list`, a run.tar.gz, an image tag, or host",
    )
