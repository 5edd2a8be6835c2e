"""Randomness and numerics: every seed, flag and thread count a run depends on, in one place.

Two halves. `pinned_environment` and `derive_seed` are pure (no torch import) so the host can compute
the environment a run container needs. `apply_determinism` sets the in-process state after torch is
imported and returns what it actually found, so the run records facts, not intentions.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from reproexec.errors import RunError
from reproexec.runtime.seeds import derive_seed, python_hash_seed  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # annotations only: this module imports without pydantic (benchmarks on bare machines)
    from reproexec.config import Config

# The ATen dispatch names torch reports (`torch.backends.cpu.get_cpu_capability()`) for each config value.
CPU_CAPABILITY_NAMES = {"default": "DEFAULT", "avx2": "AVX2", "avx512": "AVX512"}

# ATen is not the only CPU dispatcher under torch. Measured (benchmarks/cpu_pins.py local on one machine,
# benchmarks/cpu_pins.py machine --recipe torch-only + compare on an AVX2-only AMD EPYC and an AVX-512/AMX Intel Xeon):
# - oneDNN (torch's mkldnn convolutions) picks kernels by ISA (SSE41 vs AVX vs AVX2: three results);
#   pinned to the configured level's ISA, the two machines trained bit-identical weights although
#   their caches differ (L2 512 KiB vs 2 MiB), so its cache-size blocking did not change the sums.
# - MKL (torch's BLAS): MKL_CBWR=COMPATIBLE changes the weights; its ISA branches (AVX2, AVX512...)
#   exist only on Intel CPUs (MKL's documentation; read back here: MKL_CBWR=AVX2,STRICT runs
#   AVX2,STRICT on the Xeon but AUTO,STRICT on the EPYC, and the weights differ), so COMPATIBLE is
#   the one branch every x86-64 CPU runs alike. CNR mode also fixes MKL's cache sizes and reductions.
# - Turning mkldnn off was *not* identical across the two machines (and ran at 0.34-0.44x).
ONEDNN_MAX_CPU_ISA = {"default": "SSE41", "avx2": "AVX2", "avx512": "AVX512_CORE"}
# What oneDNN's verbose header calls each of those ISAs (`onednn_verbose,...,isa:<name>`; read on
# this project's EPYC and on the GPU machine's Xeon).
ONEDNN_ISA_NAMES = {
    "SSE41": "Intel SSE4.1",
    "AVX2": "Intel AVX2",
    "AVX512_CORE": "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions",
}
MKL_CBWR = "COMPATIBLE"
# CPU flags each level needs, as /proc/cpuinfo names them (what ATen, oneDNN and MKL check).
LEVEL_CPU_FLAGS = {
    "default": ("sse4_1",),
    "avx2": ("avx2", "fma"),
    "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
}


def pinned_environment(config: Config, arch: str | None = None) -> dict[str, str]:
    """Environment variables a run process needs *before* Python and torch start.

    The host passes these to the container (and `reproexec smoke` to its subprocess). They cannot
    be fixed later: PYTHONHASHSEED is read at interpreter start, ATEN_CPU_CAPABILITY when torch is
    imported, CUBLAS_WORKSPACE_CONFIG when the CUDA context is created. `arch` is where the run
    runs (amd64, arm64); None: this machine.
    """
    d = config.determinism
    return {
        "ATEN_CPU_CAPABILITY": d.cpu_capability,
        "CUBLAS_WORKSPACE_CONFIG": d.cublas_workspace_config,
        "PYTHONHASHSEED": python_hash_seed(config.seed),
        **cpu_math_environment(config, arch),
    }


def cpu_math_environment(config: Config, arch: str | None = None) -> dict[str, str]:
    """The variables that pin the CPU math libraries below ATen, each to a value (never "unset"), so
    whatever the host exported is overridden by the caller's `{**host, **pinned}`.

    Read when each library first runs (MKL at its first call, oneDNN at its first primitive), so they
    can still be applied in a process that imported torch but has not computed yet.

    On arm64 torch has no MKL, and oneDNN (with the Arm Compute Library) takes no ISA cap that
    changes its kernels (measured: ONEDNN_MAX_CPU_ISA=ASIMD trains the same weights as none): what
    is pinned there is the threads and oneDNN's strict f32 math; what cannot be pinned (the SVE
    vector length) is recorded as the run's numerics class (`numerics_class`).
    """
    d = config.determinism
    common = {
        "OMP_DYNAMIC": "FALSE",
        "OMP_NUM_THREADS": str(d.threads),
        "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",  # no implicit down-conversion (bf16/tf32) of f32 math
    }
    if (arch or machine_arch()) == "arm64":
        return common
    return {
        **common,
        "DNNL_MAX_CPU_ISA": ONEDNN_MAX_CPU_ISA[d.cpu_capability],  # oneDNN's older name for the same
        "MKL_CBWR": MKL_CBWR,
        "MKL_DYNAMIC": "FALSE",  # MKL's CNR conditions: a fixed thread count, no dynamic adjustment
        "MKL_NUM_THREADS": str(d.threads),
        "ONEDNN_CPU_ISA_HINTS": "NO_HINTS",  # PREFER_YMM would pick other AVX-512 kernels
        "ONEDNN_MAX_CPU_ISA": ONEDNN_MAX_CPU_ISA[d.cpu_capability],
    }


def check_cpu_capability(config: Config) -> str:
    """The ATen CPU dispatch level torch runs with; RunError unless it is the configured one.

    torch reads ATEN_CPU_CAPABILITY once, at import, and silently falls back to the best level the
    CPU has when the requested one is missing, so the only reliable check is to ask afterwards.
    """
    import torch

    wanted = config.determinism.cpu_capability
    actual = torch.backends.cpu.get_cpu_capability()
    if actual.upper() == CPU_CAPABILITY_NAMES[wanted]:
        return actual
    env = os.environ.get("ATEN_CPU_CAPABILITY")
    if env is not None and env.lower() == wanted:
        raise RunError(
            f"determinism.cpu_capability = {wanted!r}, but this CPU cannot run it: torch fell back to {actual}",
            f"run on a CPU with {wanted.upper()} support, or set determinism.cpu_capability to "
            f"{actual.lower()!r} (a different dispatch level changes the numerics; record it as a new baseline)",
        )
    raise RunError(
        f"determinism.cpu_capability = {wanted!r}, but torch was imported in this process with "
        f"{actual} (ATEN_CPU_CAPABILITY={env!r}); torch reads it only once, at import",
        f"start a fresh process with ATEN_CPU_CAPABILITY={wanted} set before torch is imported "
        "(`python -m reproexec.runtime.train` does this itself)",
    )


def cpu_flags() -> set[str] | None:
    """This CPU's feature flags as /proc/cpuinfo names them; None where that cannot be read."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    m = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(m.group(1).split()) if m else None


