"""Label savings: the crossing of the reference's all-labels Dice, and its bootstrap."""

import math

import numpy as np
import pytest

from localdisc.evaluation.savings import label_savings, labels_to_reach


def _rows(dice_by_cell, images=6, seeds=(0, 1, 2), noise=None):
    """per_image rows; dice_by_cell {(method, budget): dice}, plus noise[(method, budget)][image, seed]."""
    out = []
    for (m, b), d in dice_by_cell.items():
        for i in range(images):
            for s in seeds:
                extra = 0.0 if noise is None else noise[(m, b)][i, s]
                out.append({"method": m, "budget": b, "seed": s, "id": f"img{i}", "dice_mean": d + extra})
    return out


def test_labels_to_reach_interpolates_in_log_labels():
    # halfway in Dice between 10 and 40 labels is halfway in log labels: sqrt(10 * 40) = 20
    n, status = labels_to_reach([(10, 0.8), (40, 0.9)], 0.85)
    assert status == "reached" and n == pytest.approx(20.0)
    assert labels_to_reach([(40, 0.9), (10, 0.8)], 0.9) == (pytest.approx(40.0), "reached")  # order does not matter


def test_labels_to_reach_censored_and_first_crossing():
    assert labels_to_reach([(10, 0.95), (40, 0.9)], 0.9) == (10.0, "at_most")
    assert labels_to_reach([(10, 0.5), (40, 0.6)], 0.9) == (math.inf, "never")
    # a curve that crosses, dips and crosses again: the first crossing counts
    n, _ = labels_to_reach([(10, 0.5), (20, 0.95), (40, 0.7), (80, 0.95)], 0.9)
    assert 10 < n < 20


def test_label_savings_exact_on_constant_scores():
    budgets, n_labels = ["10", "40", "all"], [10, 40, 160]
    cells = {("random", "10"): 0.7, ("random", "40"): 0.8, ("random", "all"): 0.9,
             ("ld", "10"): 0.8, ("ld", "40"): 0.9, ("ld", "all"): 0.95,
             ("pdcr", "10"): 0.92, ("pdcr", "40"): 0.93, ("pdcr", "all"): 0.95,
             ("worse", "10"): 0.5, ("worse", "40"): 0.6, ("worse", "all"): 0.85}
    rows = {r["method"]: r for r in label_savings(_rows(cells), ["random", "ld", "pdcr", "worse"], budgets, n_labels, samples=200)}
    assert rows["random"]["needed"] == pytest.approx(160) and rows["random"]["savings"] == pytest.approx(1.0)
    assert rows["ld"]["needed"] == pytest.approx(40) and rows["ld"]["savings"] == pytest.approx(4.0)
    # every image scores the same, so every resample agrees with the point estimate
    assert rows["ld"]["savings_low"] == pytest.approx(4.0) and rows["ld"]["savings_high"] == pytest.approx(4.0)
    assert rows["ld"]["p_two_fold"] == 0.0
    assert rows["pdcr"]["status"] == "at_most" and rows["pdcr"]["savings"] == pytest.approx(16.0)
    assert rows["worse"]["status"] == "never" and rows["worse"]["savings"] == 0.0 and rows["worse"]["p_two_fold"] == 1.0


def _slow_needed(rows, methods, budgets, n_labels, images, seeds):
    """Means over the chosen (image, seed) multiset with plain loops, then the crossing."""
    means = {}
    for m in methods:
        for b in budgets:
            vals = [r["dice_mean"] for i in images for s in seeds for r in rows
                    if r["method"] == m and r["budget"] == b and r["id"] == f"img{i}" and r["seed"] == s]
            means[(m, b)] = sum(vals) / len(vals)
    target = means[("random", budgets[-1])]
    return {m: labels_to_reach([(n, means[(m, b)]) for b, n in zip(budgets, n_labels)], target)[0] for m in methods}


def test_label_savings_bootstrap_matches_a_slow_reference():
    rng = np.random.default_rng(3)
    budgets, n_labels, seeds = ["10", "40", "all"], [10, 40, 160], (0, 1, 2)
    cells = {("random", "10"): 0.7, ("random", "40"): 0.8, ("random", "all"): 0.9,
             ("ld", "10"): 0.8, ("ld", "40"): 0.88, ("ld", "all"): 0.93}
    noise = {k: rng.normal(0, 0.05, (5, 3)) for k in cells}
    rows = _rows(cells, images=5, seeds=seeds, noise=noise)
    samples = 50
    got = {r["method"]: r for r in label_savings(rows, ["random", "ld"], budgets, n_labels, samples=samples, seed=7)}
    # replay the same draws: images first, then seeds, per resample
    draw = np.random.default_rng(7)
    boot = []
    for _ in range(samples):
        imgs, sds = draw.integers(0, 5, 5), draw.integers(0, 3, 3)
        boot.append(_slow_needed(rows, ["random", "ld"], budgets, n_labels, imgs, [seeds[j] for j in sds]))
    lo, hi = np.quantile([b["ld"] for b in boot], [0.025, 0.975], method="inverted_cdf")
    assert got["ld"]["needed_low"] == pytest.approx(lo) and got["ld"]["needed_high"] == pytest.approx(hi)
    assert lo < got["ld"]["needed"] < hi
    assert got["ld"]["needed"] == pytest.approx(_slow_needed(rows, ["random", "ld"], budgets, n_labels, range(5), seeds)["ld"])
    assert got["ld"]["p_two_fold"] == pytest.approx(np.mean([160 / b["ld"] < 2 for b in boot]))


def test_label_savings_needs_the_reference_and_complete_cells():
    with pytest.raises(ValueError, match="reference"):
        label_savings([], ["ld"], ["10"], [10])
    cells = {("random", "10"): 0.7, ("random", "all"): 0.9, ("ld", "10"): 0.8, ("ld", "all"): 0.95}
    rows = [r for r in _rows(cells) if not (r["method"] == "random" and r["budget"] == "all" and r["seed"] != 0)]
    # a resample without seed 0 would have no target: refused, not a silently NaN CI
    with pytest.raises(ValueError, match=r"not scored on every \(test image, seed\) pair: random @ all \(6 of 18\)"):
        label_savings(rows, ["random", "ld"], ["10", "all"], [10, 40])
