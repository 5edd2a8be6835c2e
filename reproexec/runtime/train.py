"""Entry point inside the run container.

    python -m reproexec.runtime.train --config CONFIG.json --data DATA_DIR --out RUN_DIR [--device cpu|cuda] [--smoke]

CONFIG.json is `Config.resolved()` output. Progress goes to stdout as one JSON object per line
({"event": "start"|"step"|"epoch"|"done"|"error", ...}); the plain-text log goes to RUN_DIR/train.log.

Order matters here: ATEN_CPU_CAPABILITY is read once, when torch is imported, and PYTHONHASHSEED when
the interpreter starts. So this module imports no torch at the top; `main` pins the environment
first, and when run as a script it re-executes itself once if the interpreter was started unpinned.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

from reproexec.config import Config, validate_config
from reproexec.errors import ConfigError, ReproexecError
from reproexec.runtime.seeding import pinned_environment

_REEXEC_MARK = "REPROEXEC_PINNED_REEXEC"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reproexec.runtime.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, type=Path, help="resolved config (JSON)")
    p.add_argument("--data", required=True, type=Path, help="dataset snapshot root (read-only)")
    p.add_argument("--out", required=True, type=Path, help="run folder (the only place written)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--smoke", action="store_true", help="config.smoke.steps steps on a config.smoke.subset subset")
    p.add_argument("--weights", type=Path, default=None, help="where model.weights.path is mounted")
    return p


def read_config(path: Path) -> Config:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"cannot read resolved config {path}: {e}", "pass the JSON written by Config.resolved()"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object", "pass the JSON written by Config.resolved()")
    return validate_config(raw, str(path))


def pin_environment(config: Config) -> dict[str, str]:
    """Set the pinned variables if torch is not yet imported; return the ones that could not be applied."""
    pinned = pinned_environment(config)
    late = {"PYTHONHASHSEED"}  # read at interpreter start: recorded, cannot be changed now
    if "torch" in sys.modules:
        late |= {"ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}  # checked after the fact
    for k, v in pinned.items():
        if k not in late:
            os.environ[k] = v
    return {k: v for k, v in pinned.items() if os.environ.get(k) != v}


def _print_event(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the trainer; returns the exit code (0, or the ReproexecError's code)."""
    args = _parser().parse_args(argv)
    try:
        config = read_config(args.config)
        pin_environment(config)  # before the trainer's import: torch must come after the pin
        from reproexec.runtime.trainer import run_training

        run_training(
            config, args.data, args.out, args.device, smoke=args.smoke, weights_path=args.weights, emit=_print_event
        )
        return 0
    except ReproexecError as e:
        _print_event(
            {
                "event": "error",
                "error": type(e).__name__,
                "message": e.message,
                "hint": e.hint,
                "details": e.details,
                "exit_code": e.exit_code,
            }
        )
        sys.stderr.write(f"error: {e}\n")
        return e.exit_code
    except OSError as e:  # a full disk is the run's outcome, not a bug: one line, not a traceback
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        message = f"{e.strerror} [Errno {e.errno}] writing {e.filename or 'the run folder'}"
        _print_event(
            {
                "event": "error",
                "error": "DiskFull",
                "message": message,
                "hint": "free some space",
                "details": [],
                "exit_code": 7,
            }
        )
        sys.stderr.write(f"error: {message}\n")
        return 7


def _reexec_if_unpinned(argv: list[str]) -> None:
    """Script mode only: restart the interpreter once with the pinned environment if it differs."""
    if os.environ.get(_REEXEC_MARK):
        return
    known, _ = _parser().parse_known_args(argv)
    try:
        pinned = pinned_environment(read_config(known.config))
    except ReproexecError:
        return  # main() reports it properly
    if all(os.environ.get(k) == v for k, v in pinned.items()):
        return
    env = {**os.environ, **pinned, _REEXEC_MARK: "1"}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "reproexec.runtime.train", *argv], env)


if __name__ == "__main__":
    _reexec_if_unpinned(sys.argv[1:])
    code = main()
    # Every output is written and fsynced by now; tearing down torch's interpreter state took ~2 s
    # per run and changes nothing on disk, so the process ends here (workers die with the container).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
