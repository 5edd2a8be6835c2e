"""The sweep's statistics on numbers worked out by hand (and checked against textbook values)."""

from __future__ import annotations

import math

import pytest

from reproexec.sweep.stats import compare_variants, describe, paired_test, verdict

BASE = {0: 0.90, 1: 0.91, 2: 0.92, 3: 0.90, 4: 0.91}


def test_describe_gives_mean_sample_std_and_the_t_interval():
    d = describe([1.0, 2.0, 3.0, 4.0, 5.0])
    assert d["n"] == 5 and d["mean"] == 3.0
    assert d["std"] == pytest.approx(math.sqrt(2.5))
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) · s / √n
    assert d["ci95"] == pytest.approx([3.0 - half, 3.0 + half])
    assert describe([0.5])["std"] is None and describe([0.5])["ci95"] is None and describe([])["mean"] is None


def test_paired_tests_match_textbook_values():
    # differences 1..5: t = 3/(√2.5/√5) = 4.2426, df 4 → two-sided p = 0.01324
    t = paired_test([1.0, 2.0, 3.0, 4.0, 5.0])
    assert t["p_ttest"] == pytest.approx(0.013236, abs=1e-5)
    # exact sign flips: only all-positive and all-negative reach |mean| 3 → 2/32
    assert t["p_permutation"] == pytest.approx(2 / 32) and t["p_permutation_min"] == pytest.approx(2 / 32)
    # 1,-2,3,-4,5: sum 3 = 15 − 2·(negated part); |sum| ≥ 3 needs a negated part ≤ 6 or ≥ 9: 13 + 13 of 32 subsets
    mixed = paired_test([1.0, -2.0, 3.0, -4.0, 5.0])
    assert mixed["p_permutation"] == pytest.approx(26 / 32)
    assert paired_test([0.0, 0.0, 0.0])["p_ttest"] == 1.0 and paired_test([0.1, 0.1, 0.1])["p_ttest"] == 0.0


def test_verdict_rule():
    assert verdict(0.03, paired_test([0.03, 0.02, 0.04, 0.03, 0.05])) == "better"
    assert verdict(-0.03, paired_test([-0.03, -0.02, -0.04, -0.03, -0.05])) == "worse"
    # one seed of five moved the other way: the exact test cannot agree at 0.0625
    assert verdict(0.02, paired_test([0.03, 0.02, 0.04, 0.03, -0.01])) == "no difference detectable with 5 seeds"
    assert verdict(0.05, paired_test([0.05, 0.05])) == "no difference detectable with 2 seeds"  # fewer than 3 pairs
    # with 7 seeds one small move the other way still passes: sums ≥ the observed: that seed either way,
    # both mirrored → 4/128
    seven = paired_test([0.05, 0.04, 0.06, 0.05, 0.05, 0.04, -0.01])
    assert seven["p_permutation"] == pytest.approx(4 / 128) and verdict(0.04, seven) == "better"


def test_compare_variants_pairs_by_seed_in_the_metrics_direction():
    values = {
        "base": BASE,
        "up": {s: v + 0.03 + 0.001 * s for s, v in BASE.items()},
        "noisy": {0: 0.95, 1: 0.88, 2: 0.93, 3: 0.87, 4: 0.93},
        "partial": {0: 0.99, 1: 0.99},
    }
    r = compare_variants(values, "base", "max")
    assert r["noise_floor"]["std"] == pytest.approx(0.0083666, abs=1e-6) and r["noise_floor"]["n"] == 5
    up = r["variants"]["up"]
    assert up["paired"]["mean_diff"] == pytest.approx(0.032) and up["verdict"] == "better"
    assert up["paired"]["in_noise_floors"] == pytest.approx(0.032 / 0.0083666, rel=1e-4)
    assert r["variants"]["noisy"]["verdict"] == "no difference detectable with 5 seeds"
    assert r["variants"]["partial"]["paired"]["seeds"] == [0, 1]  # only seeds both succeeded on pair
    assert r["variants"]["base"]["verdict"] == "baseline"
    # a loss: lower is better, so the same upward move is "worse"
    loss = compare_variants({"base": BASE, "up": values["up"]}, "base", "min")
    assert loss["variants"]["up"]["verdict"] == "worse" and loss["variants"]["up"]["paired"][
        "mean_diff"
    ] == pytest.approx(0.032)
