"""Models-Genesis baseline: distortions (shape, range, seeding, each op's behaviour), one step in 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from localdisc.methods import get_method
from localdisc.methods.genesis import Genesis, GenesisConfig, bezier_intensity, box_mask, distort, local_pixel_shuffle, paint
from localdisc.nets import UNet, UNetConfig


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(3, 1, 20, 24), (2, 2, 10, 12, 9)])
def test_distort_keeps_shape_range_and_is_seeded(shape):
    x = torch.rand(shape)
    a, b, c = distort(x, generator=gen(1)), distort(x, generator=gen(1)), distort(x, generator=gen(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)


@pytest.mark.parametrize("shape", [(2, 3, 13, 16), (2, 1, 9, 8, 10)])
def test_local_shuffle_permutes_within_windows(shape):
    x = torch.rand(shape)
    y = local_pixel_shuffle(x, window=4, fraction=1.0, generator=gen(0))
    assert not torch.equal(x, y)
    # a permutation of each image's pixels, the same one in every channel
    torch.testing.assert_close(y.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)
    perm_c0 = (y[:, :1] - x[:, :1]).abs() > 0
    assert torch.equal(perm_c0.expand_as(y), (y - x).abs() > 0) or shape[1] == 1
    # locality: a pixel moves by less than the window size along every axis
    n, c, *S = shape
    idx = torch.arange(int(torch.tensor(S).prod()), dtype=torch.float64).view(1, 1, *S).expand(n, 1, *S)
    moved = local_pixel_shuffle(idx.clone(), window=4, fraction=1.0, generator=gen(0))
    coords = torch.stack(torch.meshgrid(*[torch.arange(s) for s in S], indexing="ij"))
    src = torch.stack(torch.unravel_index(moved.long().flatten(2), tuple(S))).view(len(S), n, 1, *S)
    assert (src - coords[:, None, None]).abs().max() < 4
    assert torch.equal(local_pixel_shuffle(x, 4, 0.0, gen(0)), x)


def test_bezier_is_monotone_and_maps_into_unit_range():
    ramp = torch.linspace(0, 1, 101).view(1, 1, 101).repeat(16, 1, 1)
    up = bezier_intensity(ramp, invert_prob=0.0, generator=gen(3))
    assert (up.diff(dim=-1) >= -1e-6).all() and up.min() >= 0 and up.max() <= 1
    torch.testing.assert_close(up[..., 0], torch.zeros(16, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(up[..., -1], torch.ones(16, 1), atol=1e-5, rtol=0)
    down = bezier_intensity(ramp, invert_prob=1.0, generator=gen(3))
    assert (down.diff(dim=-1) <= 1e-6).all()


@pytest.mark.parametrize("size", [(20, 30), (12, 10, 14)])
def test_box_mask_sizes(size):
    m = box_mask(64, size, max_boxes=1, side=(0.25, 0.5), generator=gen(0))
    assert m.shape == (64, *size) and m.any(dim=tuple(range(1, len(size) + 1))).all()
    frac = m.flatten(1).float().mean(1)
    lo, hi = 0.25 ** len(size), 0.5 ** len(size)
    assert (frac >= lo * 0.5).all() and (frac <= hi * 1.5).all()


def test_inpainting_changes_only_inside_boxes_outpainting_keeps_boxes():
    x = torch.full((8, 1, 24, 24), 0.5)
    inp = paint(x, inpaint_rate=1.0, generator=gen(0))
    out = paint(x, inpaint_rate=0.0, generator=gen(0))
    changed_in = (inp != 0.5).flatten(1).float().mean(1)
    kept_out = (out == 0.5).flatten(1).float().mean(1)
    assert (changed_in > 0).all() and (changed_in < 0.6).all()  # 1-5 boxes of side 1/6..1/3
    assert (kept_out > 0.15).all() and (kept_out < 0.95).all()  # 1-4 boxes of side 3/7..4/7


def test_registered():
    assert get_method("genesis") is Genesis


@pytest.mark.parametrize("d", [2, 3])
def test_one_training_step_and_picture(d, tmp_path):
    net = UNet(UNetConfig(spatial_dims=d, in_channels=2, encoder_channels=(4, 8, 16), decoder_channels=(8, 4)))
    model = Genesis(net, GenesisConfig())
    x = torch.rand(2, 2, *([16] * d))
    loss, logs = model.training_step(x)
    assert torch.isfinite(loss) and logs["mse"] > 0
    loss.backward()
    assert net.encoder[0][0].weight.grad.abs().sum() > 0 and net.decoder[-1][0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        model.save_pictures(x, tmp_path)
    assert (tmp_path / "genesis_restoration.png").is_file()
