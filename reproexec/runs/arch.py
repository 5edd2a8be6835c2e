"""Where a run's numbers come from, beyond the image: its platform (amd64, arm64), the numerics class
of the CPU it trains on, and whether the engine emulates it.

An arm64 image on an amd64 Docker engine runs under qemu-user (binfmt_misc, registered by Debian's
qemu-user-static with the F flag, so it works inside containers). What reproexec adds there: the
emulated CPU, QEMU_CPU (REPROEXEC_QEMU_CPU, default `neoverse-n1`: the class of Apple silicon and
Graviton2), an arm64 /proc/cpuinfo in place of the host's x86 text (torch's cpuinfo crashes on
the host's under qemu 7.2), and the record of it all in run.json's `platform`.

On arm64 the pins cannot make every CPU compute alike: the SVE vector length picks other kernels in
oneDNN/ACL and the BLAS, so runs on CPUs of different numerics classes train different weights
(seeding.numerics_class). The class is probed before a run (a python3 one-liner in the run image,
under the same emulation), recorded, and compared by `rerun` up front.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproexec.engine import Engine
from reproexec.errors import ConfigError, EngineError, RunError
from reproexec.fsutil import cache_dir, write_atomic

# The emulated CPU when none is named: no SVE, like Apple silicon and Neoverse-N1 (Graviton2, Ampere
# Altra): the class most arm64 users train on.
DEFAULT_QEMU_CPU = "neoverse-n1"
QEMU_CPU_VAR = "REPROEXEC_QEMU_CPU"
CPUINFO_MOUNT = "/proc/cpuinfo"
# What an arm64 kernel writes for one core (a Neoverse-N1's identification; the features are those
# every ARMv8.2 CPU has). torch's cpuinfo reads it at import; qemu-user 7.2 passes the host's through.
ARM64_CPUINFO = (
    "processor\t: 0\n"
    "BogoMIPS\t: 50.00\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
    "CPU implementer\t: 0x41\n"
    "CPU architecture: 8\n"
    "CPU variant\t: 0x3\n"
    "CPU part\t: 0xd0c\n"
    "CPU revision\t: 1\n\n"
)


@dataclass(frozen=True)
class RunPlatform:
    arch: str  # amd64 | arm64: the run image's platform
    numerics_class: str  # seeding.numerics_class of the CPU the run trains on
    emulated_cpu: str | None = None  # QEMU_CPU, where qemu-user runs the image

    def record(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "numerics_class": self.numerics_class,
            "emulated": {"by": "qemu-user", "cpu": self.emulated_cpu} if self.emulated_cpu else None,
        }

    def container_env(self) -> dict[str, str]:
        return {"QEMU_CPU": self.emulated_cpu} if self.emulated_cpu else {}


def qemu_cpu() -> str:
    return os.environ.get(QEMU_CPU_VAR) or DEFAULT_QEMU_CPU


def run_arch(cfg: Any, engine: Engine | None, recorded_image: dict[str, Any] | None) -> tuple[str, bool]:
    """(arch, emulated) of a run: the recorded image's platform for a rerun, else env.arch or the
    engine's (`None` engine: the local runtime, this machine)."""
    from reproexec.env.build import refuse_amd64_on, target_arch
    from reproexec.runtime.seeding import check_arch_config, check_machine

    if engine is None:
        here = check_machine(platform.machine(), "this machine")
        if cfg.env.arch and cfg.env.arch != here:
            raise ConfigError(
                f"env.arch is {cfg.env.arch}, but --runtime local runs on this machine, which is {here}",
                "run it with the Docker runtime, or leave env.arch out",
            )
        check_arch_config(cfg, here, f"this machine ({here})")
        return here, False
    if recorded_image is None:
        return target_arch(cfg, engine)
    arch = str((recorded_image.get("hash_inputs") or {}).get("arch", "amd64"))
    engine_arch = check_machine(engine.architecture(), "the Docker engine's machine")
    if arch == "amd64" and engine_arch != "amd64":
        refuse_amd64_on(engine_arch, "the recorded image is linux/amd64")
    return arch, arch != engine_arch


def probe_platform(engine: Engine | None, image: str | None, arch: str, emulated: bool) -> RunPlatform:
    """The run's platform with the numerics class of the CPU it will train on. amd64 needs no probe
    (the pinned level is its class); arm64 is asked in the run image, under the same emulation."""
    from reproexec.runtime.seeding import NUMERICS_PROBE, numerics_class, sve_vector_length

    if arch == "amd64":
        return RunPlatform("amd64", "amd64")
    if engine is None or image is None:  # the local runtime on an arm64 machine: this process's CPU
        here = numerics_class(arch, sve_vector_length())
        # torch for macOS computes with Apple's Accelerate, not the Linux image's libraries
        return RunPlatform(arch, f"{here}-macos" if sys.platform == "darwin" else here)
    cpu = qemu_cpu() if emulated else None
    env = {"QEMU_CPU": cpu} if cpu else None
    result = engine.run_capture(image, ["python3", "-c", NUMERICS_PROBE], environment=env)
    words = result.output.split()
    if result.exit_code != 0 or len(words) < 2 or not words[-1].isdigit():
        text = result.output.strip()[-300:]
        if emulated and ("exec format error" in text or "exec user process" in text or result.exit_code == 1):
            raise EngineError(
                f"the Docker engine cannot run linux/{arch} images here: qemu-user is not registered with "
                f"binfmt_misc ({text or 'no output'})",
                "apt-get install qemu-user-static binfmt-support and run `update-binfmts --enable qemu-aarch64` "
                "(scripts/setup.sh does both); or run on an arm64 machine",
            )
        if emulated and "unable to find cpu model" in text.lower():
            raise ConfigError(
                f"{QEMU_CPU_VAR}={cpu!r} is not a CPU this qemu emulates ({text})",
                f"name one of `qemu-aarch64-static -cpu help` (e.g. neoverse-n1, cortex-a57, max, a64fx), or unset {QEMU_CPU_VAR}",
            )
        raise EngineError(f"the numerics probe failed in image {image}: {text or 'no output'}")
    return RunPlatform(arch, numerics_class(arch, int(words[-1])), cpu)


def check_same_class(recorded: dict[str, Any] | None, here: RunPlatform) -> None:
    """RunError before anything runs when the recorded run trained on CPUs of another numerics class:
    the weights would differ, and a rerun would only say so after training."""
    if not isinstance(recorded, dict):
        return
    theirs = recorded.get("numerics_class")
    if theirs and theirs != here.numerics_class:
        emulated = f" (emulated: QEMU_CPU={here.emulated_cpu})" if here.emulated_cpu else ""
        raise RunError(
            f"the run trained on a CPU of numerics class {theirs}; this machine's is {here.numerics_class}{emulated}: "
            "the weights would differ (on arm64 the SVE vector length picks other kernels in oneDNN/ACL and the BLAS)",
            f"rerun on a machine of class {theirs} (README: which arm64 CPUs give the same weights)"
            + (f", or emulate one: {QEMU_CPU_VAR}=<a CPU of that class>" if here.emulated_cpu else ""),
        )


def cpuinfo_file() -> Path:
    """The arm64 /proc/cpuinfo an emulated run sees, in reproexec's cache (the engine bind-mounts it)."""
    path = cache_dir() / "qemu" / "cpuinfo-arm64"
    if not path.is_file() or path.read_text() != ARM64_CPUINFO:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, ARM64_CPUINFO)
        path.chmod(0o644)
    return path
