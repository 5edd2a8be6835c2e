"""The environment a run actually saw, captured in-process (`environment.json`).

Everything that can change the numbers or explain a difference between two runs: interpreter,
packages (Python and Debian), torch build, CUDA/cuDNN/driver/GPU, CPU model and flags, the level
each CPU math library really ran at (ATen, MKL, oneDNN), threads, OS and the environment variables
that steer them. `reproexec env diff` compares two of these.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

ENV_VARS = (
    "ATEN_CPU_CAPABILITY",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "DNNL_MAX_CPU_ISA",
    "KMP_AFFINITY",
    "MKL_CBWR",
    "MKL_DYNAMIC",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_NUM_THREADS",
    "NVIDIA_DRIVER_CAPABILITIES",
    "NVIDIA_VISIBLE_DEVICES",
    "OMP_DYNAMIC",
    "OMP_NUM_THREADS",
    "ONEDNN_CPU_ISA_HINTS",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "ONEDNN_MAX_CPU_ISA",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_NUM_THREADS",
    "PYTHONHASHSEED",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
)
DPKG_STATUS = Path("/var/lib/dpkg/status")


def _packages() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out[name.lower().replace("_", "-")] = dist.version
    return dict(sorted(out.items()))


def parse_dpkg_status(text: str) -> dict[str, str]:
    """Installed Debian packages in a dpkg status file, as {name: version}, sorted by name."""
    out = {}
    for para in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", para, re.M))
        if fields.get("Status", "").endswith(" installed") and fields.get("Package") and fields.get("Version"):
            out[fields["Package"]] = fields["Version"]
    return dict(sorted(out.items()))


def _debian_packages() -> dict[str, str] | None:
    """The image's Debian packages (its base's, plus any env.apt_packages): what `env diff` names
    when two bases differ. None outside Debian-like systems."""
    try:
        return parse_dpkg_status(DPKG_STATUS.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def _cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "logical_cpus": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = sorted(os.sched_getaffinity(0))
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    first = text.split("\n\n", 1)[0]
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info["model_name"] = fields.get("model name") or fields.get("Hardware") or platform.processor()
    info["vendor"] = fields.get("vendor_id")
    info["family"], info["model"], info["stepping"] = (
        fields.get("cpu family"),
        fields.get("model"),
        fields.get("stepping"),
    )
    info["microcode"] = fields.get("microcode")
    flags = fields.get("flags") or fields.get("Features") or ""
    info["flags"] = sorted(flags.split())
    return info


def _os() -> dict[str, Any]:
    u = platform.uname()
    info: dict[str, Any] = {"system": u.system, "release": u.release, "version": u.version}
    try:
        rel = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
        info["os_release"] = {k: rel[k].strip('"') for k in ("ID", "VERSION_ID", "PRETTY_NAME") if k in rel}
    except OSError:
        pass
    try:
        info["glibc"] = "-".join(platform.libc_ver())
    except Exception:  # libc_ver reads the interpreter binary; never fatal
        pass
    return info


def _cuda(torch: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "available": torch.cuda.is_available(),
    }
    if not info["available"]:
        return info
    info["device_count"] = torch.cuda.device_count()
    devices = []
    for i in range(info["device_count"]):
        p = torch.cuda.get_device_properties(i)
        devices.append(
            {
                "name": p.name,
                "capability": f"{p.major}.{p.minor}",
                "sm_count": p.multi_processor_count,
                "total_memory": p.total_memory,
                "uuid": str(getattr(p, "uuid", "")) or None,
            }
        )
    info["devices"] = devices
    info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    info["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    try:
        info["driver"] = Path("/proc/driver/nvidia/version").read_text().splitlines()[0].strip()
    except OSError:
        info["driver"] = None
    try:
        import pynvml  # optional

        pynvml.nvmlInit()
        info["driver_version"] = pynvml.nvmlSystemGetDriverVersion()
    except Exception:
        pass
    return info


def capture_without_torch() -> dict[str, Any]:
    """What can be recorded in an image without torch (a bring-your-own run's image may lack it)."""
    return {"os": _os(), "cpu": _cpu(), "packages": _packages()}


def capture_environment() -> dict[str, Any]:
    import torch

    from reproexec.runtime.seeding import cpu_math_state

    return {
        "python": {
            "version": sys.version,
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "hash_randomization": bool(sys.flags.hash_randomization),
        },
        "platform": platform.platform(),
        "os": _os(),
        "cpu": _cpu(),
        "torch": {
            "version": torch.__version__,
            "git_version": getattr(torch.version, "git_version", None),
            "debug": torch.version.debug,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "intra_op_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "openmp": torch.backends.openmp.is_available(),
            "parallel_info": torch.__config__.parallel_info(),
        },
        "cpu_math": cpu_math_state(),
        "cuda": _cuda(torch),
        "packages": _packages(),
        "debian_packages": _debian_packages(),
        "env": {k: os.environ.get(k) for k in ENV_VARS},
    }
