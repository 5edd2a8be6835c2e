"""The Randomness box for a bring-your-own script, unmodified.

`reproexec.runtime.byo` puts `runtime/hook/` on PYTHONPATH for the entrypoint's processes, so
Python imports its `sitecustomize` at start-up and calls `install()`. That seeds `random` at once,
and NumPy's global generator and torch (CPU and every CUDA device) the moment the script imports
them — importing torch up front would cost every Python process of the run about two seconds. With
torch it also applies `determinism.mode` (strict: deterministic algorithms, cuDNN deterministic and
no benchmark). DataLoader workers need nothing more: torch gives each worker a seed drawn from the
global generator (base seed + worker id) and seeds `random`, NumPy and torch in it, so workers,
random augmentation included, repeat exactly once the global generator is seeded.

What was seeded, and how, goes to `$REPROEXEC_RUN_DIR/determinism.json` (written by the first
process only). For launchers that skip `sitecustomize` (`python -I`, `-S`, embedded interpreters),
call `reproexec.seed_everything()` first thing. Standard library only until numpy/torch are imported.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from typing import Any

from reproexec.runtime.seeds import derive_seed

_RECORD: dict[str, Any] = {}
_OWNER = "REPROEXEC_SEED_RECORDED"  # set once the first process of the run has taken the record
WORKERS = (
    "torch derives each DataLoader worker's seed from the seeded global generator (base seed + worker id) "
    "and seeds random, NumPy and torch in the worker"
)


def seeds_for(seed: int) -> dict[str, int]:
    return {
        "python": derive_seed(seed, "python") % 2**32,
        "numpy": derive_seed(seed, "numpy") % 2**32,
        "torch": derive_seed(seed, "torch"),
    }


def install() -> None:
    """Seed this process from REPROEXEC_SEED (see the module docstring). A no-op when the run's
    seeding is off (determinism.seed_entrypoint: false) or outside a reproexec run."""
    env = os.environ
    if env.get("REPROEXEC_SEED_HOOK") != "1" or not env.get("REPROEXEC_SEED", "").isdigit():
        return
    seed = int(env["REPROEXEC_SEED"])
    seeds = seeds_for(seed)
    random.seed(seeds["python"])
    first = env.get(_OWNER) is None
    env[_OWNER] = str(os.getpid())  # children (workers, subprocesses) seed themselves, but do not record
    if first:
        _RECORD.update(
            {
                "seeded_by": "reproexec start-up hook (sitecustomize on PYTHONPATH)",
                "seed": seed,
                "mode": env.get("REPROEXEC_DETERMINISM", "strict"),
                "seeds": {"python": seeds["python"], "numpy": None, "torch": None},
                "dataloader_workers": WORKERS,
                "pythonhashseed": env.get("PYTHONHASHSEED"),
            }
        )
        _write_record()
    _after_import("numpy", lambda np: _seed_numpy(np, seeds["numpy"], first))
    _after_import(
        "torch", lambda torch: _seed_torch(torch, seeds["torch"], env.get("REPROEXEC_DETERMINISM", "strict"), first)
    )


def seed_everything(seed: int | None = None, mode: str | None = None) -> dict[str, int]:
    """Seed random, NumPy and torch now (importing them) from `seed` (default: REPROEXEC_SEED) and
    apply the determinism mode (default: REPROEXEC_DETERMINISM, else strict). Returns the seeds."""
    if seed is None:
        seed = int(os.environ.get("REPROEXEC_SEED", "0"))
    mode = mode or os.environ.get("REPROEXEC_DETERMINISM", "strict")
    seeds = seeds_for(seed)
    random.seed(seeds["python"])
    try:
        import numpy

        _seed_numpy(numpy, seeds["numpy"], False)
    except ImportError:
        pass
    try:
        import torch

        _seed_torch(torch, seeds["torch"], mode, False)
    except ImportError:
        pass
    return seeds


def _seed_numpy(np: Any, value: int, record: bool) -> None:
    np.random.seed(value)
    if record:
        _RECORD["seeds"]["numpy"] = value
        _write_record()


def _seed_torch(torch: Any, value: int, mode: str, record: bool) -> None:
    torch.manual_seed(value)  # every CUDA device too (lazily, when CUDA starts)
    strict = mode == "strict"
    torch.use_deterministic_algorithms(strict)
    torch.backends.cudnn.deterministic = strict
    if strict:
        torch.backends.cudnn.benchmark = False
    if record:
        _RECORD["seeds"]["torch"] = value
        _RECORD["torch"] = {
            "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "intra_op_threads": torch.get_num_threads(),
        }
        _write_record()


def _write_record() -> None:
    out = os.environ.get("REPROEXEC_RUN_DIR")
    if not out:
        return
    try:
        from reproexec.fsutil import write_json_atomic

        write_json_atomic(os.path.join(out, "determinism.json"), _RECORD)
    except OSError:  # a read-only or missing run folder must not break the user's script
        pass


class _PostImport:
    """Runs a callback right after a top-level module has been imported (once). A meta path finder
    needs only `find_spec`; subclassing importlib.abc.MetaPathFinder would add ~40 ms to every start."""

    def __init__(self) -> None:
        self.hooks: dict[str, Callable[[Any], None]] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        callback = self.hooks.get(fullname)
        if callback is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        del self.hooks[fullname]
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            callback(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_FINDER = _PostImport()


def _after_import(name: str, callback: Callable[[Any], None]) -> None:
    if name in sys.modules:
        callback(sys.modules[name])
        return
    _FINDER.hooks[name] = callback
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
