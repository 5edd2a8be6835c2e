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

from reproexec.errors import ReproexecError

# Packages whose code computes (or decodes, or dispatches) the tensors a run trains on.
NUMERIC_PACKAGES = re.compile(r"^(torch|torchvision|torchaudio|numpy|scipy|pillow|triton|opencv.*|mkl.*|intel-openmp|nvidia-.*|cuda-.*)$")
# Debian packages of the image that compute for the trainer: glibc's libm (exp, log, ...) and OpenMP.
NUMERIC_DEBS = re.compile(r"^(libc6|libgomp1)$")
# CPU features the math libraries pick kernels by (ATen, oneDNN, MKL): a difference in them can change
# the numbers, unless every library is pinned to a level both CPUs have (then the extra ones go unused).
DISPATCH_FLAGS = re.compile(r"^(sse\d.*|ssse3|avx.*|fma|f16c|amx.*)$")
# The environment variables that pin the CPU math libraries (reproexec.runtime.seeding sets them).
PIN_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")

# (key pattern, can change numerics, why) — first match wins.
RULES: list[tuple[str, bool, str]] = [
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
    (r"^env\.(ATEN_CPU_CAPABILITY|OMP_NUM_THREADS|MKL_NUM_THREADS|OPENBLAS_NUM_THREADS|CUBLAS_WORKSPACE_CONFIG"
     r"|CUDA_VISIBLE_DEVICES|TORCH_ALLOW_TF32_CUBLAS_OVERRIDE|PYTHONHASHSEED|KMP_AFFINITY|MKL_CBWR|MKL_DYNAMIC"
     r"|MKL_ENABLE_INSTRUCTIONS|OMP_DYNAMIC|ONEDNN_MAX_CPU_ISA|DNNL_MAX_CPU_ISA|ONEDNN_DEFAULT_FPMATH_MODE"
     r"|ONEDNN_CPU_ISA_HINTS|OPENBLAS_CORETYPE)$", True,
     "read by torch, MKL, oneDNN, OpenMP or cuBLAS when they start: picks kernels, branches or threads"),
    (r"^env\.", False, "not read by the numerical libraries"),
    (r"^determinism\.|^seed$", True, "part of the Randomness box: seeds, algorithms, threads, dispatch level"),
    (r"^image\.", True, "another image: the package and library lines say what is inside"),
    (r"^host\.|^python\.(executable|implementation)$", False, "names and paths do not compute"),
]  # fmt: skip


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
        if key == "image.id" and a.values.get("image.content_hash") and a.values.get("image.content_hash") == b.values.get("image.content_hash"):
            numerics, why = False, ("two builds of the same content tag (the same recorded Dockerfile, lockfile, wheels "
                                    "and base layers): Docker gives every build a new id")  # fmt: skip
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
    return False, (f"{', '.join(dispatch)} differ, but ATen, oneDNN and MKL are pinned on both sides "
                   "(env.ATEN_CPU_CAPABILITY, env.ONEDNN_MAX_CPU_ISA, env.MKL_CBWR), so they go unused")


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
    env = environment or {}
    values: dict[str, str] = {}
    py = env.get("python") or {}
    if py:
        values["python.version"] = str(py.get("version", "")).split()[0]
        values["python.implementation"] = str(py.get("implementation", ""))
    for name, version in (env.get("packages") or {}).items():
        values[f"package {name.lower()}"] = str(version)
    for name, version in (env.get("debian_packages") or {}).items():
        values[f"deb {name}"] = str(version)
    for section in ("torch", "cuda", "cpu", "cpu_math", "os"):
        _flatten(env.get(section), section, values)
    values.pop("torch.parallel_info", None)  # a rendering of the thread lines above
    if env.get("platform"):
        values["platform"] = str(env["platform"])
    for k, v in (env.get("env") or {}).items():
        if v is not None:
            values[f"env.{k}"] = str(v)
    rec = record or {}
    rnd = rec.get("randomness") or {}
    if "seed" in rnd:
        values["seed"] = str(rnd["seed"])
    for k, v in (rnd.get("determinism") or {}).items():
        values[f"determinism.{k}"] = str(v)
    image = rec.get("image") or {}
    if image.get("id"):
        values["image.id"] = str(image["id"])
    if image.get("content_hash"):
        values["image.content_hash"] = str(image["content_hash"])
    host = (rec.get("owner") or {}).get("host")
    if host:
        values["host.name"] = host
    return EnvView(label=label, values=values)


def _flatten(obj: Any, prefix: str, out: dict[str, str]) -> None:
    if obj is None:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}", out)
    elif isinstance(obj, list) and any(isinstance(x, dict) for x in obj):
        for i, x in enumerate(obj):
            _flatten(x, f"{prefix}.{i}", out)
    elif isinstance(obj, list):
        out[prefix] = " ".join(str(x) for x in obj)
    else:
        out[prefix] = str(obj)


# -- the sides ------------------------------------------------------------------------------------
def view_of_run_dir(path: Path, label: str | None = None) -> EnvView:
    return view_from_parts(label or path.name, _read_json(path / "environment.json"), _read_json(path / "run.json"))


def view_of_bundle(path: Path) -> EnvView:
    from reproexec.bundle import check_members

    with tarfile.open(path, "r:*") as tar:
        members = tar.getmembers()
        run_id = check_members(members, str(path))
        docs = {}
        for name in ("environment.json", "run.json"):
            try:
                f = tar.extractfile(f"{run_id}/{name}")
                docs[name] = json.load(f) if f else None
            except (KeyError, json.JSONDecodeError):
                docs[name] = None
    return view_from_parts(f"{run_id} (bundle)", docs["environment.json"], docs["run.json"])


CAPTURE = "import json; from reproexec.runtime.environment import capture_environment; print(json.dumps(capture_environment()))"


def view_of_image(engine: Any, tag: str) -> EnvView:
    info = engine.image(tag)
    result = engine.run_capture(tag, ["python", "-c", CAPTURE])
    if result.exit_code != 0:
        raise ReproexecError(f"could not read the environment inside image {tag}", details=result.output.splitlines()[-5:])
    env = json.loads(result.output.strip().splitlines()[-1])
    return view_from_parts(tag, env, {"image": {"id": info.id if info else None}})


def view_of_host() -> EnvView:
    import socket

    proc = subprocess.run([sys.executable, "-c", CAPTURE], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReproexecError("could not capture this host's environment", "install the trainer's libraries (torch)",
                             details=proc.stderr.splitlines()[-5:])
    return view_from_parts("host", json.loads(proc.stdout.strip().splitlines()[-1]), {"owner": {"host": socket.gethostname()}})


def resolve_side(ref: str, runs_dir: Path, engine_factory: Any) -> EnvView:
    from reproexec.runstore import RUN_JSON, load_run

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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
