"""`reproexec smoke`: a short run of any config, twice, compared — the seed's CI check and its first
exercise ("same loss numbers on two runs") in one command.

A smoke run is an ordinary run (prepare, launch, execute, finish: its own run folder, in the run's
image by default) of a smaller job: the built-in trainer's `smoke.steps` on a `smoke.subset` of the
training images; a bring-your-own script unchanged, on a derived snapshot (data/subset.py), stopped
at `smoke.max_seconds` if it is still going. Everything is prepared once (config, image, data); the
two runs are fresh processes, one after the other.

Invariants (all reported together), per run: the mean loss of the last k = min(5, steps // 2) steps
is at least `smoke.min_loss_drop` below the mean of the first k; every logged value and final
metric is finite; each `smoke.ranges` metric is within its bounds. A bring-your-own script's losses
and metrics are what it logged (`reproexec.track` / `$REPROEXEC_METRICS`), its loss the `loss`
column (or `train_loss`).

Determinism: the second run is compared with the first as `rerun` compares (runs/compare.py):
every logged value row by row, the weights, every result file, checkpoints tensor by tensor. A run
stopped at its time limit is compared on the steps both logged. The seed's number, the sum of the
first five losses, is reported for both.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reproexec.config import Config, LoadedConfig
from reproexec.engine import Engine
from reproexec.errors import Interrupted, NotDeterministic, RunError, SmokeError
from reproexec.fsutil import cache_dir, read_json_object, read_jsonl_objects, write_json_atomic
from reproexec.runs.execute import EventFn, RunOutcome, run_prepared
from reproexec.runs.prepare import Prepared, RunOptions, Runtime, prepare_run
from reproexec.runs.timing import Clock

LogFn = Callable[[str], None]
SMOKE_JSON = "smoke.json"


def smoke_config(config: Config, *, steps: int | None = None, subset: int | None = None) -> Config:
    update = {k: v for k, v in (("steps", steps), ("subset", subset)) if v is not None}
    if not update:
        return config
    return config.model_copy(update={"smoke": config.smoke.model_copy(update=update)})


@dataclass
class SmokeRun:
    run_id: str
    run_dir: Path
    status: str
    reason: str | None
    stopped_at_limit: bool
    losses: list[float]
    measured: dict[str, Any]
    problems: list[str]  # invariants that failed

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "losses"}
        return {
            **d,
            "run_dir": str(self.run_dir),
            "steps": len(self.losses),
            "loss_sum_first5": loss_sum_first5(self.losses),
        }


@dataclass
class SmokeResult:
    name: str
    runtime: str
    runs: list[SmokeRun]
    verdict: str  # passed | invariants | not deterministic | failed
    out_dir: Path
    comparison: dict[str, Any] | None = None
    first_difference: str | None = None
    hints: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    steps_s: float | None = None  # the built-in trainer's own time, the longer run's (a script's is not known)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.name,
            "runtime": self.runtime,
            "verdict": self.verdict,
            "runs": [r.to_dict() for r in self.runs],
            "comparison": self.comparison,
            "first_difference": self.first_difference,
            "hints": self.hints,
            "wall_s": round(self.wall_s, 3),
            "steps_s": None if self.steps_s is None else round(self.steps_s, 3),
        }


def run_smoke(
    loaded: LoadedConfig,
    *,
    runtime: Runtime = "docker",
    engine: Engine | None = None,
    once: bool = False,
    gpu: bool = False,
    steps: int | None = None,
    subset: int | None = None,
    out_dir: Path | None = None,
    on_event: EventFn = lambda e: None,
    on_log: LogFn = lambda s: None,
    clock: Clock | None = None,
) -> SmokeResult:
    """Prepare once, run once or twice, check the invariants and compare; write smoke.json.
    SmokeError (exit 9) when an invariant fails, NotDeterministic (exit 11) when the runs differ."""
    clock = clock or Clock()
    config = smoke_config(loaded.config, steps=steps, subset=subset)
    smoke = LoadedConfig(config=config, path=loaded.path)
    out = out_dir or Path(tempfile.mkdtemp(prefix=f"reproexec-smoke-{config.name}-"))
    opts = RunOptions(
        gpu=gpu,
        name=f"smoke-{config.name}",
        runtime=runtime,
        runs_dir=out.resolve() / "runs",
        smoke=not config.entrypoint,
        time_limit_s=config.smoke.max_seconds,
        data_dir=_byo_subset(smoke, on_log) if config.entrypoint else None,
    )
    prep = prepare_run(smoke, opts, engine, on_log, clock)
    outcomes = _run(prep, opts, engine, 1 if once else 2, on_event, on_log)
    signum = next((o.signum for o in outcomes if o.signum), None)
    if signum is not None:
        raise Interrupted(signum, f"smoke test of {config.name} interrupted; its runs say so in {opts.runs_dir}")
    runs = [_checked(outcome, config) for outcome in outcomes]
    result = SmokeResult(config.name, runtime, runs, "passed", out)
    result.wall_s = clock.wall()
    result.steps_s = None if config.entrypoint else max(_trainer_wall(r.run_dir) for r in runs)  # side by side
    failed = [r for r in runs if r.status != "succeeded" and not r.stopped_at_limit]
    if failed:
        result.verdict = "failed"
    elif any(r.problems for r in runs):
        result.verdict = "invariants"
    elif len(runs) == 2:
        _compare(result, smoke)
    write_json_atomic(out / SMOKE_JSON, result.to_dict())
    _raise_for(result)
    return result


def _run(
    prep: Prepared, opts: RunOptions, engine: Engine | None, n: int, on_event: EventFn, on_log: LogFn
) -> list[RunOutcome]:
    """The smoke runs, each from the same preparation in a fresh process. Two run at the same time:
    their thread counts are pinned, so where each runs does not change its numbers, and twice costs
    about what once does. If either is stopped (Ctrl-C, SIGTERM, an error), so is the other."""
    if n == 1:
        return [run_prepared(dataclasses.replace(prep, clock=Clock()), opts, engine, on_event, on_log)]
    stop: threading.Event = threading.Event()
    second: list[RunOutcome] = []
    failure: list[BaseException] = []

    def run_second() -> None:
        try:
            second.append(
                run_prepared(
                    dataclasses.replace(prep, clock=Clock()),
                    opts,
                    engine,
                    lambda e: None,
                    lambda s: on_log(f"run 2: {s}"),
                    stop,
                )
            )
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            failure.append(e)
            stop.set()

    on_log("smoke runs 1 and 2 at the same time (progress: run 1)")
    worker = threading.Thread(target=run_second, name="smoke-run-2", daemon=True)
    worker.start()
    try:
        first = run_prepared(dataclasses.replace(prep, clock=Clock()), opts, engine, on_event, on_log, stop)
        if first.status == "interrupted":
            stop.set()
        worker.join()
    except BaseException:
        stop.set()
        worker.join()
        raise
    if failure:
        raise failure[0]
    return [first, second[0]]


def _byo_subset(loaded: LoadedConfig, on_log: LogFn) -> Path:
    """The derived snapshot a bring-your-own script's smoke runs read (verified, then cut down)."""
    from reproexec.data.manifest import verify_snapshot
    from reproexec.data.subset import smoke_subset

    cfg = loaded.config
    root = loaded.resolve(cfg.data.snapshot).resolve()
    report = verify_snapshot(root, loaded.resolve(cfg.data.manifest) if cfg.data.manifest else None)
    report.raise_for_problems()
    assert report.manifest is not None
    subset = smoke_subset(root, report.manifest, cfg.smoke.subset, cache_dir() / "smoke-data")
    on_log(f"smoke data: {cfg.smoke.subset} files per split of {root}, in {subset}")
    return subset