# `uname -m` names of the machines reproexec builds images and pins CPU math for, by Docker's name.
MACHINES = {"amd64": ("x86_64", "amd64"), "arm64": ("aarch64", "arm64")}


def arch_of(machine: str) -> str | None:
    """Docker's name (amd64, arm64) for a `uname -m` (x86_64, aarch64); None for any other."""
    return next((arch for arch, names in MACHINES.items() if machine.lower() in names), None)


def machine_arch() -> str:
    """This machine's arch (amd64 where it is neither: the checks refuse such a machine first)."""
    return arch_of(platform.machine()) or "amd64"


def check_machine(machine: str, where: str) -> str:
    """The arch (amd64, arm64) of `machine` (`uname -m` of where the training runs); RunError for
    any other, whose CPU math reproexec has no pins for."""
    arch = arch_of(machine) if machine else "amd64"
    if arch is None:
        raise RunError(
            f"{where} is {machine}, but reproexec builds linux/amd64 and linux/arm64 images and pins the CPU "
            "math of those two only",
            "run on an x86-64 or arm64 (aarch64) machine",
        )
    return arch


def check_arch_config(config: Config, arch: str, where: str) -> None:
    """ConfigError unless the config can run on `arch`: on arm64 ATen's level is `default`, the one
    level every arm64 CPU runs (its x86 levels do not exist there, and ATen's SVE256 level would
    make SVE 256 machines a class of their own twice over)."""
    from reproexec.errors import ConfigError

    level = config.determinism.cpu_capability
    if arch == "arm64" and level != "default":
        raise ConfigError(
            f"determinism.cpu_capability = {level!r} is an x86-64 level, but {where} runs linux/arm64",
            "set determinism.cpu_capability: default (ATen's one level every arm64 CPU runs; what still "
            "differs between arm64 CPUs is recorded as the run's numerics class)",
        )


