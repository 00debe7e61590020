"""LD views: exact pixel correspondence between views a and b, mixup, pairing."""

from __future__ import annotations

import pytest
import torch

from localdisc.errors import TrainingError
from localdisc.methods.ld import LDConfig, align, make_views


def coordinate_images(n: int, size: tuple[int, ...]) -> torch.Tensor:
    """(n, d, *size): channel j holds each pixel's own coordinate along spatial axis j (+ image id)."""
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in size], indexing="ij")
    base = torch.stack(grids)
    return torch.stack([base + 100 * i for i in range(n)])


def cfg(**kw) -> LDConfig:
    quiet = dict(stage="2", brightness=0.0, contrast=0.0, gamma=0.0, noise=0.0, blur_prob=0.0, saturation=0.0, hue=0.0, grayscale_prob=0.0)
    return LDConfig(**{**quiet, **kw})


@pytest.mark.parametrize("shift", [0.0, 0.5])
@pytest.mark.parametrize("size,crop", [((12, 12), (8, 8)), ((10, 14), ()), ((8, 8, 8), (6, 6, 6))])
def test_view_b_aligns_exactly_with_view_a(size, crop, shift):
    torch.manual_seed(0)
    x = coordinate_images(6, size)
    views = make_views(x, cfg(crop_size=crop, rotate_degrees=20, shift=shift))
    assert (views.shifts is not None) == (shift > 0)
    if shift:
        assert views.shifts.shape == (6, len(size)) and views.shifts.abs().max() > 0
    B, inp = views.B, views.inputs
    out = tuple(crop) or size
    assert B == 3 and inp.shape == (15, len(size), *out)
    assert any(op.k or op.flip_dims for op in views.ops)  # b really was rotated/flipped
    assert not torch.equal(inp[: 2 * B], inp[2 * B : 4 * B])
    aligned = align(inp, views)  # as the method does on the output maps
    assert torch.equal(aligned[: 2 * B], aligned[2 * B : 4 * B])  # pixel p of a == pixel p of b
    assert torch.equal(aligned[4 * B :], inp[4 * B :])
    # x1 comes from the first half of the batch, x2 from the second (different images)
    ids = (inp[: 2 * B, 0] / 100).round().flatten(1).median(1).values
    assert ids.tolist() == [0, 1, 2, 3, 4, 5]


def test_aligned_maps_follow_the_pixels_under_a_pixelwise_network():
    torch.manual_seed(1)
    x = torch.rand(4, 1, 8, 8)
    views = make_views(x, LDConfig(stage="2"))  # with photometric jitter on
    net = lambda t: torch.cat([t, t**2], 1)  # any pixelwise map commutes with rot90/flip  # noqa: E731
    aligned = align(net(views.inputs), views)
    B = views.B
    # a and b differ by jitter only: their (aligned) maps are close, unaligned ones are not
    err_aligned = (aligned[:B * 2] - aligned[2 * B : 4 * B]).abs().mean()
    from localdisc.methods.augment import invert_dihedral

    b_plain = net(views.inputs)[2 * B : 4 * B]
    assert torch.equal(aligned[2 * B : 4 * B], invert_dihedral(b_plain, views.ops))
    assert err_aligned < 0.2


def test_mixup_is_lambda_blend_of_the_a_views():
    torch.manual_seed(2)
    views = make_views(torch.rand(4, 3, 8, 8), LDConfig(stage="2", lam_range=(0.2, 0.8)))
    B, inp, lam = views.B, views.inputs, views.lam
    assert ((lam >= 0.2) & (lam <= 0.8)).all()
    expect = lam.view(B, 1, 1, 1) * inp[:B] + (1 - lam.view(B, 1, 1, 1)) * inp[B : 2 * B]
    torch.testing.assert_close(inp[4 * B :], expect)


def test_a_and_b_get_different_jitter():
    torch.manual_seed(3)
    views = make_views(torch.rand(2, 1, 8, 8), LDConfig(stage="2", dihedral=False))
    assert not torch.allclose(views.inputs[0], views.inputs[2])


@pytest.mark.parametrize("n", [1, 3])
def test_odd_batch_is_refused(n):
    with pytest.raises(TrainingError, match="even batch"):
        make_views(torch.rand(n, 1, 8, 8), cfg())


def test_crop_size_dims_must_match():
    with pytest.raises(TrainingError, match="crop_size"):
        make_views(torch.rand(2, 1, 8, 8), cfg(crop_size=(4, 4, 4)))


def test_shift_moves_the_content_of_view_b_so_place_in_the_view_no_longer_identifies_a_patch():
    """Without a shift, the pixel at place p of view b (once its rot90/flip is undone) sits at
    place p of view a too; with it, the same content appears at place p + shift (cyclically)."""
    torch.manual_seed(3)
    x = coordinate_images(4, (16, 16))
    views = make_views(x, cfg(dihedral=False, flip=False, rotate_degrees=0.0, crop_scale=(1.0, 1.0), shift=0.5))
    B, inp = views.B, views.inputs
    for i in range(2 * B):
        dy, dx = (int(v) for v in views.shifts[i])
        assert torch.equal(inp[2 * B + i], torch.roll(inp[i], (dy, dx), (1, 2)))
    assert limits_respected(views.shifts, (16, 16), 0.5)


def limits_respected(shifts: torch.Tensor, size, fraction: float) -> bool:
    return all(int(shifts[:, j].abs().max()) <= round(fraction * s) for j, s in enumerate(size))


@pytest.mark.parametrize("shift", [-0.1, 1.5])
def test_shift_outside_0_1_is_refused(shift):
    from localdisc.errors import ConfigError

    with pytest.raises(ConfigError, match="shift"):
        LDConfig(shift=shift)
