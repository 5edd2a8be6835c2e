"""Does a variant help? Per-variant statistics across seeds and paired tests against the baseline.

Cells of the same seed share the initial weights and the data order, so variant and baseline are
compared pair by pair: d_i = variant_i − baseline_i on seed i (baseline_i − variant_i for a metric
where lower is better, so d > 0 always means "better"). Only seeds where both cells succeeded pair.

The verdict rule (alpha = 0.05), written down so that a reader can check it:

    better   n ≥ 3 pairs, mean(d) > 0, the paired t-test gives p < 0.05, and the exact sign-flip
             permutation test gives p ≤ max(0.05, 2/2^n)
    worse    the same with mean(d) < 0
    otherwise: "no difference detectable with n seeds"

The exact permutation test flips the signs of the n differences in all 2^n ways, so its smallest
possible p-value is 2/2^n: 0.0625 with 5 seeds. With 5 or fewer seeds it can therefore only agree
when every seed moved the same way, which is exactly what a careful reader would ask for. The
seed-noise floor is the baseline's standard deviation across seeds: a difference is also reported
as a multiple of it, so "better by 0.3 noise floors" reads as what it is.

All statistics come from SciPy; nothing here is hand-written but the bookkeeping.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

ALPHA = 0.05
MIN_PAIRS = 3


def describe(values: list[float]) -> dict[str, Any]:
    """n, mean, sample std and the 95% t-interval of the mean (None where n is too small)."""
    import numpy as np
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    out: dict[str, Any] = {"n": n, "mean": None, "std": None, "ci95": None, "min": None, "max": None}
    if n == 0:
        return out
    out.update(mean=float(x.mean()), min=float(x.min()), max=float(x.max()))
    if n >= 2:
        std = float(x.std(ddof=1))
        out["std"] = std
        if std == 0.0:
            out["ci95"] = [float(x.mean()), float(x.mean())]
        else:
            lo, hi = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=std / math.sqrt(n))
            out["ci95"] = [float(lo), float(hi)]
    return out


def paired_test(diffs: list[float]) -> dict[str, Any]:
    """Paired t-test (as a one-sample t-test of the differences) and the exact sign-flip test."""
    import numpy as np
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    n = len(d)
    out: dict[str, Any] = {"n": n, "p_ttest": None, "p_permutation": None, "p_permutation_min": None}
    if n < 2:
        return out
    if np.ptp(d) == 0.0:  # every pair moved by exactly the same amount: SciPy's t is undefined or unstable
        out["p_ttest"] = 1.0 if d[0] == 0.0 else 0.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["p_ttest"] = float(stats.ttest_1samp(d, 0.0).pvalue)
    exact = n <= 20  # 2^20 sign patterns; beyond that a seeded Monte Carlo estimate
    res = stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=np.inf if exact else 100_000,
        rng=np.random.default_rng(0),
    )
    out["p_permutation"] = min(1.0, float(res.pvalue))
    out["p_permutation_min"] = 2.0 / 2**n if exact else None
    out["permutation"] = "exact" if exact else "monte carlo (100,000 resamples)"
    return out


def verdict(mean_diff: float | None, test: dict[str, Any]) -> str:
    n = test["n"]
    p_t, p_perm = test.get("p_ttest"), test.get("p_permutation")
    if n < MIN_PAIRS or mean_diff is None or p_t is None or p_perm is None or mean_diff == 0.0:
        return f"no difference detectable with {n} seed{'s' if n != 1 else ''}"
    perm_bar = max(ALPHA, test.get("p_permutation_min") or 0.0)
    if p_t < ALPHA and p_perm <= perm_bar + 1e-12:
        return "better" if mean_diff > 0 else "worse"
    return f"no difference detectable with {n} seeds"


def compare_variants(
    values: dict[str, dict[int, float]], baseline: str, goal: str, order: list[str] | None = None
) -> dict[str, Any]:
    """values: variant → {seed: metric}. Returns per-variant statistics, the paired comparison to the
    baseline (difference in the metric's own direction: variant − baseline) and the verdict."""
    order = order or list(values)
    sign = 1.0 if goal == "max" else -1.0
    base = values.get(baseline, {})
    base_stats = describe(list(base.values()))
    noise = base_stats["std"]
    variants: dict[str, Any] = {}
    for name in order:
        vals = values.get(name, {})
        entry: dict[str, Any] = {"variant": name, "baseline": name == baseline, **describe(list(vals.values()))}
        entry["values"] = {str(s): v for s, v in sorted(vals.items())}
        if name != baseline:
            seeds = sorted(set(vals) & set(base))
            raw = [vals[s] - base[s] for s in seeds]  # in the metric's units
            test = paired_test([sign * x for x in raw])
            diff = describe(raw)
            entry["paired"] = {
                "seeds": seeds,
                "mean_diff": diff["mean"],
                "ci95": diff["ci95"],
                "std": diff["std"],
                **{k: v for k, v in test.items() if k != "n"},
                "n": test["n"],
                "in_noise_floors": (abs(diff["mean"]) / noise) if diff["mean"] is not None and noise else None,
            }
            entry["verdict"] = verdict(None if diff["mean"] is None else sign * diff["mean"], test)
        else:
            entry["verdict"] = "baseline"
        variants[name] = entry
    return {
        "baseline": baseline,
        "goal": goal,
        "alpha": ALPHA,
        "noise_floor": {
            "std": noise,
            "range": None if base_stats["min"] is None else base_stats["max"] - base_stats["min"],
            "n": base_stats["n"],
        },
        "variants": variants,
        "rule": (
            f"better/worse: at least {MIN_PAIRS} paired seeds, paired t-test p < {ALPHA} and exact sign-flip "
            f"permutation test p <= max({ALPHA}, 2/2^n); otherwise no difference detectable with n seeds"
        ),
    }