# arm64 numerics classes (torch 2.14.1, 1 thread, deterministic; measured under qemu-user with each
# emulated CPU, tests/golden/arm64_weights.json): the SVE vector length picks other kernels in
# oneDNN/ACL and the BLAS. CPUs without SVE train alike (Apple silicon, Neoverse-N1/Graviton2,
# Cortex-A); SVE 128 (Neoverse-V2: Graviton4, Grace), SVE 256 (Graviton3) and SVE 512 (A64FX) each
# train their own weights.
_AT_HWCAP = 16
_HWCAP_SVE = 1 << 22
_PR_SVE_GET_VL = 51


def sve_vector_length() -> int | None:
    """This process's SVE vector length in bits; None without SVE (or off arm64 Linux)."""
    if arch_of(platform.machine()) != "arm64":
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.getauxval.restype = ctypes.c_ulong
        libc.getauxval.argtypes = [ctypes.c_ulong]
        if not libc.getauxval(_AT_HWCAP) & _HWCAP_SVE:
            return None
        vl = libc.prctl(_PR_SVE_GET_VL, 0, 0, 0, 0)
    except (OSError, AttributeError):
        return None
    return (vl & 0xFFFF) * 8 if vl > 0 else None


def numerics_class(arch: str | None = None, sve_bits: int | None = None) -> str:
    """The class of CPUs that train the same weights as this one, with the pins reproexec sets:
    on amd64 the pinned level decides (recorded elsewhere), so `amd64`; on arm64 `arm64-neon` (no
    SVE) or `arm64-sve<vector length in bits>`."""
    arch = arch or machine_arch()
    if arch != "arm64":
        return arch
    bits = sve_bits if sve_bits is not None else sve_vector_length()
    return f"arm64-sve{bits}" if bits else "arm64-neon"


# Run by a container's python3 (a base image has no reproexec; under the engine's emulation if any):
# prints `uname -m` and the SVE vector length in bits (0: none), for `numerics_class` on the host.
NUMERICS_PROBE = """
import ctypes, platform
bits = 0
if platform.machine() == "aarch64":
    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    libc.getauxval.argtypes = [ctypes.c_ulong]
    if libc.getauxval(%d) & %d:
        vl = libc.prctl(%d, 0, 0, 0, 0)
        bits = (vl & 0xFFFF) * 8 if vl > 0 else 0
print(platform.machine(), bits)
""" % (_AT_HWCAP, _HWCAP_SVE, _PR_SVE_GET_VL)


def check_cpu_level(config: Config) -> None:
    """RunError unless this CPU has the features the configured level needs. No torch: the host can
    call it before building or starting anything; the trainer calls it again where it runs."""
    level = config.determinism.cpu_capability
    if machine_arch() != "amd64":
        return  # arm64 has no x86 levels; check_arch_config asks for `default` there
    flags = cpu_flags()
    missing = [f for f in LEVEL_CPU_FLAGS[level] if flags is not None and f not in flags]
    if missing:
        raise RunError(
            f"determinism.cpu_capability = {level!r}, but this CPU lacks {', '.join(missing)}: "
            "ATen, oneDNN and MKL cannot run at that level here",
            "run on a CPU that has them (every x86-64 CPU since 2013-2015 has avx2 and fma), or set "
            "determinism.cpu_capability to a level this CPU has (a different level changes the numerics: "
            "record it as a new baseline)",
        )


def check_cpu_math(config: Config) -> dict[str, Any]:
    """Pin MKL and oneDNN where this process has not run them yet, read back the level each library
    really runs at, and refuse (RunError, before any training) when it is not the pinned one.

    A fresh run process already has the pins in its environment (the host passes
    `pinned_environment`); an in-process caller gets them applied here, which works as long as
    nothing in the process has run MKL or oneDNN yet (both read their variables at first use).
    """
    check_cpu_level(config)
    level = config.determinism.cpu_capability
    applied = {}
    for name, value in cpu_math_environment(config).items():
        if os.environ.get(name) != value:
            applied[name] = os.environ.get(name)
            os.environ[name] = value
    state = cpu_math_state()
    wrong = cpu_math_mismatches(config, state)
    if wrong and applied:
        raise RunError(
            "this process was started without reproexec's CPU math pins and has already run MKL or oneDNN, "
            "which read them only once",
            "start a fresh process with the pinned environment (`python -m reproexec.runtime.train` and "
            "`reproexec run` do this themselves)",
            details=wrong + [f"{k} was {v!r}" for k, v in sorted(applied.items())],
        )
    if wrong:
        raise RunError(
            f"determinism.cpu_capability = {level!r}: the CPU math libraries did not take their pins on this machine",
            "run on a CPU that supports the level, or set determinism.cpu_capability to one it supports",
            details=wrong,
        )
    return state