def _checked(outcome: RunOutcome, config: Config) -> SmokeRun:
    """A smoke run's invariants, from what it logged."""
    stopped = outcome.status == "interrupted" and (outcome.reason or "").startswith("stopped at its time limit")
    losses, final, logged = _logged(outcome.run_dir, byo=bool(config.entrypoint))
    measured, problems = check_smoke(final, losses, config, logged=logged)
    if outcome.status != "succeeded" and not stopped:
        problems = [f"the run {outcome.status}: {outcome.reason}"]
    return SmokeRun(
        outcome.run_id, outcome.run_dir, outcome.status, outcome.reason, stopped, losses, measured, problems
    )


def _logged(run_dir: Path, *, byo: bool) -> tuple[list[float], dict[str, Any], list[dict[str, Any]]]:
    """(step losses, final metrics, every logged row) of a run: the trainer's metrics/steps.jsonl and
    summary, or a script's metrics/metrics.jsonl."""
    if byo:
        from reproexec.runs.compare import read_final_metrics

        rows, _ = read_jsonl_objects(run_dir / "metrics" / "metrics.jsonl")
        losses = [r.get("loss", r.get("train_loss")) for r in rows if "loss" in r or "train_loss" in r]
        final, _ = read_final_metrics(run_dir)
        return [float(v) if isinstance(v, int | float) else math.nan for v in losses], final, rows
    rows, _ = read_jsonl_objects(run_dir / "metrics" / "steps.jsonl")
    summary = read_json_object(run_dir / "summary.json") or {}
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    losses = [float(r["loss"]) if isinstance(r.get("loss"), int | float) else math.nan for r in rows]
    return losses, {**{k: v for k, v in summary.items() if isinstance(v, int | float)}, **final}, rows


