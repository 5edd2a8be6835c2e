"""`reproexec rerun <run-id | run.tar.gz>`: rebuild (or load) the recorded image, verify the data
against the recorded manifest, replay the recorded config (seeds, threads, CPU dispatch level),
run, compare with the original, and explain the environment differences."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproexec._version import version
from reproexec.codebox import CODE_TAR
from reproexec.config import LoadedConfig, validate_config
from reproexec.engine import Engine
from reproexec.errors import ConfigError, RunError
from reproexec.fsutil import load_json, sha256_file, write_atomic, write_json_atomic
from reproexec.keys import load_signer
from reproexec.runs.attest import attest
from reproexec.runs.compare import Comparison, compare_runs
from reproexec.runs.envdiff import Difference, diff_env, view_of_run_dir
from reproexec.runs.execute import EventFn, RunOutcome, execute_run
from reproexec.runs.prepare import Replay, RunOptions, Runtime
from reproexec.runs.store import RESOLVED_CONFIG, RUN_JSON, RunRecord, load_run


@dataclass
class RerunResult:
    original: RunRecord
    outcome: RunOutcome
    comparison: Comparison | None
    env_diff: list[Difference]
    hints: list[str]  # why the runs may differ, when nothing in the environment says so
    signed_by: str | None = None  # the key that signed the original, when its signature verified


def locate(ref: str, runs_dir: Path, engine: Engine | None, *, signed_by: str | None = None) -> tuple[RunRecord, Any]:
    """The original run, verified as `reproexec verify` does (files, attestation, records, signature;
    with `signed_by`, signed by that key) before anything is built or run: from the store, a run
    folder, or a bundle (imported, its image loaded)."""
    from reproexec.runs.bundle import check_run, import_bundle

    p = Path(ref)
    if p.is_file():
        imported = import_bundle(p, runs_dir, (lambda: engine) if engine is not None else None, signed_by=signed_by)
        return imported.record, imported.verification
    record = load_run(ref, runs_dir)
    return record, check_run(record.path, f"run {record.run_id}", signed_by=signed_by)


def replay_config(original: RunRecord, *, data: Path | None, cpuset: str | None) -> tuple[LoadedConfig, dict[str, Any]]:
    """The recorded config, replayed: as the host reads it (validated by this reproexec), and as the
    run's process gets it (the recorded JSON with only the paths and the cpuset replaced, so the
    recorded reproexec inside the image reads what it wrote, whatever fields this one adds)."""
    try:
        raw = load_json(original.path / RESOLVED_CONFIG)
    except (OSError, ValueError) as e:
        raise RunError(f"run {original.run_id} has no readable {RESOLVED_CONFIG}: {e}") from None
    if not all(isinstance(x, dict) for x in (raw, raw.get("env"), raw.get("data"), raw.get("resources"))):
        raise RunError(
            f"run {original.run_id}: {RESOLVED_CONFIG} is not a resolved config", "the run folder was altered"
        )
    if isinstance(raw.get("output"), dict):
        raw["output"].pop("runs_dir", None)  # written by reproexec < 0.1.1, never used
    raw["env"]["lockfile"] = "requirements.lock"  # the run's own copy
    recorded = (
        (original.data.get("data") or {}).get("snapshot") if isinstance(original.data.get("data"), dict) else None
    )
    if data is None and not isinstance(recorded, str):
        raise RunError(f"run {original.run_id}'s run.json records no dataset snapshot", "pass --data PATH")
    raw["data"]["snapshot"] = str(data.resolve() if data is not None else recorded)  # --data is relative to the caller
    raw["data"]["manifest"] = str(original.path / "manifest.json")  # verify against what the run used
    if cpuset is not None:
        raw["resources"]["cpuset"] = cpuset
    loaded = LoadedConfig(
        config=validate_config(copy.deepcopy(raw), f"{original.run_id}/{RESOLVED_CONFIG}"),
        path=original.path / "config.yaml",
    )
    return loaded, raw


def rerun(
    ref: str,
    *,
    runs_dir: Path,
    engine: Engine | None,
    runtime: Runtime = "docker",
    data: Path | None = None,
    gpu: bool = False,
    cpuset: str | None = None,
    tolerances: dict[str, float] | None = None,
    signed_by: str | None = None,
    on_event: EventFn = lambda e: None,
    on_log: Callable[[str], None] = lambda s: None,
) -> RerunResult:
    if cpuset is not None:
        check_cpuset(cpuset)
    original, verified = locate(ref, runs_dir, engine, signed_by=signed_by)
    if original.data.get("status") != "succeeded":
        raise RunError(f"run {original.run_id} did not succeed ({original.status}); there is nothing to compare with")
    check_tolerances(tolerances or {}, original)
    for line in build_differences(original):
        on_log(line)
    loaded, resolved = replay_config(original, data=data, cpuset=cpuset)
    # What runs is decided by the replayed config; run.json must agree with it.
    if bool(loaded.config.entrypoint) != bool(original.data.get("entrypoint")):
        raise RunError(
            f"run {original.run_id}: run.json and config.resolved.json disagree about the entrypoint",
            "the run folder was altered; do not use it",
        )
    code_tar = None
    if loaded.config.entrypoint:
        code_tar = original.path / CODE_TAR  # the code it ran, not whatever the work tree holds now
        if not code_tar.is_file():
            raise RunError(
                f"run {original.run_id} used a bring-your-own entrypoint but has no {CODE_TAR} "
                "(runs with --runtime local and runs made by an older reproexec keep none)",
                "check out the recorded commit, apply code.patch, and `reproexec run` its config",
            )
    randomness = original.data.get("randomness")
    environment = randomness.get("environment") if isinstance(randomness, dict) else None
    opts = RunOptions(
        gpu=gpu,
        runtime=runtime,
        runs_dir=runs_dir,
        replay=Replay(
            image=original.data.get("image") if runtime == "docker" else None,
            platform=original.data.get("platform") if isinstance(original.data.get("platform"), dict) else None,
            source=original.path,
            code_tar=code_tar,
            config=resolved,
            environment=environment if isinstance(environment, dict) else None,
        ),
    )
    outcome = execute_run(loaded, opts, engine=engine, on_event=on_event, on_log=on_log)
    tol = {**loaded.config.tolerance, **(tolerances or {})}
    comparison = compare_runs(original.path, outcome.run_dir, tol) if outcome.succeeded else None
    diffs = diff_env(view_of_run_dir(original.path, original.run_id), view_of_run_dir(outcome.run_dir))
    hints = explain(loaded, comparison, diffs)
    _record(original, outcome, comparison, diffs, hints)
    return RerunResult(
        original=original,
        outcome=outcome,
        comparison=comparison,
        env_diff=diffs,
        hints=hints,
        signed_by=verified.signed_by,
    )


def check_cpuset(cpuset: str) -> None:
    """--cpuset, by the rule the config's resources.cpuset follows (and named as the flag it is)."""
    from pydantic import ValidationError

    from reproexec.config import ResourcesSection

    try:
        ResourcesSection(cpuset=cpuset)
    except ValidationError as e:
        raise ConfigError(
            f"--cpuset {cpuset!r}: {e.errors()[0]['msg']}", "e.g. --cpuset 1, --cpuset 0-1 or --cpuset 0,2"
        ) from None


