"""Compare two runs: identical, within tolerance, or where they differ.

identical         every logged metric (each step's and epoch's values, and a bring-your-own script's
                  metrics/metrics.jsonl) is equal, the weights are equal, and for a bring-your-own
                  run every result file is equal
within tolerance  every difference is within its declared absolute tolerance (config `tolerance:` or
                  `--tolerance name=value`; a name is a metric or a tensor, and may be a glob like
                  `layer4.*` or `*`); anything without one must be equal
differs           otherwise: the first step (or epoch, or file and tensor) where the runs part

A bring-your-own entrypoint writes what it likes, so its files are sorted by the config's
`output.results` and `output.logs` globs. Result files decide: equal bytes, or for checkpoints
(.pt/.pth/.ckpt) equal tensors (a re-pickled but equal state dict is identical; a real difference
names the first tensor and its largest absolute difference). Logs, and files in neither list, are
compared too and reported ("stdout.log differs"), but never make the verdict `differs`: scripts
print timings.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reproexec.errors import VERDICT_EXIT_CODES
from reproexec.fsutil import read_json_object, read_jsonl_objects
from reproexec.runs.store import RECORDS, RESOLVED_CONFIG

IDENTICAL, WITHIN, DIFFERS = "identical", "within tolerance", "differs"
EXIT_CODES = VERDICT_EXIT_CODES
_IGNORED = {"step", "epoch", "epochs", "total_steps", "elapsed_s", "event"}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
# metrics files compared row by row: (file under metrics/, the unit a row is at)
METRIC_STREAMS = (("steps", "step"), ("epochs", "epoch"), ("metrics", "step"))
SCRIPT_METRICS = Path("metrics") / "metrics.jsonl"  # what a bring-your-own script logs
# A metric is a number at most this many dicts deep in a row; deeper is a script's own structure.
# json.loads parses ~1000 levels: walking all of them again, from deeper in the stack, would raise
# RecursionError.
MAX_METRIC_DEPTH = 8
# What reproexec writes into a bring-your-own run's folder (and the environment it captured, which
# differs by machine by design); the rest is the entrypoint's. stdout.log is the entrypoint's output.
REPROEXEC_FILES = (RECORDS - {"stdout.log"}) | {"environment.json"}


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
    compared_files: int = 0  # bring-your-own runs: output files compared
    weights: tuple[str | None, str | None] = (None, None)
    final: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=dict)
    # bring-your-own runs: every output file, {"name", "kind" (result|log|other), "status", "detail"}
    files: list[dict[str, Any]] = field(default_factory=list)
    # what could not be read of either run's metrics ("<run>: <file> line 7 is not a JSON object"):
    # the verdict stands on the rest, so it is said with the verdict
    unread: list[str] = field(default_factory=list)

    @property
    def unequal_logs(self) -> list[str]:
        """Logs and unlisted files that differ: reported, never a reason for `differs`."""
        return [f["name"] for f in self.files if f["kind"] != "result" and f["status"] != "identical"]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exit_code"] = self.exit_code
        return d


def compare_runs(a_dir: Path, b_dir: Path, tolerances: dict[str, float] | None = None) -> Comparison:
    tol = dict(tolerances or {})
    sa, sb = read_json_object(a_dir / "summary.json") or {}, read_json_object(b_dir / "summary.json") or {}
    c = Comparison(verdict=IDENTICAL, a=a_dir.name, b=b_dir.name, tolerances=tol)
    c.weights = (_sha(sa), _sha(sb))
    fa, fb = final_metrics(a_dir), final_metrics(b_dir)
    c.final = {
        k: (fa.get(k), fb.get(k))
        for k in sorted(set(fa) | set(fb))
        if not isinstance(fa.get(k), (dict, list)) and not isinstance(fb.get(k), (dict, list))
    }

    for name, unit in METRIC_STREAMS:
        rows_a, problem_a = read_jsonl_objects(a_dir / "metrics" / f"{name}.jsonl")
        rows_b, problem_b = read_jsonl_objects(b_dir / "metrics" / f"{name}.jsonl")
        c.unread += [f"{d.name}: {problem}" for d, problem in ((a_dir, problem_a), (b_dir, problem_b)) if problem]
        for i in range(max(len(rows_a), len(rows_b))):
            ra = rows_a[i] if i < len(rows_a) else None
            rb = rows_b[i] if i < len(rows_b) else None
            where = _where(ra or rb or {}, unit, i)
            if ra is None or rb is None:
                _mark(c, Divergence(where, "(row missing)", ra is not None, rb is not None))
                continue
            na, nb = _numbers(ra), _numbers(rb)
            for key in sorted(set(na) | set(nb)):
                va, vb = na.get(key), nb.get(key)
                c.compared_values += 1
                if va == vb or (va is not None and vb is not None and math.isnan(va) and math.isnan(vb)):
                    continue
                if va is not None and vb is not None and abs(va - vb) <= tolerance_for(key, tol):
                    _within(c)
                    continue
                _mark(c, Divergence(where, key, va, vb))
    ra, rb = read_json_object(a_dir / "run.json") or {}, read_json_object(b_dir / "run.json") or {}
    if ra.get("entrypoint") or rb.get("entrypoint"):
        _compare_outputs(c, a_dir, b_dir, *output_globs(b_dir), tol)
    if c.weights[0] != c.weights[1] and c.verdict == IDENTICAL:
        # Every logged value equal but the weights not: the numbers moved below what was logged.
        c.verdict = WITHIN if tol else DIFFERS
        if c.first_divergence is None:
            c.first_divergence = Divergence("weights", "weights_sha256", c.weights[0], c.weights[1])
    return c


def _where(row: dict[str, Any], unit: str, i: int) -> str:
    for key in (unit, "step", "epoch"):
        if isinstance(row.get(key), (int, float, str)):  # a script's own structure is no position
            return f"{key} {str(row[key])[:100]}"
    return f"row {i + 1}"


def tolerance_for(name: str, tol: dict[str, float]) -> float:
    """The tolerance of a metric or tensor: its own, its first dotted part's, else the first glob
    that matches it (e.g. `layer4.*`, `*`); 0 when none is declared."""
    if name in tol:
        return tol[name]
    if name.split(".")[0] in tol:
        return tol[name.split(".")[0]]
    for pattern, value in tol.items():
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return 0.0


def final_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's final metrics: the built-in trainer's summary, else the last value of each metric a
    bring-your-own script logged (metrics/metrics.jsonl)."""
    return read_final_metrics(run_dir)[0]


