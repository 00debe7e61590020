"""Cluster -> structure matching: permuted labels score Dice 1, global (not per-image) mapping."""

from __future__ import annotations

import numpy as np
import pytest

from localdisc.evaluation.hungarian import ClusterMatcher, cluster_overlap, dice_from_counts, match_clusters, one_hot_structures


def test_permuted_clusters_give_dice_one(rng):
    perm = np.array([5, 2, 7, 0, 1, 3, 4, 6])
    m = ClusterMatcher(num_clusters=8, names=["a", "b", "c"])
    for _ in range(3):
        truth = rng.integers(0, 4, size=(12, 10))  # 0 background, 1..3 structures
        clusters = perm[truth]
        m.update(clusters, one_hot_structures(truth, [1, 2, 3]))
    out = m.compute()
    assert out["mapping"] == {"a": 2, "b": 7, "c": 0}
    assert out["mean_dice"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in out["dice_pooled"].values())


def test_dice_matrix_against_loop(rng):
    clusters = rng.integers(0, 4, size=(9, 7))
    structures = rng.random((2, 9, 7)) > 0.5
    valid = rng.random((9, 7)) > 0.2
    inter, ak, ac = cluster_overlap(clusters, structures, 4, valid)
    d = dice_from_counts(inter, ak, ac)
    for k in range(4):
        for c in range(2):
            p = (clusters == k) & valid
            t = structures[c] & valid
            assert d[k, c] == pytest.approx(2 * (p & t).sum() / (p.sum() + t.sum()))


def test_overlapping_structures_and_global_mapping():
    # structure "lung" overlaps "heart"; image 2 has cluster labels swapped, so a global mapping
    # cannot be perfect on both images (a per-image matching would hide that).
    truth = np.zeros((2, 4, 4), bool)
    truth[0, :, :2] = True
    truth[1, :, 1:3] = True
    c1 = np.zeros((4, 4), int)
    c1[:, :2] = 1
    c1[:, 2:] = 2
    m = ClusterMatcher(3, ["lung", "heart"])
    m.update(c1, truth)
    m.update(c1, truth)
    m.update(np.where(c1 == 1, 2, np.where(c1 == 2, 1, 0)), truth)
    out = m.compute()
    assert out["mapping"]["lung"] == 1
    per = np.array(out["per_image"])
    assert per[0, 0] == pytest.approx(1.0) and per[2, 0] == pytest.approx(0.0)


def test_bad_inputs():
    with pytest.raises(ValueError):
        match_clusters(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        cluster_overlap(np.full((2, 2), 5), np.zeros((1, 2, 2), bool), 3)
    with pytest.raises(ValueError):
        ClusterMatcher(3, ["a"]).compute()


def test_a_mapping_chosen_elsewhere_is_applied_not_rematched():
    from localdisc.evaluation.hungarian import ClusterMatcher

    clusters = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    structures = np.stack([clusters == 1, clusters == 0]).astype(np.uint8)  # "a" is cluster 1, "b" is cluster 0
    m = ClusterMatcher(3, ["a", "b"])
    m.update(clusters, structures)
    assert m.compute()["mapping"] == {"a": 1, "b": 0} and m.compute()["mean_dice"] == 1.0
    swapped = m.compute(mapping={"a": 0, "b": 1})  # e.g. matched on training images that disagree
    assert swapped["mapping"] == {"a": 0, "b": 1} and swapped["mean_dice"] == 0.0
    with pytest.raises(ValueError, match="no cluster for"):
        m.compute(mapping={"a": 0})
