"""The sweep's comparison report (report.html, summary.csv, summary.md) and the runs-side-by-side
table that `reproexec runs compare` prints.

Everything read from a run folder was written by a container and is treated as hostile: files are
read through fsutil's bounded readers (no link followed; a file that is not a JSON object is
missing; rows that are not objects are skipped), a metric is believed only as a finite number,
and the page is rendered with autoescaping. The plots are inline SVG computed here (no matplotlib
on the host), so the page is one self-contained file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from reproexec.fsutil import read_json_object, read_jsonl_objects
from reproexec.runs.compare import metric_value
from reproexec.runs.report import fmt
from reproexec.runs.store import RESOLVED_CONFIG

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
FINAL_METRICS = ("val_acc", "val_loss", "train_loss")
_SHA_HEX = set("0123456789abcdef")


# -- reading run folders (hostile input) -------------------------------------------------------
def number(v: Any) -> float | None:
    v = metric_value(v)
    return v if v is not None and math.isfinite(v) else None


def run_facts(run_dir: Path) -> dict[str, Any]:
    """What a report needs from one run folder, each value checked."""
    record = read_json_object(run_dir / "run.json") or {}
    summary = read_json_object(run_dir / "summary.json") or {}
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    sha = summary.get("weights_sha256")
    config = read_json_object(run_dir / RESOLVED_CONFIG) or {}
    return {
        "run_id": str(record.get("run_id") or run_dir.name),
        "status": str(record.get("status") or "unknown"),
        "metrics": {k: number(metrics.get(k)) for k in FINAL_METRICS},
        "weights_sha256": sha if isinstance(sha, str) and len(sha) == 64 and set(sha) <= _SHA_HEX else None,
        "config": config,
    }


def curves(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    steps = [
        (number(r.get("step")), number(r.get("loss")))
        for r in read_jsonl_objects(run_dir / "metrics" / "steps.jsonl")[0]
    ]
    out: dict[str, list[tuple[float, float]]] = {"loss": [(s, v) for s, v in steps if s is not None and v is not None]}
    epochs = read_jsonl_objects(run_dir / "metrics" / "epochs.jsonl")[0]
    for key in FINAL_METRICS:
        pts = [(number(r.get("epoch")), number(r.get(key))) for r in epochs]
        out[key] = [(e, v) for e, v in pts if e is not None and v is not None]
    return out


# -- the report data ----------------------------------------------------------------------------
def build_report(record: dict[str, Any]) -> dict[str, Any]:
    from reproexec.sweep.stats import compare_variants

    metric, variants = record["metric"], list(record["variants"])
    values: dict[str, dict[int, float]] = {v: {} for v in variants}
    cell_rows, run_dirs = [], []
    curve_sets: dict[str, list[dict[str, list[tuple[float, float]]]]] = {v: [] for v in variants}
    for c in record["cells"]:
        facts: dict[str, Any] = {"metrics": {}, "weights_sha256": None}
        if c.get("status") == "succeeded" and c.get("run_dir"):
            run_dir = Path(c["run_dir"])
            facts = run_facts(run_dir)
            value = facts["metrics"].get(metric)
            if value is not None and c["variant"] in values:
                values[c["variant"]][int(c["seed"])] = value
                curve_sets[c["variant"]].append(curves(run_dir))
                run_dirs.append(run_dir)
        slurm = c.get("slurm") or {}
        cell_rows.append(
            {
                "key": c["key"],
                "variant": c["variant"],
                "seed": c["seed"],
                "status": c.get("status"),
                "reason": c.get("reason"),
                "run_id": c.get("run_id"),
                "reused": bool(c.get("reused")),
                "metric": facts["metrics"].get(metric),
                "weights_sha256": facts["weights_sha256"],
                "slurm_job": slurm.get("job_id"),
                "slurm_state": slurm.get("state"),
            }
        )
    stats = compare_variants(values, record["baseline"], record["goal"], order=variants)
    colours = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(variants)}
    plots = {"loss": _band_plot(curve_sets, "loss", colours, "step", "training loss")}
    if any(len(cs.get(metric, [])) > 1 for sets in curve_sets.values() for cs in sets):
        plots["metric"] = _band_plot(curve_sets, metric, colours, "epoch", metric)
    plots["strip"] = _strip_plot(values, variants, record["seeds"], colours, metric, stats)
    return {
        "sweep_id": record.get("sweep_id"),
        "name": record.get("name"),
        "status": record.get("status"),
        "metric": metric,
        "goal": record["goal"],
        "baseline": record["baseline"],
        "seeds": record["seeds"],
        "variants": variants,
        "colours": colours,
        "image_tag": record.get("image_tag") or ", ".join(record.get("images") or {}),
        "manifest_id": record.get("manifest_id") or ", ".join(record.get("manifest_ids") or []),
        "executor": (record.get("executor") or {}).get("kind"),
        "differences": record.get("differences") or {},
        "stats": stats,
        "cells": cell_rows,
        "plots": plots,
        "side_by_side": compare_table(run_dirs) if run_dirs else None,
    }


def compare_table(run_dirs: list[Path]) -> dict[str, Any]:
    """Runs side by side: every config field that differs between them, and their final metrics."""
    from reproexec.sweep.spec import flatten

    facts = [run_facts(d) for d in run_dirs]
    flat = [flatten(f["config"]) for f in facts]
    keys = sorted(set().union(*flat)) if flat else []
    differing = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]
    return {
        "runs": [f["run_id"] for f in facts],
        "status": [f["status"] for f in facts],
        "config_differences": [{"field": k, "values": [f.get(k) for f in flat]} for k in differing],
        "metrics": [{"metric": m, "values": [f["metrics"].get(m) for f in facts]} for m in FINAL_METRICS],
        "weights_sha256": [f["weights_sha256"] for f in facts],
    }


# -- plots (inline SVG geometry) ----------------------------------------------------------------
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 300, 56, 12, 12, 36


def _scaler(lo: float, hi: float, a: float, b: float):  # type: ignore[no-untyped-def]
    span = (hi - lo) or 1.0
    return lambda v: round(a + (v - lo) / span * (b - a), 2)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi == lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _count_ticks(lo: float, hi: float, most: int = 6) -> list[int]:
    """Whole-number ticks for an axis that counts (steps, epochs), placed like matplotlib's
    MaxNLocator(integer=True): at most `most`, 1, 2 or 5 times a power of ten apart, within lo..hi."""
    raw = max(1.0, (hi - lo) / (most - 1))
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return list(range(math.ceil(lo / step) * step, math.floor(hi) + 1, step))


def _band_plot(
    curve_sets: dict[str, list[dict[str, Any]]], key: str, colours: dict[str, str], xlabel: str, ylabel: str
) -> dict[str, Any]:
    """Per variant: the mean across seeds as a line, min..max across seeds as a band (at the x values
    every seed logged)."""
    series = []
    for variant, sets in curve_sets.items():
        runs = [dict(cs.get(key, [])) for cs in sets if cs.get(key)]
        if not runs:
            continue
        xs = sorted(set.intersection(*(set(r) for r in runs)))
        pts = [(x, [r[x] for r in runs]) for x in xs]
        series.append(
            {
                "variant": variant,
                "colour": colours[variant],
                "n": len(runs),
                "mean": [(x, sum(v) / len(v)) for x, v in pts],
                "lo": [(x, min(v)) for x, v in pts],
                "hi": [(x, max(v)) for x, v in pts],
            }
        )
    allx = [x for s in series for x, _ in s["mean"]]
    ally = [y for s in series for part in ("lo", "hi") for _, y in s[part]]
    if not allx:
        return {"empty": True, "xlabel": xlabel, "ylabel": ylabel, "series": []}
    sx = _scaler(min(allx), max(allx), PAD_L, W - PAD_R)
    sy = _scaler(min(ally), max(ally), H - PAD_B, PAD_T)
    for s in series:
        s["line"] = " ".join(f"{sx(x)},{sy(y)}" for x, y in s["mean"])
        s["band"] = " ".join(f"{sx(x)},{sy(y)}" for x, y in s["hi"] + list(reversed(s["lo"])))
    return {
        "empty": False,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "series": series,
        "w": W,
        "h": H,
        "xticks": [(sx(t), str(t)) for t in _count_ticks(min(allx), max(allx))],
        "yticks": [(sy(t), _fmt_tick(t)) for t in _ticks(min(ally), max(ally))],
        "axis": {"x0": PAD_L, "x1": W - PAD_R, "y0": H - PAD_B, "y1": PAD_T},
    }


def _strip_plot(
    values: dict[str, dict[int, float]],
    variants: list[str],
    seeds: list[int],
    colours: dict[str, str],
    metric: str,
    stats: dict[str, Any],
) -> dict[str, Any]:
    """One column per variant, one dot per seed, lines joining the same seed across variants (the
    pairs the tests compare), and each variant's mean with its 95% CI."""
    ys = [v for vals in values.values() for v in vals.values()]
    for e in stats["variants"].values():
        ys += [y for y in (e.get("ci95") or []) if y is not None]
    if not ys:
        return {"empty": True, "ylabel": metric}
    sy = _scaler(min(ys), max(ys), H - PAD_B, PAD_T)
    step = (W - PAD_L - PAD_R) / max(1, len(variants))
    xcol = {v: round(PAD_L + step * (i + 0.5), 2) for i, v in enumerate(variants)}
    jitter = {s: (i - (len(seeds) - 1) / 2) * min(6.0, step / (2 * max(1, len(seeds)))) for i, s in enumerate(seeds)}
    dots, lines = [], []
    for s in seeds:
        pts = [
            (round(xcol[v] + jitter[s], 2), sy(values[v][s]), v, values[v][s])
            for v in variants
            if s in values.get(v, {})
        ]
        dots += [{"x": x, "y": y, "variant": v, "seed": s, "value": val, "colour": colours[v]} for x, y, v, val in pts]
        if len(pts) > 1:
            lines.append({"seed": s, "points": " ".join(f"{x},{y}" for x, y, _, _ in pts)})
    means = []
    for v in variants:
        e = stats["variants"][v]
        if e.get("mean") is not None:
            ci = e.get("ci95") or [e["mean"], e["mean"]]
            means.append({"variant": v, "x": xcol[v], "y": sy(e["mean"]), "lo": sy(ci[0]), "hi": sy(ci[1])})
    return {
        "empty": False,
        "ylabel": metric,
        "w": W,
        "h": H,
        "dots": dots,
        "lines": lines,
        "means": means,
        "columns": [{"variant": v, "x": xcol[v]} for v in variants],
        "yticks": [(sy(t), _fmt_tick(t)) for t in _ticks(min(ys), max(ys))],
        "axis": {"x0": PAD_L, "x1": W - PAD_R, "y0": H - PAD_B, "y1": PAD_T},
    }


