"""The run store: one folder per run, and `run.json` that tells the truth about it.

A run folder is created only when everything before training succeeded (config, image, dataset),
with an exclusive mkdir, so two runs never share one. `run.json` is always replaced atomically:
it says `running` from the start and `succeeded | failed | interrupted` at the end, so a killed
process leaves a run that says `running` — and `list_runs` shows it as `interrupted (stale)` once
the process that owned it is gone. Nothing here ever touches another run's folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproexec._version import version
from reproexec.errors import RunError
from reproexec.fsutil import relpath_problem, sha256_file
from reproexec.labels import owner_is_gone

RUN_JSON = "run.json"
RESOLVED_CONFIG = "config.resolved.json"
# Written after run.json (they attest run.json's facts), so not among its artifacts: they travel beside it.
ATTESTATION = "attestation.intoto.json"
SIGNER_KEY = "attestation.pub"
BESIDE_RUN_JSON = (ATTESTATION, SIGNER_KEY)  # the config with every default written out: what the run's process read
# The run.json format this reproexec writes; it reads every earlier one too (tests/fixtures/runs/ holds
# a run folder of each). 1: the first; 2: the image's recipe (recipe/, image.reproexec, image.runtime_protocol).
RUN_SCHEMA = 2
READ_SCHEMAS = (1, 2)
RUNS_DIR_ENV = "REPROEXEC_RUNS"
STAGING = ".staging"  # runs_dir/.staging/<run id>: where a run's process writes (see outputs.py)
RESERVE = ".reserve"  # room set aside in a run folder for its final run.json
# What reproexec itself writes at the top of a run folder; a run's process may not write these names.
RECORDS = frozenset(
    {
        RUN_JSON,
        "config.yaml",
        RESOLVED_CONFIG,
        "requirements.lock",
        "Dockerfile",
        "manifest.json",
        "code.patch",
        "code.tar",
        "stdout.log",
        "report.html",
        "comparison.json",
        "comparison.html",
        RESERVE,
        "recipe",  # the image's build context (env: recipe.py), a folder
        ATTESTATION,
        SIGNER_KEY,
    }
)
_ID_PART = re.compile(r"[^A-Za-z0-9.-]+")
FINAL = ("succeeded", "failed", "interrupted")
MAX_RUN_JSON_BYTES = 16 * 1024**2


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "runs")).expanduser().resolve()


def make_run_id(arch: str, name: str, fingerprint: str, today: dt.date | None = None) -> str:
    """`2026-11-24_resnet18_digits_a1b2c3`: date, model, config name, short hash."""
    today = today or dt.datetime.now(dt.UTC).date()
    clean = [_ID_PART.sub("-", p).strip("-") or "x" for p in (arch, name)]
    return f"{today.isoformat()}_{clean[0]}_{clean[1]}_{fingerprint[:6]}"


def create_run_dir(runs_dir: Path, run_id: str) -> tuple[str, Path]:
    """Exclusively create the run's folder; a second run with the same id gets a -2, -3, ... suffix."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = run_id if n == 1 else f"{run_id}-{n}"
        path = runs_dir / candidate
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return candidate, path
    raise RunError(f"too many runs named {run_id} in {runs_dir}", "pass --name to tell them apart")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def artifact_hashes(run_dir: Path, known: dict[str, str] | None = None) -> dict[str, str]:
    """sha256 of every file in the run folder except run.json itself (which holds these) and the
    reserve; `known` are digests taken on the way in (outputs), not read again."""
    known = known or {}
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(run_dir):  # os.walk never descends into links
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(run_dir).as_posix()
            if rel in (RUN_JSON, RESERVE) or p.is_symlink() or not p.is_file():
                continue
            out[rel] = known.get(rel) or sha256_file(p, follow_symlinks=False)
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    path: Path
    data: dict[str, Any]

    @property
    def status(self) -> str:
        status = self.data.get("status", "unknown")
        owner = self.data.get("owner")
        if status == "running" and isinstance(owner, dict) and owner_is_gone(owner):
            return "interrupted (stale)"
        return status


RUN_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


