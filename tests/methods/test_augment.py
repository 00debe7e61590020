"""Batched augmentations: exact dihedral ops and inverses, affine geometry, jitter, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from localdisc.methods import augment as A


@pytest.mark.parametrize("size", [(6, 6), (4, 6), (4, 4, 4), (3, 4, 4), (2, 3, 4)])
def test_dihedral_inverse_is_exact(size):
    x = torch.randn(12, 2, *size)
    ops = A.sample_dihedral(12, size)
    y = A.apply_dihedral(x, ops)
    assert y.shape == x.shape
    assert torch.equal(A.invert_dihedral(y, ops), x)
    if size == (6, 6):
        assert any(op.k % 2 == 1 for op in ops)  # odd turns happen where the shape allows


def test_dihedral_matches_numpy():
    x = torch.arange(2 * 3 * 3.0).view(1, 2, 3, 3)
    op = A.Dihedral(1, (0, 1), (1,))
    expect = np.rot90(np.flip(x[0].numpy(), 2), 1, (1, 2))
    assert np.array_equal(A.apply_dihedral(x, [op])[0].numpy(), expect)


def test_identity_affine_reproduces_the_image():
    torch.manual_seed(1)
    x = torch.rand(3, 2, 8, 10)
    theta = A.random_affine(3, 2, scale=(1.0, 1.0), ratio=(1.0, 1.0), rotate_degrees=0.0, flip=False)
    torch.testing.assert_close(theta, torch.eye(2, 3).expand(3, 2, 3))
    torch.testing.assert_close(A.warp(x, A.affine_grid(theta, (8, 10))), x)


@pytest.mark.parametrize("d", [2, 3])
def test_random_affine_samples_where_theta_says(d):
    theta = A.random_affine(4, d, scale=(0.3, 0.6), rotate_degrees=30)
    size = (5,) * d
    grid = A.affine_grid(theta, size)
    # output pixel centers o (normalized, x/y/z order) map to A o + t
    centers = [(2 * torch.arange(s) + 1) / s - 1 for s in size]
    mesh = torch.stack(torch.meshgrid(*centers, indexing="ij")[::-1], dim=-1)  # (*S, d) in x, y(, z)
    expect = torch.einsum("nij,...j->n...i", theta[:, :, :d], mesh) + theta[:, :, d].view(4, *([1] * d), d)
    torch.testing.assert_close(grid, expect)
    # the crop stays (mostly) inside: unrotated box fits, rotation adds at most sqrt(d) of a side
    assert grid.abs().max() <= 1.0 * d**0.5 + 1e-5


def test_photometric_zero_is_identity_and_jitter_is_per_sample():
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(A.photometric(x, 0, 0, 0, 0, 0), x)
    y = A.photometric(x.expand(4, 1, 8, 8).clone() * 0 + x[:1], 0.3, 0.3, 0.3, 0.0)
    assert not torch.allclose(y[0], y[1])  # different samples, different jitter
    assert y.shape == x.shape and y.dtype == x.dtype


def test_colour_jitter_against_per_pixel_reference():
    torch.manual_seed(3)
    x = torch.rand(3, 3, 4, 5, dtype=torch.float64) * 0.6 + 0.2
    # hue alone: a YIQ rotation keeps luma and chroma magnitude, and shifts colorsys's hue
    torch.manual_seed(0)
    y = A.colour(x, hue=0.02)
    torch.manual_seed(0)
    shift = (torch.rand(3) * 0.04 - 0.02).double() * 2 * math.pi

    def yiq(t):  # FCC NTSC YIQ, written out per pixel
        r, g, b = t.tolist()
        return (0.299 * r + 0.587 * g + 0.114 * b, 0.596 * r - 0.274 * g - 0.322 * b, 0.211 * r - 0.523 * g + 0.312 * b)

    for n in range(3):
        for p in [(0, 0), (2, 3), (3, 4)]:
            a, b = yiq(x[n, :, p[0], p[1]]), yiq(y[n, :, p[0], p[1]])
            assert b[0] == pytest.approx(a[0], abs=1e-6)
            assert math.hypot(b[1], b[2]) == pytest.approx(math.hypot(a[1], a[2]), abs=1e-6)
            turn = math.atan2(b[2], b[1]) - math.atan2(a[2], a[1])
            assert math.remainder(turn - float(shift[n]), 2 * math.pi) == pytest.approx(0.0, abs=1e-6)
    # saturation 0 -> factor U(1, 1) = identity; grayscale always -> three equal luma channels
    torch.testing.assert_close(A.colour(x, saturation=1e-12), x)
    g = A.colour(x, grayscale_prob=1.0)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(g[:, c], luma)
    # one-channel images have no colour: unchanged, no randomness drawn
    gray = torch.rand(2, 1, 4, 4)
    state = torch.get_rng_state()
    assert torch.equal(A.colour(gray, 0.4, 0.02, 0.5), gray) and torch.equal(torch.get_rng_state(), state)


def test_blur_keeps_constants_and_smooths():
    x = torch.full((2, 1, 6, 6, 6), 0.5)
    torch.testing.assert_close(A._gaussian_blur(x, 1.0), x)
    spike = torch.zeros(1, 1, 9, 9)
    spike[0, 0, 4, 4] = 1
    out = A._gaussian_blur(spike, 1.0)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5) and out.max() < 0.5


def test_seeded_by_global_rng():
    x = torch.rand(2, 1, 8, 8)

    def once():
        torch.manual_seed(7)
        th = A.random_affine(2, 2)
        return A.photometric(A.warp(x, A.affine_grid(th, (6, 6))), 0.2, 0.2, 0.2, 0.05), A.sample_dihedral(2, (6, 6))

    (a, oa), (b, ob) = once(), once()
    assert torch.equal(a, b) and oa == ob


def test_flip_only_geometry_is_exact_permutation():
    # no crop, no rotation, flips on: sampling at pixel centers is an exact mirror
    torch.manual_seed(3)
    x = torch.rand(8, 1, 5, 7)
    theta = A.random_affine(8, 2, scale=(1, 1), ratio=(1, 1), rotate_degrees=0)
    y = A.warp(x, A.affine_grid(theta, (5, 7)))
    for i in range(8):
        dims = [2 - j for j in range(2) if theta[i, j, j] < 0]  # x flips W (dim 2), y flips H (dim 1)
        torch.testing.assert_close(y[i], torch.flip(x[i], dims) if dims else x[i])
    assert F.mse_loss(y, x) > 0  # some sample was flipped