def _fmt_tick(v: float) -> str:
    return f"{v:.4g}"


# -- rendering ----------------------------------------------------------------------------------


def fmt_p(p: Any) -> str:
    return "—" if p is None else (f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}")


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant: what summary.csv holds and what the terminal shows."""
    rows = []
    for v in report["variants"]:
        e = report["stats"]["variants"][v]
        p = e.get("paired") or {}
        rows.append(
            {
                "variant": v,
                "n": e["n"],
                "mean": e["mean"],
                "std": e["std"],
                "ci95_low": (e.get("ci95") or [None, None])[0],
                "ci95_high": (e.get("ci95") or [None, None])[1],
                "diff_vs_baseline": p.get("mean_diff"),
                "diff_ci95_low": (p.get("ci95") or [None, None])[0],
                "diff_ci95_high": (p.get("ci95") or [None, None])[1],
                "pairs": p.get("n"),
                "p_ttest": p.get("p_ttest"),
                "p_permutation": p.get("p_permutation"),
                "verdict": e["verdict"],
            }
        )
    return rows


def render_csv(report: dict[str, Any]) -> str:
    rows = summary_rows(report)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["metric", *rows[0].keys()], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {
                "metric": report["metric"],
                **{k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in r.items()},
            }
        )
    return buf.getvalue()


def markdown_table(report: dict[str, Any]) -> str:
    m = report["metric"]
    head = f"| variant | n | {m} mean ± std | 95% CI | Δ vs {report['baseline']} (95% CI) | p (t-test) | p (permutation) | verdict |"
    lines = [head, "|" + "---|" * 8]
    for r in summary_rows(report):
        ci = f"[{fmt(r['ci95_low'])}, {fmt(r['ci95_high'])}]" if r["ci95_low"] is not None else "—"
        if r["diff_vs_baseline"] is None:
            diff = "—"
        else:
            dci = f" [{fmt(r['diff_ci95_low'])}, {fmt(r['diff_ci95_high'])}]" if r["diff_ci95_low"] is not None else ""
            diff = f"{r['diff_vs_baseline']:+.4f}{dci}"
        lines.append(
            f"| {r['variant']} | {r['n']} | {fmt(r['mean'])} ± {fmt(r['std'])} | {ci} | {diff} | "
            f"{fmt_p(r['p_ttest'])} | {fmt_p(r['p_permutation'])} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def render_markdown(report: dict[str, Any]) -> str:
    nf = report["stats"]["noise_floor"]
    return (
        f"# Sweep {report['sweep_id']}: {report['metric']} ({'higher' if report['goal'] == 'max' else 'lower'} is better)\n\n"
        + markdown_table(report)
        + f"\nSeed-noise floor ({report['baseline']}'s std across {nf['n']} seeds): {fmt(nf['std'])}\n"
        + f"\nRule: {report['stats']['rule']}\n"
    )


def render_html(report: dict[str, Any]) -> str:
    from reproexec.runs.report import jinja_env

    return (
        jinja_env()
        .get_template("sweep_report.html.j2")
        .render(r=report, rows=summary_rows(report), fmt=fmt, fmt_p=fmt_p)
    )
