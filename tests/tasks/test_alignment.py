"""Coarse-to-fine landmarks: anchor matching vs a brute-force loop, the robust affine fit under
wrong matches, and a zoomed query where only the aligned search finds the landmark."""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from test_landmarks import _random_conv_embed, _texture

from localdisc.tasks.alignment import anchor_grid, apply_affine, fit_affine, match_points
from localdisc.tasks.landmarks import OneShotLocator


def test_anchor_grid_tiles_the_image_with_cell_centres():
    a = anchor_grid((16, 8), 8)
    assert a.tolist() == [[3.5, 3.5], [11.5, 3.5]]
    assert anchor_grid((8, 8, 8), 4).shape == (8, 3)


def test_match_points_equals_a_brute_force_search_in_each_ball():
    g = torch.Generator().manual_seed(0)
    pooled = F.normalize(torch.randn(5, 9, 11, generator=g), dim=0)
    points = torch.tensor([[2.0, 3.0], [7.0, 1.0], [4.0, 9.0]])
    desc = F.normalize(torch.randn(3, 5, generator=g), dim=1)
    for radius in (0.0, 2.5):
        dst, peak = match_points(desc, pooled, points, radius, chunk=2)
        for i in range(3):
            best, arg = -np.inf, None
            for r, c in itertools.product(range(9), range(11)):
                if radius and (r - points[i, 0]) ** 2 + (c - points[i, 1]) ** 2 > radius**2:
                    continue
                s = float(desc[i] @ pooled[:, r, c])
                if s > best:
                    best, arg = s, (r, c)
            assert tuple(dst[i].int().tolist()) == arg
            assert abs(float(peak[i]) - best) < 1e-6


def test_fit_affine_recovers_the_map_despite_wrong_matches():
    g = torch.Generator().manual_seed(1)
    src = torch.rand(200, 2, generator=g) * 100
    M = torch.tensor([[1.1, 0.05], [-0.08, 0.95], [4.0, -6.0]])  # [s, 1] @ M
    dst = apply_affine(M, src) + 0.1 * torch.randn(200, 2, generator=g)
    wrong = torch.randperm(200, generator=g)[:60]  # 30% of the matches land anywhere
    dst[wrong] = torch.rand(60, 2, generator=g) * 100
    fitted = fit_affine(src, dst, torch.ones(200))
    torch.testing.assert_close(fitted, M, atol=0.05, rtol=0.01)
    plain = torch.linalg.lstsq(torch.cat([src, torch.ones(200, 1)], 1), dst).solution
    assert (plain - M).abs().max() > 0.1  # what the outliers do to least squares


def test_fit_affine_falls_back_to_the_identity_without_enough_anchors():
    src = torch.rand(5, 2)
    fitted = fit_affine(src, src + 3, torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(apply_affine(fitted, src), src)


def test_aligned_search_finds_a_landmark_that_zoom_moved_out_of_the_plain_window():
    """Support = big[8:48, 8:48]; query = big[14:48, 4:38] resized 34 -> 40 px (zoom 1.18 and a
    shift). The landmark at support (30, 10) sits at query (28.3, 16.6), 7 px away: a 2 px window
    around the support position misses it, the same window around the affine-mapped position
    does not."""
    big = _texture((56, 56), seed=4)
    support = big[:, 8:48, 8:48]
    query = F.interpolate(big[None, :, 14:48, 4:38], size=(40, 40), mode="bilinear", align_corners=False)[0]
    point = np.array([[30.0, 10.0]])
    truth = (point + 8 - np.array([14.0, 4.0]) + 0.5) * 40 / 34 - 0.5
    plain = OneShotLocator(_random_conv_embed(), (40, 40), sigmas=[1.0], search_radius=0.05).fit(support, point)
    aligned = OneShotLocator(_random_conv_embed(), (40, 40), sigmas=[1.0], search_radius=0.05, align="affine", anchor_stride=4).fit(support, point)
    assert np.linalg.norm(plain.predict([query])[0].points - truth) > 4
    assert np.linalg.norm(aligned.predict([query])[0].points - truth) < 1.5
    mapped = aligned.similarity(query, with_centers=True)[1]  # the coarse match alone is close too
    assert np.linalg.norm(mapped.numpy() - truth) < 2.0
