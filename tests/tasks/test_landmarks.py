"""One-shot landmarks: pooling vs slow loops, sub-pixel peaks, shifted-image localization, metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from localdisc.tasks.landmarks import (
    OneShotLocator,
    center_pool,
    gaussian_smooth,
    normalized_cross_correlation_locate,
    radial_errors,
    refine_peaks,
    sample_at,
    summarize_errors,
    to_model_coords,
    to_orig_coords,
)


def _slow_smooth(v: np.ndarray, sigma: float, truncate: float = 3.0) -> np.ndarray:
    """sum_q w(q - p) v_q over all q within the truncation box, zero outside the image."""
    D, *S = v.shape
    r = int(np.ceil(truncate * sigma))
    w1 = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w1 /= w1.sum()
    out = np.zeros_like(v)
    for p in itertools.product(*[range(s) for s in S]):
        acc = np.zeros(D)
        for off in itertools.product(range(-r, r + 1), repeat=len(S)):
            q = tuple(pi + oi for pi, oi in zip(p, off))
            if all(0 <= qi < s for qi, s in zip(q, S)):
                acc += np.prod([w1[o + r] for o in off]) * v[(slice(None), *q)]
        out[(slice(None), *p)] = acc
    return out


@pytest.mark.parametrize("shape,sigma", [((7, 9), 1.0), ((5, 6, 4), 0.7)])
def test_gaussian_smooth_matches_loop(shape, sigma):
    v = torch.randn(1, 3, *shape, dtype=torch.float64)
    fast = gaussian_smooth(v, sigma)[0].numpy()
    np.testing.assert_allclose(fast, _slow_smooth(v[0].numpy(), sigma), rtol=1e-10, atol=1e-12)


def test_center_pool_multi_sigma_is_mean_cosine():
    v = F.normalize(torch.randn(1, 4, 8, 8, dtype=torch.float64), dim=1)
    pooled = center_pool(v, [1.0, 2.0])
    assert pooled.shape == (1, 8, 8, 8)
    torch.testing.assert_close(pooled.norm(dim=1), torch.ones(1, 8, 8, dtype=torch.float64))
    refs = [v[0].numpy()]
    per = []
    for s in (1.0, 2.0):
        sm = _slow_smooth(refs[0], s)
        per.append(sm / np.linalg.norm(sm, axis=0, keepdims=True))
    # dot of pooled vectors at two pixels = mean of the per-scale cosines
    a, b = (2, 3), (5, 6)
    want = np.mean([p[:, a[0], a[1]] @ p[:, b[0], b[1]] for p in per])
    got = float(pooled[0, :, a[0], a[1]] @ pooled[0, :, b[0], b[1]])
    assert got == pytest.approx(want, abs=1e-10)


def test_sample_at_integer_and_half_points():
    v = torch.randn(1, 3, 5, 7, dtype=torch.float64)
    pts = torch.tensor([[2.0, 3.0], [0.0, 6.0], [1.5, 4.0]], dtype=torch.float64)
    s = sample_at(v, pts)
    torch.testing.assert_close(s[0], v[0, :, 2, 3])
    torch.testing.assert_close(s[1], v[0, :, 0, 6])
    torch.testing.assert_close(s[2], 0.5 * (v[0, :, 1, 4] + v[0, :, 2, 4]))
    v3 = torch.randn(1, 2, 4, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(sample_at(v3, torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64))[0], v3[0, :, 1, 2, 3])


def test_refine_peaks_subpixel_and_margin():
    H, W = 20, 24
    rr, cc = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    true = (7.3, 15.6)
    sim = -((rr - true[0]) ** 2 + (cc - true[1]) ** 2) / 10.0  # exact paraboloid: refinement is exact
    second = 0.5 * torch.exp(-((rr - 2) ** 2 + (cc - 2) ** 2))
    sim = torch.stack([sim, torch.maximum(sim, second - 100)])
    pts, peak, margin = refine_peaks(sim, radius=3.0)
    np.testing.assert_allclose(pts[0].numpy(), true, atol=1e-9)
    assert peak[0] == pytest.approx(float(sim[0].max()))
    assert margin[0] > 0


def _texture(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, *shape, generator=g, dtype=torch.float64)
    return gaussian_smooth(x, 1.0)[0]  # (1, *shape), smooth but distinctive


def _random_conv_embed(in_ch=1, dim=8, nd=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, in_ch, *([3] * nd), generator=g, dtype=torch.float64)
    conv = F.conv2d if nd == 2 else F.conv3d

    def embed(x):
        return F.normalize(conv(x.double(), w, padding=1), dim=1)

    return embed


@pytest.mark.parametrize("nd", [2, 3])
def test_landmark_found_at_shifted_position(nd):
    big = _texture((56, 56) if nd == 2 else (28, 28, 28), seed=1)
    size = (40, 40) if nd == 2 else (18, 18, 18)
    shifts = [(0, 0), (5, -3), (-4, 7)] if nd == 2 else [(0, 0, 0), (3, -2, 4)]
    base = (8, 8) if nd == 2 else (5, 5, 5)

    def crop(shift):
        sl = tuple(slice(b + s, b + s + n) for b, s, n in zip(base, shift, size))
        return big[(slice(None), *sl)]

    support = crop((0,) * nd)
    points = np.array([[20.0, 15.0], [9.0, 30.0]]) if nd == 2 else np.array([[9.0, 8.0, 10.0]])
    loc = OneShotLocator(_random_conv_embed(nd=nd), size, sigmas=[1.0, 2.0]).fit(support, points)
    preds = loc.predict([crop(s) for s in shifts])
    for shift, pred in zip(shifts, preds):
        # content moved by -shift in the crop, so the landmark sits at points - shift; the integer
        # peak is exact, the parabola refinement moves it by less than half a pixel
        np.testing.assert_allclose(pred.points, points - np.array(shift), atol=0.5)
        assert np.all(pred.score > 0.99)


def test_search_radius_picks_the_near_look_alike():
    # The query is the support with a little noise, plus an EXACT copy of the landmark's
    # neighbourhood pasted 14 px to the right: unrestricted search prefers the exact copy; a
    # window of 0.2 * 40 = 8 px around the support position must return the original spot.
    patch = _texture((40, 40), seed=3)
    query = patch + 0.01 * torch.randn(patch.shape, generator=torch.Generator().manual_seed(0), dtype=patch.dtype)
    query[:, 12:28, 21:37] = patch[:, 12:28, 7:23]
    points = np.array([[20.0, 15.0]])
    free = OneShotLocator(_random_conv_embed(), (40, 40), sigmas=[1.0]).fit(patch, points)
    np.testing.assert_allclose(free.predict([query])[0].points, [[20.0, 29.0]], atol=0.5)
    near = OneShotLocator(_random_conv_embed(), (40, 40), sigmas=[1.0], search_radius=0.2).fit(patch, points)
    pred = near.predict([query])[0]
    np.testing.assert_allclose(pred.points, points, atol=1.0)
    assert np.isfinite(pred.score).all() and np.isfinite(pred.margin).all()
    with pytest.raises(ValueError, match="search_radius"):
        OneShotLocator(_random_conv_embed(), (40, 40), search_radius=-1)


def test_resized_query_maps_back_to_original_pixels():
    img = _texture((48, 48), seed=2)
    big = F.interpolate(img[None], size=(96, 96), mode="bilinear", align_corners=False)[0]
    points = np.array([[20.0, 27.0]])
    loc = OneShotLocator(_random_conv_embed(), (48, 48), sigmas=[2.0]).fit(img, points)
    pred = loc.predict([big])[0]
    np.testing.assert_allclose(pred.points, to_orig_coords(points, (96, 96), (48, 48)), atol=1.0)


def test_coordinate_mapping_roundtrip():
    p = np.array([[0.0, 10.5], [99.0, 3.0]])
    np.testing.assert_allclose(to_orig_coords(to_model_coords(p, (100, 80), (64, 64)), (100, 80), (64, 64)), p)
    # the centre of the first original pixel block maps to the centre of the first model pixel
    np.testing.assert_allclose(to_model_coords([[0.5]], [2], [1]), [[0.0]])


def test_metrics():
    pred = np.array([[0.0, 3.0], [1.0, 1.0], [10.0, 0.0]])
    truth = np.zeros((3, 2))
    e = radial_errors(pred, truth)
    np.testing.assert_allclose(e, [3.0, np.sqrt(2), 10.0])
    np.testing.assert_allclose(radial_errors(pred, truth, spacing=(2.0, 0.5)), [1.5, np.sqrt(4.25), 20.0])
    s = summarize_errors(e)
    assert s["mre"] == pytest.approx((3 + np.sqrt(2) + 10) / 3)
    assert s["sr@2px"] == pytest.approx(1 / 3) and s["sr@4px"] == pytest.approx(2 / 3) and s["sr@8px"] == pytest.approx(2 / 3)
    assert summarize_errors([])["n"] == 0


def test_ncc_baseline_finds_shift():
    img = _texture((50, 50), seed=3)[0].numpy()
    query = np.roll(img, (4, -6), axis=(0, 1))
    got = normalized_cross_correlation_locate(img, (25, 25), query, half=6)
    np.testing.assert_allclose(got, (29, 19))


def test_mask_landmarks():
    from localdisc.tasks.landmarks import mask_landmarks

    m = np.zeros((10, 12), bool)
    m[2:6, 3:7] = True
    m[6, 4] = True
    lm = mask_landmarks(m)
    assert lm["apex"] == (2.0, 4.5) and lm["lowest"] == (6.0, 4.0)
    np.testing.assert_allclose(lm["centroid"], np.argwhere(m).mean(0))
    assert mask_landmarks(np.zeros((3, 3))) == {}
