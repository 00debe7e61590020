import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from localdisc.evaluation.metrics import SegmentationMetrics, dice_per_class, hd95_per_class, iou_per_class, vessel_scores


def test_dice_iou_by_hand():
    t = np.zeros((6, 6), int)
    p = np.zeros((6, 6), int)
    t[0:2, 0:3] = 1  # 6 px
    p[0:2, 1:4] = 1  # 6 px, 4 overlap
    t[4:6, 4:6] = 2  # class 2 present in truth only
    np.testing.assert_allclose(dice_per_class(p, t, 4), [8 / 12, 0.0, 1.0])  # class 3: empty vs empty = 1
    np.testing.assert_allclose(iou_per_class(p, t, 4), [4 / 8, 0.0, 1.0])


def _edges(m):
    return m & ~ndimage.binary_erosion(m)


def _hd95_reference(p, t, spacing=(1.0, 1.0)):
    """Brute force: symmetric 95th percentile of edge-to-edge distances, float64."""
    pe = np.argwhere(_edges(p)) * np.asarray(spacing)
    te = np.argwhere(_edges(t)) * np.asarray(spacing)
    d = np.sqrt(((pe[:, None, :] - te[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


@pytest.mark.parametrize("spacing", [None, (2.0, 0.5)])
def test_hd95_matches_brute_force(rng, spacing):
    for _ in range(3):
        p = ndimage.gaussian_filter(rng.random((24, 30)), 2) > 0.5
        t = ndimage.gaussian_filter(rng.random((24, 30)), 2) > 0.5
        p[5:15, 5:15] = True  # never empty
        t[8:18, 6:20] = True
        got = hd95_per_class(p.astype(int), t.astype(int), 2, spacing)[0]
        assert got == pytest.approx(_hd95_reference(p, t, spacing or (1.0, 1.0)), rel=1e-5)


def test_hd95_nan_when_empty():
    t = np.zeros((8, 8), int)
    t[2:4, 2:4] = 1
    assert math.isnan(hd95_per_class(np.zeros_like(t), t, 2)[0])
    assert math.isnan(hd95_per_class(t, np.zeros_like(t), 2)[0])


def test_vessel_scores_only_inside_fov(rng):
    prob = rng.random((10, 10))
    t = rng.random((10, 10)) > 0.6
    fov = np.zeros((10, 10), bool)
    fov[2:9, 1:8] = True
    prob_out = prob.copy()
    prob_out[~fov] = 1 - prob_out[~fov]  # changing pixels outside the FOV must not matter
    auc, acc = vessel_scores(prob, t, fov)
    auc2, acc2 = vessel_scores(prob_out, t, fov)
    assert auc == auc2 and acc == acc2
    assert auc == pytest.approx(roc_auc_score(t[fov], prob[fov]))
    assert acc == pytest.approx(((prob[fov] >= 0.5) == t[fov]).mean())


def test_accumulator_summary_skips_nan():
    m = SegmentationMetrics(2, ["background", "lesion"])
    t = np.zeros((8, 8), int)
    t[2:6, 2:6] = 1
    m.update(t, t, id="a")  # perfect
    m.update(np.zeros_like(t), t, id="b")  # missed: Dice 0, HD95 undefined
    s = m.summary()
    assert s["dice_lesion"]["mean"] == pytest.approx(0.5) and s["dice_lesion"]["std"] == pytest.approx(0.5)
    assert s["hd95_lesion"]["n"] == 1 and s["hd95_lesion"]["mean"] == 0.0
    assert [r["id"] for r in m.rows()] == ["a", "b"]
    with pytest.raises(ValueError):
        m.update(t[:4], t)


def test_accumulator_vessel_batch(rng):
    m = SegmentationMetrics(2, vessel=True)
    probs = rng.random((2, 2, 6, 6))
    probs /= probs.sum(1, keepdims=True)
    targets = (rng.random((2, 6, 6)) > 0.5).astype(int)
    m.update_batch(probs.argmax(1), targets, probs, np.ones((2, 6, 6), bool), ids=["x", "y"])
    row = m.rows()[0]
    assert row["auc"] == pytest.approx(roc_auc_score(targets[0].ravel(), probs[0, 1].ravel()))
    assert "accuracy" in m.summary()