def read_final_metrics(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """`final_metrics`, and the first problem met reading the script's metrics.jsonl (a line that is
    not a JSON object, the row or byte cap; None when there was none) to say beside them."""
    summary = read_json_object(run_dir / "summary.json") or {}
    if isinstance(summary.get("final"), dict):
        return summary["final"], None
    rows, problem = read_jsonl_objects(run_dir / SCRIPT_METRICS)
    last: dict[str, Any] = {}
    for row in rows:
        last.update(_numbers(row))
    return last, problem


def output_globs(run_dir: Path) -> tuple[list[str], list[str]]:
    """The config's `output.results` and `output.logs` globs as the run recorded them
    (config.resolved.json); anything there that is not a list of strings counts as none."""
    output = (read_json_object(run_dir / RESOLVED_CONFIG) or {}).get("output")
    output = output if isinstance(output, dict) else {}

    def strings(v: Any) -> list[str]:
        return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []

    return strings(output.get("results")), strings(output.get("logs"))


def classify(rel: str, results: list[str], logs: list[str]) -> str:
    """result | log | other, by the config's globs (a glob with '/' matches the relative path,
    one without matches the file name). Results win over logs."""

    def hit(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(rel if "/" in p else rel.rsplit("/", 1)[-1], p) for p in patterns)

    return "result" if hit(results) else "log" if hit(logs) else "other"


def _compare_outputs(
    c: Comparison, a_dir: Path, b_dir: Path, results: list[str], logs: list[str], tol: dict[str, float]
) -> None:
    oa, ob = _outputs(a_dir), _outputs(b_dir)
    for name in sorted(set(oa) | set(ob)):
        c.compared_files += 1
        kind = classify(name, results, logs)
        status, detail = "identical", None
        if name not in oa or name not in ob:
            status, detail = "differs", f"only in the {'rerun' if name in ob else 'original'}"
        elif oa[name] != ob[name]:
            status, detail = "differs", "bytes differ"
            if kind == "result" and name.endswith(CHECKPOINT_SUFFIXES):
                status, detail = compare_checkpoints(a_dir / name, b_dir / name, tol)
        c.files.append({"name": name, "kind": kind, "status": status, "detail": detail})
        if kind != "result" or status == IDENTICAL:
            continue
        if status == WITHIN:
            _within(c)
        else:
            _mark(c, Divergence(f"file {name}", detail or "sha256", oa.get(name), ob.get(name)))


def compare_checkpoints(a: Path, b: Path, tol: dict[str, float]) -> tuple[str, str]:
    """Two checkpoint files whose bytes differ, compared by what they hold: (status, detail)."""
    try:
        import torch
    except ImportError:
        return DIFFERS, "bytes differ (install torch on this machine to compare the tensors)"
    try:
        la = _leaves(torch.load(a, map_location="cpu", weights_only=True), "")
        lb = _leaves(torch.load(b, map_location="cpu", weights_only=True), "")
    except Exception as e:  # a file torch cannot read safely is compared by its bytes
        return DIFFERS, f"bytes differ (not a checkpoint torch loads safely: {type(e).__name__})"
    within = False
    for key in sorted(set(la) | set(lb)):
        if key not in la or key not in lb:
            return DIFFERS, f"{key}: only in the {'rerun' if key in lb else 'original'}"
        x, y = la[key], lb[key]
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.dtype != y.dtype or x.shape != y.shape:
                return DIFFERS, f"{key}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
            if torch.equal(x, y) or (
                x.is_floating_point()
                and torch.equal(x.isnan(), y.isnan())
                and torch.equal(x.nan_to_num(), y.nan_to_num())
            ):
                continue
            diff = (x.double() - y.double()).abs().nan_to_num(nan=math.inf).max().item()
            if diff <= tolerance_for(key, tol):
                within = True
                continue
            return DIFFERS, f"tensor {key}: largest absolute difference {diff:.6g}"
        if x != y:
            return DIFFERS, f"{key}: {x!r} vs {y!r}"[:300]
    return (
        (WITHIN, "tensors within tolerance")
        if within
        else (IDENTICAL, "equal tensors (the files differ only in how they were written)")
    )


def _leaves(obj: Any, prefix: str) -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_leaves(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): obj}


