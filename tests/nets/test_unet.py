"""U-Net backbone: shapes in 2D/3D (odd sizes too), stable parameter names, input errors."""

from __future__ import annotations

import pytest
import torch

from localdisc.errors import ConfigError
from localdisc.nets import UNet, UNetConfig

SMALL = dict(encoder_channels=(4, 6, 8), decoder_channels=(6, 5))


@pytest.mark.parametrize("dims,spatial", [(2, (16, 24)), (2, (17, 23)), (2, (5, 3)), (3, (8, 8, 8)), (3, (7, 9, 5))])
def test_shapes(dims, spatial):
    net = UNet(UNetConfig(spatial_dims=dims, in_channels=2, **SMALL), out_channels=3).eval()
    x = torch.rand(2, 2, *spatial)
    feats = net.forward_features(x)
    sizes = [tuple(spatial)]
    for _ in range(2):
        sizes.append(tuple(-(-n // 2) for n in sizes[-1]))  # ceil-mode pooling
    assert [tuple(f.shape) for f in feats.encoder] == [(2, c, *s) for c, s in zip((4, 6, 8), sizes)]
    assert [tuple(f.shape) for f in feats.decoder] == [(2, 6, *sizes[1]), (2, 5, *sizes[0])]
    assert feats.trunk is feats.decoder[-1]
    assert net(x).shape == (2, 3, *spatial)
    assert UNet(net.config)(x).shape == (2, 5, *spatial)  # no head: the trunk


def test_parameter_names_are_stable():
    net = UNet(UNetConfig(uafs_stages=(3,)), out_channels=2)
    names = list(net.state_dict())
    for expected in ["encoder.0.0.weight", "encoder.4.4.running_var", "decoder.0.0.weight", "decoder.3.3.weight",
                     "decoder_gates.3.head.0.weight", "seg_head.weight", "seg_head.bias"]:
        assert expected in names
    assert not any(n.startswith("decoder_gates.0") for n in names)
    assert net.encoder_parameter_names() == [n for n in names if n.startswith("encoder.")]
    # default width: about 1.3-1.5 M parameters (docs/method.md)
    assert 1.0e6 < sum(p.numel() for p in UNet().parameters()) < 2.0e6
    # same names without gates: weights transfer by name
    plain = set(UNet(UNetConfig(), out_channels=2).state_dict())
    assert plain == {n for n in names if not n.startswith("decoder_gates.")}


def test_input_errors():
    net = UNet(UNetConfig(spatial_dims=2, in_channels=3, **SMALL))
    with pytest.raises(ValueError, match="3 input channel"):
        net(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="4-D input"):
        net(torch.rand(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="spatial_dims"):
        UNetConfig(spatial_dims=4)
    with pytest.raises(ConfigError, match="exactly one fewer"):  # a user's option: one line, not a ValueError
        UNetConfig(encoder_channels=(4, 8), decoder_channels=(4, 4))
    with pytest.raises(ValueError, match="uafs_stages"):
        UNetConfig(uafs_stages=(4,))
