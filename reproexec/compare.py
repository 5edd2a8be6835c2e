"""Compare two runs: identical, within tolerance, or where they differ.

identical         the weights sha256 and every logged metric (each step's loss and lr, each
                  epoch's metrics) are equal
within tolerance  every metric is within its declared absolute tolerance (config `tolerance:` or
                  `--tolerance metric=value`); a metric without one must be equal
differs           otherwise: the first step (or epoch) and metric where the curves part

A bring-your-own entrypoint writes what it likes into its run folder, so for such runs every file
it wrote (everything but reproexec's own records, stdout.log included) must also be byte-identical:
a file that differs, or exists in one run only, is a difference ("file result.json").
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reproexec.runstore import RECORDS

IDENTICAL, WITHIN, DIFFERS = "identical", "within tolerance", "differs"
EXIT_CODES = {IDENTICAL: 0, WITHIN: 10, DIFFERS: 11}
_IGNORED = {"step", "epoch", "epochs", "total_steps", "elapsed_s", "event"}
# What reproexec writes into a bring-your-own run's folder (and the environment it captured, which
# differs by machine by design); the rest is the entrypoint's. stdout.log is the entrypoint's output.
_RECORDS = (RECORDS - {"stdout.log"}) | {"environment.json"}


@dataclass(frozen=True)
class Divergence:
    where: str  # "step 12" / "epoch 2" / "weights"
    metric: str
    a: Any
    b: Any


@dataclass
class Comparison:
    verdict: str
    a: str
    b: str
    first_divergence: Divergence | None = None
    out_of_tolerance: int = 0
    within_tolerance: int = 0
    compared_values: int = 0
    compared_files: int = 0  # bring-your-own runs: output files compared by sha256
    weights: tuple[str | None, str | None] = (None, None)
    final: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exit_code"] = self.exit_code
        return d


def compare_runs(a_dir: Path, b_dir: Path, tolerances: dict[str, float] | None = None) -> Comparison:
    tol = dict(tolerances or {})
    sa, sb = _json(a_dir / "summary.json") or {}, _json(b_dir / "summary.json") or {}
    c = Comparison(verdict=IDENTICAL, a=a_dir.name, b=b_dir.name, tolerances=tol)
    c.weights = (sa.get("weights_sha256"), sb.get("weights_sha256"))
    fa, fb = sa.get("final") or {}, sb.get("final") or {}
    c.final = {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if not isinstance(fa.get(k, 0), (dict, list))}

    for name, unit in (("steps", "step"), ("epochs", "epoch")):
        rows_a, rows_b = _jsonl(a_dir / "metrics" / f"{name}.jsonl"), _jsonl(b_dir / "metrics" / f"{name}.jsonl")
        for i in range(max(len(rows_a), len(rows_b))):
            ra = rows_a[i] if i < len(rows_a) else None
            rb = rows_b[i] if i < len(rows_b) else None
            where = f"{unit} {(ra or rb or {}).get(unit, i + 1)}"
            if ra is None or rb is None:
                _mark(c, Divergence(where, "(row missing)", ra is not None, rb is not None))
                continue
            for key in sorted(set(_numbers(ra)) | set(_numbers(rb))):
                va, vb = _numbers(ra).get(key), _numbers(rb).get(key)
                c.compared_values += 1
                if va == vb or (va is not None and vb is not None and math.isnan(va) and math.isnan(vb)):
                    continue
                t = tol.get(key, tol.get(key.split(".")[0], 0.0))
                if va is not None and vb is not None and abs(va - vb) <= t:
                    c.within_tolerance += 1
                    if c.verdict == IDENTICAL:
                        c.verdict = WITHIN
                    continue
                _mark(c, Divergence(where, key, va, vb))
    ra, rb = _json(a_dir / "run.json") or {}, _json(b_dir / "run.json") or {}
    if ra.get("entrypoint") or rb.get("entrypoint"):
        oa, ob = _outputs(a_dir), _outputs(b_dir)
        for name in sorted(set(oa) | set(ob)):
            c.compared_files += 1
            if oa.get(name) != ob.get(name):
                _mark(c, Divergence(f"file {name}", "sha256", oa.get(name), ob.get(name)))
    if c.weights[0] != c.weights[1] and c.verdict == IDENTICAL:
        # Every logged value equal but the weights not: the numbers moved below what was logged.
        c.verdict = WITHIN if tol else DIFFERS
        if c.first_divergence is None:
            c.first_divergence = Divergence("weights", "weights_sha256", c.weights[0], c.weights[1])
    return c


def _outputs(folder: Path) -> dict[str, str]:
    """Every file the entrypoint left in a run folder (any depth, dotfiles too) and its sha256:
    all but reproexec's own records at the top level."""
    import hashlib
    import os

    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if rel in _RECORDS:
            continue
        if p.is_symlink():
            out[rel] = f"symlink to {os.readlink(p)}"
        elif p.is_file():
            with open(p, "rb") as f:
                out[rel] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def _mark(c: Comparison, d: Divergence) -> None:
    c.out_of_tolerance += 1
    c.verdict = DIFFERS
    if c.first_divergence is None:
        c.first_divergence = d


def _numbers(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in row.items():
        if k in _IGNORED:
            continue
        if isinstance(v, dict):
            out.update(_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, json.JSONDecodeError):
        return []