def check_smoke(
    final: dict[str, Any], step_losses: list[float], config: Config, *, logged: list[dict[str, Any]] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Evaluate the invariants; returns (measured values, problems). No problems = pass."""
    s = config.smoke
    problems: list[str] = []
    if not step_losses:
        problems.append(
            "no training loss was logged: log it with reproexec.track.log(step=..., loss=...) or as JSON lines "
            "with a `loss` to $REPROEXEC_METRICS"
            if config.entrypoint
            else "the trainer logged no step"
        )
    bad = [i + 1 for i, v in enumerate(step_losses) if not math.isfinite(v)]
    if bad:
        problems.append(f"non-finite training loss at step(s) {', '.join(map(str, bad[:10]))}")
    k = max(1, min(5, len(step_losses) // 2))
    finite_losses = [v for v in step_losses if math.isfinite(v)]
    first = sum(finite_losses[:k]) / k if finite_losses else math.nan
    last = sum(finite_losses[-k:]) / k if finite_losses else math.nan
    drop = (first - last) / first if first and math.isfinite(first) and first > 0 else math.nan
    if step_losses and not (drop >= s.min_loss_drop):
        problems.append(
            f"loss did not drop enough: mean of first {k} steps {first:.6f}, last {k} steps {last:.6f}, "
            f"drop {drop:.2%} < smoke.min_loss_drop {s.min_loss_drop:.2%}"
        )
    if not config.entrypoint:
        for name in ("train_loss", "val_loss", "val_acc"):
            v = final.get(name)
            if not isinstance(v, int | float) or not math.isfinite(v):
                problems.append(f"final {name} is {v} (not finite)")
    for row in logged or []:
        odd = sorted(k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v))
        if odd and config.entrypoint:
            problems.append(f"logged {', '.join(odd)} = not finite (row {row.get('step', row.get('epoch'))})")
            break
    metrics = {k2: v for k2, v in final.items() if isinstance(v, int | float) and not isinstance(v, bool)}
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


def loss_sum_first5(losses: list[float]) -> float | None:
    """The seed's number: the sum of the first five step losses."""
    return sum(losses[:5]) if len(losses) >= 5 else None


def _compare(result: SmokeResult, loaded: LoadedConfig) -> None:
    """Run 2 against run 1, as rerun compares; when either was stopped at its time limit, the loss
    curves on the steps both logged."""
    from reproexec.runs.compare import compare_runs
    from reproexec.runs.envdiff import diff_env, view_of_run_dir
    from reproexec.runs.rerun import explain

    a, b = result.runs
    if a.stopped_at_limit or b.stopped_at_limit:
        n = min(len(a.losses), len(b.losses))
        step = next((i for i in range(n) if a.losses[i] != b.losses[i]), None)
        result.comparison = {
            "verdict": "identical" if step is None else "differs",
            "compared_steps": n,
            "files": "not compared: a run was stopped at smoke.max_seconds",
        }
        if step is not None:
            result.first_difference = f"step {step + 1}, loss: {a.losses[step]!r} (run 1) vs {b.losses[step]!r} (run 2)"
        comparison = None
    else:
        comparison = compare_runs(a.run_dir, b.run_dir)
        result.comparison = comparison.to_dict()
        d = comparison.first_divergence
        if comparison.verdict != "identical" and d is not None:
            result.first_difference = f"{d.where}, {d.metric}: {d.a!r} (run 1) vs {d.b!r} (run 2)"
    if result.comparison["verdict"] != "identical":
        result.verdict = "not deterministic"
        diffs = diff_env(view_of_run_dir(a.run_dir), view_of_run_dir(b.run_dir))
        if comparison is not None:
            result.hints = explain(loaded, comparison, diffs)
        if not result.hints:
            result.hints = [
                "the first difference above is where to look: an unseeded random generator, time in a logged "
                "value, or an op without a deterministic implementation"
            ]


def _trainer_wall(run_dir: Path) -> float:
    timing = (read_json_object(run_dir / "run.json") or {}).get("timing")
    wall = timing.get("trainer_wall_s") if isinstance(timing, dict) else None
    return float(wall) if isinstance(wall, int | float) else 0.0


def _raise_for(result: SmokeResult) -> None:
    where = f"smoke folder {result.out_dir} ({SMOKE_JSON})"
    if result.verdict == "failed":
        failed = next(r for r in result.runs if r.status != "succeeded" and not r.stopped_at_limit)
        raise RunError(
            f"a smoke run of {result.name} {failed.status}: {failed.reason}; {where}",
            f"read {failed.run_dir / 'stdout.log'}; the run folder says the same in run.json",
        )
    if result.verdict == "invariants":
        problems = [f"run {i + 1}: {p}" for i, r in enumerate(result.runs) for p in r.problems]
        raise SmokeError(
            f"smoke invariants failed for {result.name} ({len(problems)} problem{'s' if len(problems) != 1 else ''}); {where}",
            "inspect the runs' metrics there; raise train.lr or smoke.steps, or relax smoke.min_loss_drop / smoke.ranges "
            "if the expectation was wrong",
            details=problems,
        )
    if result.verdict == "not deterministic":
        raise NotDeterministic(
            f"not deterministic: {result.name}'s two smoke runs differ, first at {result.first_difference}; {where}",
            result.hints[0] if result.hints else None,
            details=result.hints[1:],
        )
