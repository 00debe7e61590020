"""Mask discriminator: shapes, LeakyReLU slope 0.2 (not the reference's 1.0), learns vessels vs noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from localdisc.nets.discriminator import MaskDiscriminator


@pytest.mark.parametrize("nd,size", [(2, (32, 32)), (3, (16, 16, 16))])
def test_output_shape(nd, size):
    d = MaskDiscriminator(nd, width=4, num_layers=3)
    out = d(torch.rand(2, 1, *size))
    assert out.shape == (2, 1, *[s // 8 for s in size])


def test_leaky_relu_slope_is_0_2():
    slopes = [m.negative_slope for m in MaskDiscriminator().modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes and all(s == 0.2 for s in slopes)


def _vessel_masks(n: int, size: int = 32) -> torch.Tensor:
    from localdisc.data.simulate import simulate

    return torch.stack([torch.from_numpy(m.astype(np.float32))[None] for m in simulate("vessels", n, (size, size), seed=0)])


def test_separates_vessels_from_noise():
    torch.manual_seed(0)
    real = (_vessel_masks(16) > 0.5).float()
    d = MaskDiscriminator(2, width=8, num_layers=3)
    opt = torch.optim.Adam(d.parameters(), lr=2e-3)
    for _ in range(30):
        fake = torch.rand(16, 1, 32, 32)
        lr_, lf = d(real), d(fake)
        loss = F.binary_cross_entropy_with_logits(lr_, torch.ones_like(lr_)) + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        p_real = torch.sigmoid(d(real)).mean()
        p_fake = torch.sigmoid(d(torch.rand(16, 1, 32, 32))).mean()
    assert p_real > 0.8 and p_fake < 0.2


def test_lr_scale_keeps_function_and_scales_adam_step():
    torch.manual_seed(1)
    a = MaskDiscriminator(2, width=4, num_layers=2)
    torch.manual_seed(1)
    b = MaskDiscriminator(2, width=4, num_layers=2, lr_scale=4.0)
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(a(x), b(x))
    w0a, w0b = (a.net[0].weight * a.net[0].lr_scale).detach(), (b.net[0].weight * b.net[0].lr_scale).detach()
    for m in (a, b):
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        m(x).mean().backward()
        opt.step()
    da = (a.net[0].weight.detach() * a.net[0].lr_scale - w0a).abs().max()
    db = (b.net[0].weight.detach() * b.net[0].lr_scale - w0b).abs().max()
    assert float(db / da) == pytest.approx(4.0, rel=1e-3)