def _outputs(folder: Path) -> dict[str, str]:
    """Every file the entrypoint left in a run folder (any depth, dotfiles too) and its sha256, from
    run.json's artifacts (taken when the run ended): all but reproexec's own records."""
    artifacts = (read_json_object(folder / "run.json") or {}).get("artifacts")
    if not isinstance(artifacts, dict):
        return {}
    return {
        rel: digest
        for rel, digest in artifacts.items()
        if isinstance(digest, str) and rel.split("/")[0] not in REPROEXEC_FILES
    }


def _within(c: Comparison) -> None:
    c.within_tolerance += 1
    if c.verdict == IDENTICAL:
        c.verdict = WITHIN


def _mark(c: Comparison, d: Divergence) -> None:
    c.out_of_tolerance += 1
    c.verdict = DIFFERS
    if c.first_divergence is None:
        c.first_divergence = d


def _numbers(row: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in row.items():
        if k in _IGNORED:
            continue
        if isinstance(v, dict) and depth < MAX_METRIC_DEPTH:
            out.update(_numbers(v, f"{prefix}{k}.", depth + 1))
        elif (value := metric_value(v)) is not None:
            out[f"{prefix}{k}"] = value
    return out


def metric_value(v: Any) -> float | None:
    """A value a run logged as a float, if it is a number (not a bool); an integer too large for a
    float (JSON allows any number of digits) is ±inf rather than an OverflowError."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _sha(summary: dict[str, Any]) -> str | None:
    sha = summary.get("weights_sha256")
    return sha if isinstance(sha, str) else None
