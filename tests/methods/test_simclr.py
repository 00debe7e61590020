"""SimCLR baseline: views, encoder-only forward, one training step in 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from localdisc.methods import get_method
from localdisc.methods.simclr import SimCLR, SimCLRConfig, encode, two_views
from localdisc.nets import UNet, UNetConfig


def tiny_unet(d: int, c: int = 1) -> UNet:
    return UNet(UNetConfig(spatial_dims=d, in_channels=c, encoder_channels=(4, 8, 16), decoder_channels=(8, 4)))


def images(d: int, n: int = 4, c: int = 1) -> torch.Tensor:
    return torch.rand(n, c, *([16] * d))


def backbone_grad_norm(model) -> float:
    return sum(float(p.grad.abs().sum()) for n, p in model.backbone.named_parameters() if p.grad is not None and n.startswith("encoder."))


def test_registered():
    assert get_method("simclr") is SimCLR


def test_encode_matches_forward_features():
    net = tiny_unet(2).eval()
    x = images(2)
    for a, b in zip(encode(net, x), net.forward_features(x).encoder):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("d", [2, 3])
def test_views_shape_range_and_crop_size(d):
    x = images(d, c=2)
    v1, v2 = two_views(x, SimCLRConfig())
    assert v1.shape == v2.shape == x.shape
    assert v1.min() >= 0 and v1.max() <= 1 and not torch.equal(v1, v2)
    v1, _ = two_views(x, SimCLRConfig(crop_size=(8,) * d))
    assert v1.shape == (4, 2, *([8] * d))


@pytest.mark.parametrize("d", [2, 3])
def test_one_training_step(d):
    model = SimCLR(tiny_unet(d), SimCLRConfig(proj_hidden=16, proj_dim=8))
    loss, logs = model.training_step(images(d))
    assert torch.isfinite(loss) and loss.item() > 0 and {"ntxent", "pos_cos"} <= set(logs)
    loss.backward()
    assert backbone_grad_norm(model) > 0


def test_batch_of_one_is_a_clear_error():
    from localdisc.errors import TrainingError

    with pytest.raises(TrainingError, match="at least 2 images"):
        SimCLR(tiny_unet(2)).training_step(images(2, n=1))


@pytest.mark.parametrize("norm", ["group", "instance"])
def test_head_norm_follows_backbone_and_is_per_sample(norm):
    """Per-sample head norm: a sample's projection does not depend on the rest of the batch, so
    DDP with any split of the batch equals one process (BatchNorm would not)."""
    net = UNet(UNetConfig(in_channels=1, encoder_channels=(4, 8), decoder_channels=(4,), norm=norm))
    model = SimCLR(net, SimCLRConfig(proj_hidden=16, proj_dim=4)).train()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    x = images(2)
    torch.testing.assert_close(model.project(x)[:2], model.project(x[:2]))
    bn = SimCLR(tiny_unet(2), SimCLRConfig(proj_hidden=16, proj_dim=4)).train()  # default norm "batch"
    assert isinstance(bn.proj_head[1], torch.nn.BatchNorm1d)
    assert not torch.allclose(bn.project(x)[:2], bn.project(x[:2]), atol=1e-4)