def cpu_math_mismatches(config: Config, state: dict[str, Any]) -> list[str]:
    """Each library whose read-back level is not the one pinned for `config`, in words."""
    env = cpu_math_environment(config)
    out = []
    mkl = state.get("mkl") or {}
    if mkl.get("available") and mkl.get("cnr_branch") != env["MKL_CBWR"]:
        out.append(f"MKL runs CNR branch {mkl.get('cnr_branch')}, pinned {env['MKL_CBWR']} (MKL_CBWR)")
    onednn = state.get("onednn") or {}
    if "ONEDNN_MAX_CPU_ISA" not in env:  # arm64: no cap is pinned; the numerics class is recorded
        return out
    wanted_isa = ONEDNN_ISA_NAMES[env["ONEDNN_MAX_CPU_ISA"]]
    if onednn.get("available") and onednn.get("isa") != wanted_isa:
        out.append(
            f"oneDNN runs at {onednn.get('isa')}, pinned {wanted_isa} (ONEDNN_MAX_CPU_ISA={env['ONEDNN_MAX_CPU_ISA']})"
        )
    return out


def cpu_math_state() -> dict[str, Any]:
    """What each CPU math library under torch really runs at, read back from the libraries themselves.

    MKL and oneDNN have no query in torch's API, but both say it in their verbose output: MKL tags
    every call with its CNR branch (`CNR:COMPATIBLE`), oneDNN names its ISA in a header line and the
    kernel in each call (`jit:avx2`). One tiny sgemm and one tiny convolution are run with verbose
    on and the C-level stdout captured (nothing reaches the run's own stdout); they touch no RNG.
    """
    import torch

    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    state: dict[str, Any] = {
        "aten": {"capability": torch.backends.cpu.get_cpu_capability()},
        **({"numerics_class": numerics_class()} if machine_arch() == "arm64" else {}),
        "blas": blas.group(1) if blas else None,
        "mkl": {"available": torch.backends.mkl.is_available(), "cnr_branch": None},
        "onednn": {
            "available": torch.backends.mkldnn.is_available(),
            "enabled": torch.backends.mkldnn.enabled,
            "isa": None,
            "conv_kernel": None,
        },
    }
    if state["mkl"]["available"]:

        def gemm() -> None:
            with torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
                a = torch.ones(8, 8)
                a @ a

        m = re.search(r"CNR:(\S+)", _c_stdout_of(gemm))
        state["mkl"]["cnr_branch"] = m.group(1) if m else None
    if state["onednn"]["available"]:

        def conv() -> None:
            enabled = torch.backends.mkldnn.enabled  # asked even where a caller turned it off
            torch.backends.mkldnn.enabled = True
            try:
                with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                    torch.nn.functional.conv2d(torch.ones(2, 3, 8, 8), torch.ones(8, 3, 3, 3))
            finally:
                torch.backends.mkldnn.enabled = enabled

        text = _c_stdout_of(conv)
        isa = re.search(r"^onednn_verbose,(?:v1,)?info,cpu,isa:(.+)$", text, re.M)
        kernel = re.search(r"^onednn_verbose,(?:v1,)?primitive,exec,cpu,convolution,([^,]+),", text, re.M)
        if isa:  # oneDNN prints its header once per process, and its ISA cannot change afterwards
            _ONEDNN_ISA_SEEN.append(isa.group(1).strip())
        state["onednn"]["isa"] = _ONEDNN_ISA_SEEN[0] if _ONEDNN_ISA_SEEN else None
        state["onednn"]["conv_kernel"] = kernel.group(1) if kernel else None
    return state


_ONEDNN_ISA_SEEN: list[str] = []


def _c_stdout_of(fn: Any) -> str:
    """Run fn with file descriptor 1 pointed at a temporary file; return what was written there."""
    import tempfile

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile() as f:
            os.dup2(f.fileno(), 1)
            try:
                fn()
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
            f.seek(0)
            return f.read().decode("utf-8", "replace")
    finally:
        os.close(saved)


_NONDET_RE = re.compile(r"^\s*(?P<op>.+?) does not have a deterministic implementation, but you set", re.S)


