"""Paired comparisons: exact permutation p-values, Wilcoxon path, NaN handling, pairing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from localdisc.evaluation.stats import cluster_bootstrap, cluster_bootstrap_ci, compare_to_reference, holm, match_pairs, paired_test, sign_flip_pvalue


def _slow_sign_flip(d):
    d = [float(x) for x in d]
    obs = abs(sum(d) / len(d))
    hits = 0
    for signs in itertools.product((1, -1), repeat=len(d)):
        hits += abs(sum(s * x for s, x in zip(signs, d)) / len(d)) >= obs - 1e-12
    return hits / 2 ** len(d)


def test_all_positive_tiny_n_has_exact_two_sided_p():
    # n = 3, every difference positive: only the all-plus and all-minus patterns are as extreme.
    res = paired_test([0.9, 0.8, 0.7], [0.5, 0.5, 0.5])
    assert res.test == "permutation"
    assert res.n == 3
    assert res.mean_diff == pytest.approx(0.3)
    assert res.p_value == pytest.approx(2 / 8)


def test_sign_flip_matches_loop_reference(rng):
    for n in (1, 4, 7):
        d = rng.normal(0.1, 0.3, size=n)
        assert sign_flip_pvalue(d) == pytest.approx(_slow_sign_flip(d))


def test_monte_carlo_sign_flip_close_to_exact(rng):
    d = rng.normal(0.2, 0.5, size=12)
    exact = sign_flip_pvalue(d, exact_max=16)
    approx = sign_flip_pvalue(d, exact_max=4, samples=20000)
    assert approx == pytest.approx(exact, abs=0.02)


def test_identical_scores_give_p_one_and_zero_difference():
    res = paired_test([0.5, 0.7, 0.2], [0.5, 0.7, 0.2])
    assert res.mean_diff == 0 and res.p_value == 1.0 and res.test == "none"


def test_wilcoxon_used_for_larger_n_and_matches_scipy(rng):
    b = rng.uniform(0.4, 0.8, size=20)
    a = b + rng.normal(0.05, 0.02, size=20)
    res = paired_test(a, b)
    assert res.test == "wilcoxon"
    assert res.p_value == pytest.approx(wilcoxon(a - b).pvalue)
    assert res.p_value < 0.001
    assert res.mean_diff == pytest.approx(float(np.mean(a - b)))
    # no real difference: not significant
    noise = paired_test(b, b + rng.normal(0, 0.05, size=20))  # fixed seed: deterministic
    assert noise.p_value > 0.05


def test_nan_pairs_dropped_and_counted():
    res = paired_test([0.9, math.nan, 0.8, 0.7], [0.5, 0.5, math.nan, 0.4])
    assert res.n == 2 and res.n_dropped == 2
    assert res.mean_diff == pytest.approx(0.35)
    empty = paired_test([math.nan], [1.0])
    assert empty.n == 0 and math.isnan(empty.p_value)


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        paired_test([1, 2], [1])


def test_match_pairs_aligns_on_id_and_seed_regardless_of_order():
    ref = [{"id": "a", "seed": 0, "dice": "0.1"}, {"id": "b", "seed": 0, "dice": "0.2"}, {"id": "a", "seed": 1, "dice": "0.3"}]
    rows = [{"id": "a", "seed": 1, "dice": "0.9"}, {"id": "b", "seed": 0, "dice": "0.8"}, {"id": "c", "seed": 0, "dice": "0.5"}]
    a, b = match_pairs(rows, ref, "dice")
    assert a.tolist() == [0.9, 0.8] and b.tolist() == [0.3, 0.2]  # c has no partner


def test_compare_to_reference_per_method_and_budget():
    rows = []
    for i in range(8):
        rows.append({"method": "random", "budget": "2", "seed": 0, "id": f"i{i}", "dice_x": 0.5 + 0.01 * i})
        rows.append({"method": "ld", "budget": "2", "seed": 0, "id": f"i{i}", "dice_x": 0.6 + 0.01 * i + 0.001 * (i % 3)})
        rows.append({"method": "ld", "budget": "all", "seed": 0, "id": f"i{i}", "dice_x": 0.9})  # no reference at 'all'
    out = compare_to_reference(rows, ["dice_x"])
    assert len(out) == 1
    (c,) = out
    assert c["method"] == "ld" and c["budget"] == "2" and c["n_pairs"] == 8 and c["n_images"] == 8
    assert c["mean_diff"] == pytest.approx(0.1 + 0.001 * np.mean([i % 3 for i in range(8)]))
    assert c["rank_test"] == "wilcoxon" and c["p_rank_test"] < 0.05 and c["p_value"] < 0.05 and c["p_holm"] == c["p_value"]  # one row: nothing to correct
    assert c["ci_low"] < c["mean_diff"] < c["ci_high"] and c["ci_low"] > 0


def test_images_not_pairs_are_the_unit():
    """3 seeds of the same 6 images are not 18 independent pairs: the test runs on 6 per-image
    means, and the CI resamples whole images and seeds."""
    rows = []
    for s in range(3):
        for i in range(6):
            rows.append({"method": "random", "budget": "1", "seed": s, "id": f"i{i}", "d": 0.5})
            rows.append({"method": "ld", "budget": "1", "seed": s, "id": f"i{i}", "d": 0.5 + (0.1 if i < 4 else -0.05)})
    (c,) = compare_to_reference(rows, ["d"])
    assert c["n_images"] == 6 and c["n_seeds"] == 3 and c["n_pairs"] == 18
    assert c["rank_test"] == "wilcoxon" and c["p_rank_test"] == pytest.approx(wilcoxon([0.1] * 4 + [-0.05] * 2).pvalue)


def test_cluster_bootstrap_against_a_loop_reference():
    rng = np.random.default_rng(0)
    d = rng.normal(0.05, 0.1, (7, 3)) + rng.normal(0, 0.05, (7, 1))  # image effects shared across seeds
    d[2, 1] = np.nan
    lo, hi = cluster_bootstrap_ci(d, samples=500, seed=3)
    # the same resampling written out with loops
    g = np.random.default_rng(3)
    means = []
    for _ in range(500):
        imgs, seeds = g.integers(0, 7, 7), g.integers(0, 3, 3)
        vals = [d[i, s] for i in imgs for s in seeds if np.isfinite(d[i, s])]
        means.append(sum(vals) / len(vals))
    # percentile order statistics: the 13th smallest and the 13th largest of 500 (ceil(0.025 * 500) - 1 = 12, 0-based)
    srt = np.sort(means)
    assert (lo, hi) == pytest.approx((srt[12], srt[-13]))
    _, _, p = cluster_bootstrap(d, samples=500, seed=3)
    assert p == pytest.approx(min(1.0, 2 * min(np.mean(srt <= 0), np.mean(srt >= 0))))
    # clusters are wider than pooling 21 pairs as independent would be
    flat = d[np.isfinite(d)]
    assert hi - lo > 2 * 1.96 * flat.std(ddof=1) / np.sqrt(flat.size) * 0.9


def test_holm_against_hand_computation():
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([0.01, float("nan")])[1]) and holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_compare_to_ld_is_each_method_minus_ld():
    """The results page's second table: with reference="ld", every other method (random init
    included) minus LD on matched (image, seed) pairs; LD itself has no row."""
    rng = np.random.default_rng(3)
    base = {(i, s): rng.uniform(0.5, 0.9) for i in range(8) for s in (0, 1)}
    shift = {"ld": 0.0, "random": -0.05, "simclr": 0.02}
    rows = [{"method": m, "budget": "2", "id": f"im{i}", "seed": s, "dice_mean": base[(i, s)] + d + rng.normal(0, 0.01)}
            for m, d in shift.items() for (i, s) in base]
    out = {r["method"]: r for r in compare_to_reference(rows, ["dice_mean"], reference="ld")}
    assert set(out) == {"random", "simclr"}
    for m in out:
        by = {(r["id"], r["seed"]): r["dice_mean"] for r in rows if r["method"] == m}
        ld = {(r["id"], r["seed"]): r["dice_mean"] for r in rows if r["method"] == "ld"}
        assert out[m]["mean_diff"] == pytest.approx(np.mean([by[k] - ld[k] for k in ld]))
    assert out["random"]["ci_high"] < 0 < out["simclr"]["ci_low"]


def test_cluster_bootstrap_with_pretraining_runs_as_a_third_factor():
    rng = np.random.default_rng(1)
    d = rng.normal(0.03, 0.1, (6, 3, 2)) + np.array([0.0, 0.08])  # the second pretraining run gains more
    d[1, 2, 0] = np.nan
    lo, hi, p = cluster_bootstrap(d, samples=400, seed=5)
    g = np.random.default_rng(5)
    means = []
    for _ in range(400):
        imgs, seeds, runs = g.integers(0, 6, 6), g.integers(0, 3, 3), g.integers(0, 2, 2)
        vals = [d[i, s, r] for i in imgs for s in seeds for r in runs if np.isfinite(d[i, s, r])]
        means.append(sum(vals) / len(vals))
    srt = np.sort(means)
    assert (lo, hi) == pytest.approx((srt[9], srt[-10]))
    assert p == pytest.approx(min(1.0, 2 * min(np.mean(srt <= 0), np.mean(srt >= 0))))
    # the run-to-run difference widens the interval beyond either run's own two-way CI
    one = [cluster_bootstrap(d[:, :, r], samples=400, seed=5) for r in range(2)]
    assert hi - lo > max(h - lo_ for lo_, h, _ in one)
