"""Classical baselines (tasks/baselines.py): each does what its name promises on a synthetic picture."""

from __future__ import annotations

import numpy as np

from localdisc.tasks.baselines import copy_landmarks, dark_detail, ncc_landmarks, otsu_dark, otsu_threshold, vessel_baselines, vesselness, whole_image


def _bimodal(seed=0):
    """(64, 64): a dark left half (0.2) and a bright right half (0.7), with noise."""
    rng = np.random.default_rng(seed)
    img = np.full((64, 64), 0.7) + rng.normal(0, 0.03, (64, 64))
    img[:, :32] -= 0.5
    return img


def _tube_and_blob():
    """(64, 64) bright background with a dark horizontal tube (3 px) and a dark round blob (r 8)."""
    img = np.full((64, 64), 0.8)
    img[15:18, 4:60] = 0.2
    yy, xx = np.mgrid[:64, :64]
    img[(yy - 45) ** 2 + (xx - 32) ** 2 <= 64] = 0.2
    return img


def test_otsu_splits_a_bimodal_image_between_its_modes():
    img = _bimodal()
    t = otsu_threshold(img)
    assert 0.2 < t < 0.7
    dark = otsu_dark(img)
    assert dark[:, :32].all() and not dark[:, 32:].any()


def test_otsu_dark_uses_only_the_field_of_view_and_marks_nothing_outside():
    img = _bimodal()
    fov = np.zeros_like(img, bool)
    fov[:, 24:] = True  # mostly bright: the threshold still falls between the modes seen inside
    dark = otsu_dark(img, fov)
    assert dark[:, 24:32].all() and not dark[:, :24].any() and not dark[:, 32:].any()


def test_dark_detail_picks_thin_dark_lines_off_a_smooth_background():
    g = np.tile(np.linspace(0.3, 0.9, 64), (64, 1))  # a smooth ramp: no detail
    g[30:32, :] -= 0.25
    d = dark_detail(g)
    assert d.min() >= 0
    assert d[30:32, 8:56].mean() > 0.15 and d[:20, 8:56].mean() < 0.02


def test_frangi_responds_to_a_tube_more_than_to_a_blob():
    v = vesselness(_tube_and_blob())
    tube, blob = v[15:18, 10:54].mean(), v[40:51, 27:38].mean()
    assert tube > 5 * blob and tube > 0
    fov = np.zeros((64, 64), bool)
    fov[:32] = True
    assert (vesselness(_tube_and_blob(), fov)[32:] == 0).all()


def test_vessel_baselines_find_dark_lines_on_the_green_channel_inside_the_fov():
    green = np.full((64, 64), 0.8)
    green[15:18, 4:60] = 0.2  # the tube alone
    rgb = np.stack([np.full((64, 64), 0.9), green, np.full((64, 64), 0.9)])
    fov = np.ones((64, 64), bool)
    fov[:, 48:] = False
    out = vessel_baselines(rgb, fov)
    truth, near = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    truth[15:18, 4:60], near[11:21, :] = True, True  # near: the tube and a few pixels around it
    for name in ("otsu", "frangi"):
        binary, score = out[name]
        assert binary.shape == score.shape == (64, 64) and not binary[:, 48:].any()
        hit = (binary & truth & fov).sum() / (truth & fov).sum()
        assert hit > 0.6 and not (binary & ~near).any(), name
    red_only = rgb.copy()
    red_only[1] = 0.9  # the tube on the red channel alone is not seen: the baselines read green
    assert not vessel_baselines(red_only, fov)["frangi"][0].any()


def test_whole_image_is_all_structure():
    assert whole_image((3, 4)).all() and whole_image((3, 4)).shape == (3, 4)


def test_copy_keeps_the_relative_position_and_ncc_finds_a_moved_patch():
    grid = (64, 64)
    assert np.allclose(copy_landmarks(np.array([[31.5, 15.5]]), (128, 256), grid), [[63.5, 63.5]])  # pixel centres scale
    rng = np.random.default_rng(0)
    support = rng.random(grid)
    query = np.roll(support, (5, -3), axis=(0, 1))
    found = ncc_landmarks(support, np.array([[30.0, 30.0], [20.0, 40.0]]), query, grid, half=6)
    assert np.allclose(found, [[35.0, 27.0], [25.0, 37.0]])
    assert np.allclose(ncc_landmarks(support, np.array([[30.0, 30.0]]), query, (128, 64), half=6), [[70.5, 27.0]])  # in the query's own pixels
