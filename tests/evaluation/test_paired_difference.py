"""paired_difference: a method against a reference on the same test images (and seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from localdisc.evaluation.stats import cluster_bootstrap, paired_difference, paired_test


def test_a_constant_gain_gives_that_mean_a_tight_ci_and_a_small_p():
    rng = np.random.default_rng(0)
    b = rng.random(12)
    r = paired_difference(b + 0.1 + rng.normal(0, 0.01, 12), b)
    assert r["mean_diff"] == pytest.approx(0.1, abs=0.01) and r["ci_low"] > 0.08 and r["ci_high"] < 0.12
    assert r["test"] == "wilcoxon" and r["p_value"] < 0.01 and r["p_bootstrap"] < 0.05
    assert (r["n_images"], r["n_seeds"]) == (12, 1) and r["mean_a"] - r["mean_b"] == pytest.approx(r["mean_diff"])


def test_no_difference_cannot_be_told():
    rng = np.random.default_rng(1)
    a, b = rng.random(10), rng.random(10)
    r = paired_difference(a, b)
    assert r["ci_low"] < 0 < r["ci_high"] and r["p_value"] > 0.05


def test_images_by_seeds_resample_both_and_test_the_seed_averaged_images():
    rng = np.random.default_rng(2)
    a, b = rng.random((8, 3)), rng.random((8, 3))
    a[0, 1] = np.nan  # a missing cell drops out of the means, not its image
    r = paired_difference(a, b)
    d = a - b
    assert (r["n_images"], r["n_seeds"]) == (8, 3)
    assert r["mean_diff"] == pytest.approx(np.nanmean(d))
    assert (r["ci_low"], r["ci_high"], r["p_bootstrap"]) == pytest.approx(cluster_bootstrap(d))
    keep = np.isfinite(d)
    per_a = [np.mean(a[i][keep[i]]) for i in range(8)]
    per_b = [np.mean(b[i][keep[i]]) for i in range(8)]
    assert r["p_value"] == pytest.approx(paired_test(per_a, per_b).p_value)
    assert r["mean_b"] == pytest.approx(b[keep].mean())


def test_one_dimensional_scores_are_one_seed_and_shapes_must_match():
    a, b = np.arange(6.0), np.arange(6.0)[::-1]
    assert paired_difference(a, b) == paired_difference(a[:, None], b[:, None])
    with pytest.raises(ValueError, match="differ in shape"):
        paired_difference(np.zeros((4, 2)), np.zeros((4, 3)))
    assert math.isnan(paired_difference([np.nan], [1.0])["mean_diff"])