def check_tolerances(tolerances: dict[str, float], original: RunRecord) -> None:
    """Each --tolerance names a metric the run logged, a tensor (a dotted name) or a glob, and a
    finite tolerance of 0 or more: an unknown name would silently tolerate nothing."""
    known = logged_metrics(original.path)
    for name, value in tolerances.items():
        if not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"--tolerance {name}={value}: a tolerance is a finite number of 0 or more",
                "e.g. --tolerance val_loss=1e-6",
            )
        if name in known or "." in name or any(c in name for c in "*?["):
            continue
        raise ConfigError(
            f"--tolerance {name}={value}: run {original.run_id} logged no metric {name!r}",
            f"name one it logged ({', '.join(sorted(known)[:12]) or 'none'}), a tensor (e.g. layer4.0.conv1.weight) "
            "or a glob (layer4.*)",
        )


def logged_metrics(run_dir: Path) -> set[str]:
    """Every metric name a run logged (its metrics files' numeric columns and its summary's finals)."""
    from reproexec.fsutil import read_json_object, read_jsonl_objects
    from reproexec.runs.compare import METRIC_STREAMS

    names: set[str] = set()
    for stream, _ in METRIC_STREAMS:
        rows, _problem = read_jsonl_objects(run_dir / "metrics" / f"{stream}.jsonl")
        for row in rows[:1000]:  # the columns, not every value
            names |= {k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    final = (read_json_object(run_dir / "summary.json") or {}).get("final")
    return names | (set(final) if isinstance(final, dict) else set())


def build_differences(original: RunRecord) -> list[str]:
    """When another build of reproexec made the run: which, and what that means for the rerun."""
    made_by = original.data.get("reproexec_version")
    if made_by == version():
        return []
    image = original.data.get("image") if isinstance(original.data.get("image"), dict) else {}
    inside = image.get("reproexec") if isinstance(image.get("reproexec"), dict) else {}
    line = f"note: run {original.run_id} was made by reproexec {made_by}"
    if inside.get("sha256"):
        line += f" (wheel {str(inside['sha256'])[:12]})"
    line += f"; this is reproexec {version()}."
    if image:
        line += (
            " The recorded image is reused or rebuilt from the run's recipe, so the recorded reproexec trains "
            "inside it; only the host side is this one."
        )
    else:
        line += " The run used --runtime local: this reproexec's trainer runs it."
    return [line]


def explain(loaded: LoadedConfig, comparison: Comparison | None, diffs: list[Difference]) -> list[str]:
    """What to look at when the runs differ and no difference of the environment can change numbers."""
    if comparison is None or comparison.verdict != "differs" or any(d.numerics for d in diffs):
        return []
    cfg = loaded.config
    if cfg.entrypoint and not cfg.determinism.seed_entrypoint:
        return [
            "the script may be unseeded: determinism.seed_entrypoint is off in this run's config, so reproexec "
            "did not seed random, NumPy or torch; seed them in the script, or turn the setting on"
        ]
    hints = [
        "nothing in the environment can explain it, so look at the run itself: time-dependent values "
        "(dates, timings, elapsed seconds) written into a result file, randomness from outside random/NumPy/"
        "torch (e.g. np.random.default_rng() or os.urandom without a seed), or threads racing over the order "
        "of results"
    ]
    if cfg.entrypoint:
        hints.append("a file that is a log, not a result, can be listed in output.logs so it is only reported")
    return hints


def _record(
    original: RunRecord, outcome: RunOutcome, comparison: Comparison | None, diffs: list[Difference], hints: list[str]
) -> None:
    """comparison.json and comparison.html beside the new run; run.json says what it reran."""
    from reproexec.runs.report import render_comparison

    run_dir = outcome.run_dir
    data: dict[str, Any] = {
        "original": original.run_id,
        "rerun": outcome.run_id,
        "comparison": comparison.to_dict() if comparison else None,
        "env_diff": [d.__dict__ for d in diffs],
        "hints": hints,
    }
    write_json_atomic(run_dir / "comparison.json", data)
    write_atomic(run_dir / "comparison.html", render_comparison(data))
    record = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
    record["rerun_of"] = original.run_id
    record["verdict"] = comparison.verdict if comparison else None
    # Only the two comparison files are new; everything else was hashed when the run finished.
    for name in ("comparison.json", "comparison.html"):
        record["artifacts"][name] = sha256_file(run_dir / name)
    write_json_atomic(run_dir / RUN_JSON, record)
    attest(run_dir, record, load_signer())  # again: the comparison is part of what the rerun produced
