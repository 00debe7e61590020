"""Paired comparisons: exact permutation p-values, Wilcoxon path, NaN handling, pairing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from localdisc.tasks.stats import compare_to_reference, match_pairs, paired_test, sign_flip_pvalue


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
    assert c["method"] == "ld" and c["budget"] == "2" and c["n"] == 8
    assert c["mean_diff"] == pytest.approx(0.1 + 0.001 * np.mean([i % 3 for i in range(8)]))
    assert c["test"] == "wilcoxon" and c["p_value"] < 0.05
