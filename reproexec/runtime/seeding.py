"""Randomness and numerics: every seed, flag and thread count a run depends on, in one place.

Two halves. `pinned_environment` and `derive_seed` are pure (no torch import) so the host can compute
the environment a run container needs. `apply_determinism` sets the in-process state after torch is
imported and returns what it actually found, so the run records facts, not intentions.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
from collections.abc import Iterator
from typing import Any

from reproexec.config import Config
from reproexec.errors import RunError
from reproexec.runtime.seeds import derive_seed, python_hash_seed  # noqa: F401  (re-exported)

# The ATen dispatch names torch reports (`torch.backends.cpu.get_cpu_capability()`) for each config value.
CPU_CAPABILITY_NAMES = {"default": "DEFAULT", "avx2": "AVX2", "avx512": "AVX512"}


def pinned_environment(config: Config) -> dict[str, str]:
    """Environment variables a run process needs *before* Python and torch start.

    The host passes these to the container (and `reproexec smoke` to its subprocess). They cannot
    be fixed later: PYTHONHASHSEED is read at interpreter start, ATEN_CPU_CAPABILITY when torch is
    imported, CUBLAS_WORKSPACE_CONFIG when the CUDA context is created.
    """
    d = config.determinism
    return {
        "ATEN_CPU_CAPABILITY": d.cpu_capability,
        "CUBLAS_WORKSPACE_CONFIG": d.cublas_workspace_config,
        "MKL_NUM_THREADS": str(d.threads),
        "OMP_NUM_THREADS": str(d.threads),
        "PYTHONHASHSEED": python_hash_seed(config.seed),
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