def parse_run_json(data: bytes, source: str) -> dict[str, Any]:
    """A run.json read back (from the store, or a bundle from elsewhere): size-bounded, parsed
    without recursion blow-ups, and validated against the fields reproexec relies on. RunError
    naming every problem otherwise."""
    from pydantic import ValidationError

    if len(data) > MAX_RUN_JSON_BYTES:
        raise RunError(
            f"{source} is {len(data):,} bytes (limit {MAX_RUN_JSON_BYTES:,})", "this is not a run.json reproexec wrote"
        )
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise RunError(
            f"{source} is not valid JSON: {str(e)[:200]}", "this is not a run.json reproexec wrote"
        ) from None
    try:
        record = _run_json_model().model_validate(doc)
    except ValidationError as e:
        details = [
            f"{'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}"
            for err in e.errors(include_url=False)
        ]
        raise RunError(
            f"{source} is not a valid run.json",
            "this is not a run.json reproexec wrote (or it was altered)",
            details=details[:20],
        ) from None
    if record.schema_ not in READ_SCHEMAS:
        raise RunError(
            f"{source} has run.json schema {record.schema_} (written by reproexec {record.reproexec_version}); "
            f"this reproexec ({version()}) reads schemas {READ_SCHEMAS[0]} to {READ_SCHEMAS[-1]}",
            "use a reproexec at least as new as the one that wrote it",
        )
    return doc


def _run_json_model() -> Any:
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

    sha = Field(pattern=r"^[0-9a-f]{64}$")

    class _Open(BaseModel):
        model_config = ConfigDict(extra="allow")

    class Image(_Open):
        tag: str = Field(pattern=r"^reproexec-env:[0-9a-f]{64}$")
        id: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
        content_hash: str = sha

    class Data(_Open):
        snapshot: StrictStr
        manifest_id: StrictStr

    class RunJson(_Open):
        schema_: StrictInt = Field(alias="schema")
        run_id: str = Field(pattern=RUN_ID_RE)
        status: Literal["running", "succeeded", "failed", "interrupted"]
        reason: StrictStr | None = None
        started_at: StrictStr
        finished_at: StrictStr | None = None
        reproexec_version: StrictStr
        owner: dict[str, Any] | None = None
        artifacts: dict[str, str] = {}
        image: Image | None = None
        data: Data | None = None
        entrypoint: list[StrictStr] | None = None
        metrics: dict[str, Any] | None = None
        summary: dict[str, Any] | None = None

        @field_validator("artifacts")
        @classmethod
        def _safe(cls, v: dict[str, str]) -> dict[str, str]:
            bad = [k for k, d in v.items() if relpath_problem(k) or not re.fullmatch(r"[0-9a-f]{64}", d)]
            if bad:
                raise ValueError(f"unsafe path or malformed sha256: {', '.join(repr(b) for b in bad[:5])}")
            return v

    return RunJson


def read_run_json(path: Path) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_RUN_JSON_BYTES + 1)
    except OSError as e:
        raise RunError(f"{path} cannot be read: {e.strerror or e}") from None
    return parse_run_json(data, str(path))


def load_run(ref: str, runs_dir: Path | None = None) -> RunRecord:
    """A run by id (in the store) or by folder path."""
    runs_dir = runs_dir or default_runs_dir()
    candidates = [Path(ref), runs_dir / ref]
    for path in candidates:
        if (path / RUN_JSON).is_file():
            data = read_run_json(path / RUN_JSON)
            return RunRecord(run_id=data["run_id"], path=path.resolve(), data=data)
    known = [r.run_id for r in list_runs(runs_dir)][-5:]
    raise RunError(
        f"no run {ref!r} in {runs_dir}",
        "pass a run id from `reproexec runs list` (or --runs-dir DIR, or a run folder's path)"
        + (f"; latest: {', '.join(known)}" if known else ""),
    )


def list_runs(runs_dir: Path | None = None) -> list[RunRecord]:
    runs_dir = runs_dir or default_runs_dir()
    out = []
    if runs_dir.is_dir():
        for path in sorted(runs_dir.iterdir()):
            f = path / RUN_JSON
            if f.is_file():
                try:
                    data = read_run_json(f)
                except RunError as e:
                    data = {
                        "status": f"unreadable run.json ({e.message.removeprefix(str(f)).strip()})",
                        "started_at": "",
                    }
                out.append(RunRecord(run_id=str(data.get("run_id", path.name)), path=path, data=data))
    return sorted(out, key=lambda r: (str(r.data.get("started_at", "")), r.run_id))
