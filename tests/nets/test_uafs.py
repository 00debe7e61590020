"""UAFS: f' = f + f * (1 - H) = f * (2 - H) with H the normalized entropy of a 2-way head."""

from __future__ import annotations

import math

import pytest
import torch

from localdisc.nets import UNet, UNetConfig
from localdisc.nets.uafs import UAFS


def _reference_entropy(block: UAFS, f: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(block.head(f).double(), dim=1)
    return -(p * p.log()).sum(1, keepdim=True) / math.log(2)


@pytest.mark.parametrize("dims,shape", [(2, (2, 6, 9, 7)), (3, (1, 4, 5, 6, 3))])
def test_output_is_f_times_two_minus_entropy(dims, shape):
    block = UAFS(dims, shape[1]).double().eval()
    f = torch.randn(*shape, dtype=torch.float64)
    out = block(f)
    assert out.shape == f.shape
    h = _reference_entropy(block, f)
    assert ((h >= 0) & (h <= 1)).all() and h.std() > 0
    torch.testing.assert_close(out, f * (2 - h))
    torch.testing.assert_close(block.last_entropy, h)


def test_certain_head_doubles_features_uncertain_head_keeps_them():
    block = UAFS(2, 4).eval()
    f = torch.randn(1, 4, 5, 5)
    last = block.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([30.0, -30.0]))  # certain: H ~ 0 -> f' = 2f
    torch.testing.assert_close(block(f), 2 * f, atol=1e-5, rtol=0)
    with torch.no_grad():
        last.bias.zero_()  # equal logits: H = 1 -> f' = f
    torch.testing.assert_close(block(f), f)


def test_learns_through_the_segmentation_loss():
    net = UNet(UNetConfig(spatial_dims=2, encoder_channels=(4, 4, 4), decoder_channels=(4, 4), uafs_stages=(0, 1)), out_channels=2)
    assert sorted(net.decoder_gates.keys()) == ["0", "1"]
    assert any(n.startswith("decoder_gates.1.head.") for n in net.state_dict())
    logits = net(torch.rand(2, 1, 12, 10))
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 2, (2, 12, 10))).backward()
    for gate in net.decoder_gates.values():
        assert gate.head[0].weight.grad.abs().sum() > 0 and gate.head[-1].weight.grad.abs().sum() > 0