def nondeterministic_op_error(exc: BaseException, arch: str, device: str) -> RunError | None:
    """Translate torch's strict-mode refusal into a RunError naming the op and the model; else None."""
    if not isinstance(exc, RuntimeError):
        return None
    m = _NONDET_RE.search(str(exc).strip())
    if m is None:
        return None
    op = m.group("op").strip()
    return RunError(
        f"model {arch!r} on {device} uses {op}, which has no deterministic implementation; "
        "determinism.mode 'strict' refuses to run it",
        "choose a model without that op (e.g. resnet18: its 1x1 average pool is deterministic), run on "
        "the CPU, or set determinism.mode: relaxed to accept run-to-run differences (the run records it)",
    )


def seed_everything(seed: int) -> dict[str, int]:
    """Seed Python, NumPy and torch (all devices) from the run seed; return the seeds used."""
    import numpy as np
    import torch

    seeds = {
        "python": derive_seed(seed, "python") % 2**32,
        "numpy": derive_seed(seed, "numpy") % 2**32,
        "torch": derive_seed(seed, "torch"),
    }
    random.seed(seeds["python"])
    np.random.seed(seeds["numpy"])
    torch.manual_seed(seeds["torch"])  # also seeds every CUDA device (lazily if not initialised)
    return seeds


@contextlib.contextmanager
def determinism(config: Config, device: str) -> Iterator[dict[str, Any]]:
    """Apply the config's numerics settings for the duration of a run and yield what was applied.

    Restores torch's previous global flags afterwards, so in-process callers (tests, the benchmark)
    are not left with strict mode switched on.
    """
    import torch

    d = config.determinism
    strict = d.mode == "strict"
    saved = {
        "det": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_det": torch.backends.cudnn.deterministic,
        "cudnn_bench": torch.backends.cudnn.benchmark,
        "threads": torch.get_num_threads(),
    }
    capability = check_cpu_capability(config)
    cpu_math = check_cpu_math(config)
    cublas_env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if device.startswith("cuda") and cublas_env != d.cublas_workspace_config:
        if torch.cuda.is_initialized():
            if strict:
                raise RunError(
                    f"CUBLAS_WORKSPACE_CONFIG is {cublas_env!r}, determinism.cublas_workspace_config is "
                    f"{d.cublas_workspace_config!r}, and CUDA is already initialised in this process",
                    f"start a fresh process with CUBLAS_WORKSPACE_CONFIG={d.cublas_workspace_config}",
                )
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = d.cublas_workspace_config
            cublas_env = d.cublas_workspace_config
    try:
        torch.set_num_threads(d.threads)
        try:
            # Only possible before the first parallel work in a process; afterwards torch raises.
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        torch.use_deterministic_algorithms(strict)
        torch.backends.cudnn.deterministic = strict
        torch.backends.cudnn.benchmark = not strict
        expected_hash_seed = python_hash_seed(config.seed)
        actual_hash_seed = os.environ.get("PYTHONHASHSEED")
        record: dict[str, Any] = {
            "mode": d.mode,
            "seed": config.seed,
            "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": cublas_env,
            "intra_op_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "cpu_capability_requested": d.cpu_capability,
            "cpu_capability_actual": capability,
            "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY"),
            # Every CPU math library under torch: the pins set, and the level each really ran at.
            "cpu_math_pins": {k: os.environ.get(k) for k in sorted(cpu_math_environment(config))},
            "cpu_math": cpu_math,
            "pythonhashseed_expected": expected_hash_seed,
            "pythonhashseed_actual": actual_hash_seed,
            "pythonhashseed_matches": actual_hash_seed == expected_hash_seed,
            "python_hash_randomization": bool(sys.flags.hash_randomization),
        }
        yield record
    finally:
        torch.use_deterministic_algorithms(saved["det"], warn_only=saved["warn_only"])
        torch.backends.cudnn.deterministic = saved["cudnn_det"]
        torch.backends.cudnn.benchmark = saved["cudnn_bench"]
        torch.set_num_threads(saved["threads"])


SEED_RULES = {
    "python/numpy/torch": "derive_seed(seed, 'python'|'numpy'|'torch'): sha256 of the parts, first 63 bits",
    "shuffle": "torch.Generator seeded with derive_seed(seed, 'shuffle', epoch): one permutation per epoch",
    "augment": "each sample's transform runs under fork_rng with the CPU generator seeded with "
    "derive_seed(seed, 'augment', epoch, sample_index): independent of num_workers and scheduling",
    "subset": "derive_seed(seed, 'subset'): permutation of training indices, first N, kept in file order",
    "split": "derive_seed(seed, 'split'): permutation of train_dir indices; the first val_fraction go to val",
    "loader": "DataLoader generator seeded with derive_seed(seed, 'loader', epoch) (worker base seeds)",
}
