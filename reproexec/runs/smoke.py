"""Smoke runs: a short seeded training in a fresh local process, then invariant checks.

The training runs as `python -m reproexec.runtime.train --smoke` in a subprocess, because the
pinned numerics environment (ATEN_CPU_CAPABILITY, PYTHONHASHSEED, ...) only applies to a process
that sets it before torch is imported. This module imports no torch and prints nothing.

Invariants (all are reported together):
- loss drop: with k = min(5, steps // 2), mean of the first k step losses vs mean of the last k;
  (first - last) / first must be at least smoke.min_loss_drop.
- every step loss and every final metric is finite.
- each smoke.ranges entry (metric → [low, high]) holds, inclusive; metrics are looked up in the
  summary's "final" block (val_acc, val_loss, train_loss), then at its top level (loss_sum_first5, ...).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reproexec.config import Config, LoadedConfig
from reproexec.errors import RunError
from reproexec.runtime.seeding import pinned_environment


def smoke_config(config: Config, *, steps: int | None = None, subset: int | None = None) -> Config:
    update = {k: v for k, v in (("steps", steps), ("subset", subset)) if v is not None}
    if not update:
        return config
    return config.model_copy(update={"smoke": config.smoke.model_copy(update=update)})


def check_smoke(summary: dict[str, Any], step_losses: list[float], config: Config) -> tuple[dict[str, Any], list[str]]:
    """Evaluate the invariants; returns (measured values, problems). No problems = pass."""
    s = config.smoke
    problems: list[str] = []
    bad = [i + 1 for i, v in enumerate(step_losses) if v is None or not math.isfinite(v)]
    if bad:
        problems.append(f"non-finite training loss at step(s) {', '.join(map(str, bad[:10]))}")
    k = max(1, min(5, len(step_losses) // 2))
    finite_losses = [v for v in step_losses if v is not None and math.isfinite(v)]
    first = sum(finite_losses[:k]) / k if finite_losses else float("nan")
    last = sum(finite_losses[-k:]) / k if finite_losses else float("nan")
    drop = (first - last) / first if first and math.isfinite(first) and first > 0 else float("nan")
    if not (drop >= s.min_loss_drop):
        problems.append(
            f"loss did not drop enough: mean of first {k} steps {first:.6f}, last {k} steps {last:.6f}, "
            f"drop {drop:.2%} < smoke.min_loss_drop {s.min_loss_drop:.2%}"
        )
    final = summary.get("final", {})
    for name in ("train_loss", "val_loss", "val_acc"):
        v = final.get(name)
        if v is None or not math.isfinite(v):
            problems.append(f"final {name} is {v} (not finite)")
    metrics = {
        **{k2: v for k2, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)},
        **{k2: v for k2, v in final.items() if isinstance(v, int | float)},
    }
    for name, (low, high) in sorted(s.ranges.items()):
        if name not in metrics:
            problems.append(f"smoke.ranges.{name}: no such metric (available: {', '.join(sorted(metrics))})")
        elif not (low <= metrics[name] <= high):
            problems.append(f"{name} = {metrics[name]:.6g} is outside smoke.ranges [{low}, {high}]")
    measured = {
        "steps": len(step_losses),
        "loss_window": k,
        "loss_first_mean": first,
        "loss_last_mean": last,
        "loss_drop": drop,
        "min_loss_drop": s.min_loss_drop,
        "val_acc": final.get("val_acc"),
        "val_loss": final.get("val_loss"),
    }
    return measured, problems


def run_smoke(
    loaded: LoadedConfig,
    *,
    steps: int | None = None,
    subset: int | None = None,
    out_dir: Path | None = None,
    device: str = "cpu",
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the smoke training in a subprocess and check its invariants; RunError when any fails."""
    config = smoke_config(loaded.config, steps=steps, subset=subset)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix=f"reproexec-smoke-{config.name}-"))
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    cfg_path = out / "config.json"
    cfg_path.write_text(json.dumps(config.resolved(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    data_dir = loaded.resolve(config.data.snapshot)
    cmd = [
        sys.executable,
        "-m",
        "reproexec.runtime.train",
        "--config",
        str(cfg_path),
        "--data",
        str(data_dir),
        "--out",
        str(run_dir),
        "--device",
        device,
        "--smoke",
    ]
    if config.model.weights is not None:
        cmd += ["--weights", str(loaded.resolve(config.model.weights.path))]
    env = {**os.environ, **pinned_environment(config)}
    error_event: dict[str, Any] | None = None
    stderr_path = out / "stderr.log"
    with open(stderr_path, "w", encoding="utf-8") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "error":
                error_event = event
            if on_event is not None:
                on_event(event)
        rc = proc.wait()
    if rc != 0:
        if error_event is not None:
            raise RunError(
                f"smoke training failed: {error_event.get('message')}",
                error_event.get("hint"),
                details=list(error_event.get("details") or []),
            )
        tail = stderr_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        raise RunError(f"smoke training exited with status {rc}", f"see {stderr_path}", details=tail)
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        losses = [json.loads(line)["loss"] for line in (run_dir / "metrics" / "steps.jsonl").read_text().splitlines()]
    except (OSError, ValueError, KeyError) as e:
        raise RunError(f"smoke run in {run_dir} left no complete summary: {e}", f"see {stderr_path}") from None
    measured, problems = check_smoke(summary, losses, config)
    result = {
        "run_dir": str(run_dir),
        "passed": not problems,
        "problems": problems,
        **measured,
        "weights_sha256": summary.get("weights_sha256"),
        "loss_sum_first5": summary.get("loss_sum_first5"),
    }
    (out / "smoke.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if problems:
        raise RunError(
            f"smoke invariants failed for {config.name} ({len(problems)} problem{'s' if len(problems) > 1 else ''}); "
            f"run folder {run_dir}",
            "inspect metrics/steps.jsonl there; raise train.lr or steps, or relax smoke.min_loss_drop / smoke.ranges "
            "if the expectation was wrong",
            details=problems,
        )
    return result
