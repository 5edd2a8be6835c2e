"""One cell = one ordinary run, in its own process:

    python -m reproexec.sweep.cell SWEEP_DIR KEY          (the local executor starts this)
    reproexec.sweep.cell.slurm_job(SWEEP_DIR, KEY)         (a Slurm array task runs this, via submitit)

Both call `run_cell`: read the cell's config from the sweep folder, run it with `execute_run` (the
same call `reproexec run` makes), and write `cells/<KEY>.result.json` with the run id and status.
The first SIGTERM, SIGINT or SIGHUP stops the run cleanly (its container removed, its run.json
`interrupted`); further signals are ignored while that happens, so the clean-up is never cut short.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from reproexec.errors import Interrupted, ReproexecError, exit_code_of, signals_raise
from reproexec.sweep.plan import SWEEP_JSON, image_folder

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # the first stops the cell; later ones are ignored


def cell_paths(sweep_dir: Path, key: str) -> tuple[Path, Path]:
    """(the cell's config, its result file)."""
    return sweep_dir / "cells" / f"{key}.yaml", sweep_dir / "cells" / f"{key}.result.json"


def read_result(sweep_dir: Path, key: str) -> dict[str, Any] | None:
    """The cell's result file, checked: a result is believed only if it has the expected shape."""
    path = cell_paths(sweep_dir, key)[1]
    try:
        if path.stat().st_size > 1_000_000:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(doc, dict)
        or doc.get("key") != key
        or doc.get("status") not in ("succeeded", "failed", "interrupted")
    ):
        return None
    return doc


def run_cell(sweep_dir: Path, key: str, *, engine: Any = None) -> dict[str, Any]:
    """Run the cell; always returns (and writes) its result, whatever happened."""
    from reproexec.config import read_yaml_file, validate_config
    from reproexec.fsutil import write_json_atomic
    from reproexec.runs.execute import execute_run
    from reproexec.runs.prepare import Replay, RunOptions
    from reproexec.sweep.plan import CellConfig

    config_path, result_path = cell_paths(sweep_dir, key)
    result: dict[str, Any] = {"key": key, "host": socket.gethostname(), "pid": os.getpid(), "slurm": _slurm_ids()}
    try:
        sweep = json.loads((sweep_dir / SWEEP_JSON).read_text(encoding="utf-8"))
        cell = next(c for c in sweep["cells"] if c["key"] == key)
        _, raw = read_yaml_file(config_path, "cell config")
        loaded = CellConfig(
            config=validate_config(raw, str(config_path)), path=config_path, code_dir=Path(sweep["base_dir"])
        )
        result["cell_id"] = cell["cell_id"]
        if engine is None:
            from reproexec.engine import connect

            engine = connect()
        ensure_image(engine, sweep, cell["image_tag"])
        image = sweep["images"][cell["image_tag"]]
        opts = RunOptions(
            name=f"{sweep['name']}-{key}",
            runtime="docker",
            runs_dir=Path(sweep["runs_dir"]),
            # the sweep's image, as built before the first cell (not one planned again from the source now)
            replay=Replay(
                image={k: v for k, v in image.items() if k != "saved"},
                source=image_folder(sweep_dir, cell["image_tag"]),
            ),
        )
        outcome = execute_run(loaded, opts, engine=engine, on_log=lambda s: print(s, file=sys.stderr, flush=True))
        result.update(status=outcome.status, reason=outcome.reason, run_id=outcome.run_id, run_dir=str(outcome.run_dir))
    except (KeyboardInterrupt, Interrupted):
        result.update(status="interrupted", reason="stopped before its run started")
    except ReproexecError as e:
        status = "interrupted" if isinstance(e, Interrupted) else "failed"
        result.update(status=status, reason=str(e).splitlines()[0] if str(e) else type(e).__name__)
    except Exception as e:  # a bug or a lost engine: record it, never leave the cell silent
        result.update(status="failed", reason=f"{type(e).__name__}: {e}")
    write_json_atomic(result_path, result)
    return result


def ensure_image(engine: Any, sweep: dict[str, Any], tag: str) -> None:
    """The cell's image on this node's engine: present, or loaded from the sweep's shared image folder
    (`slurm.image_dir`), and in both cases carrying the expected content hash."""
    from reproexec.errors import EngineError
    from reproexec.fsutil import sha256_file
    from reproexec.labels import LABEL_HASH

    image = (sweep.get("images") or {}).get(tag) or {}
    expected = image.get("content_hash")
    info = engine.image(tag)
    if info is None:
        saved = image.get("saved")
        if not saved:
            raise EngineError(
                f"image {tag} is not on this node's Docker engine ({socket.gethostname()})",
                "set slurm.image_dir in the sweep file to a folder every node sees: the image is saved there "
                "once and loaded by the nodes that lack it",
            )
        tar = Path(saved["path"])
        actual = sha256_file(tar)
        if actual != saved["sha256"]:
            raise EngineError(
                f"the saved image {tar} has sha256 {actual}, not the recorded {saved['sha256']}; not loaded",
                "delete it and run the sweep again (the image is saved anew)",
            )
        engine.load(tar)
        info = engine.image(tag)
    if info is None or info.labels.get(LABEL_HASH) != expected:
        got = None if info is None else info.labels.get(LABEL_HASH)
        raise EngineError(
            f"image {tag} on this node has content hash {got}, not the sweep's {expected}",
            "remove that tag on the node (`docker rmi`) and run the sweep again",
        )


def slurm_job(sweep_dir: str, key: str) -> str:
    """The function each Slurm array task runs (submitted by submitit). submitit's job wrapper ignores
    SIGTERM; a cell must stop on it (scancel sends it), so the cell's own handler is installed here."""
    with signals_raise(STOP_SIGNALS, once=True, ignore_after=True):
        return run_cell(Path(sweep_dir), key)["status"]


def _slurm_ids() -> dict[str, str] | None:
    keys = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID"}
    ids = {k: os.environ[v] for k, v in keys.items() if v in os.environ}
    return ids or None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m reproexec.sweep.cell SWEEP_DIR KEY", file=sys.stderr)
        return 2
    with signals_raise(STOP_SIGNALS, once=True, ignore_after=True):
        result = run_cell(Path(args[0]), args[1])
    return exit_code_of(result["status"])


if __name__ == "__main__":
    sys.exit(main())
