"""DenseCL-style baseline: exact geometric correspondence, one training step in 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from localdisc.errors import ConfigError
from localdisc.methods import get_method
from localdisc.methods.densecl import DenseCL, DenseCLConfig, align, make_views
from localdisc.nets import UNet, UNetConfig


def tiny_unet(d: int, c: int = 1) -> UNet:
    return UNet(UNetConfig(spatial_dims=d, in_channels=c, encoder_channels=(4, 8, 16), decoder_channels=(8, 4)))


def images(d: int, n: int = 4, c: int = 1) -> torch.Tensor:
    return torch.rand(n, c, *([16] * d))


def backbone_grad_norm(model) -> float:
    return sum(float(p.grad.abs().sum()) for n, p in model.backbone.named_parameters() if p.grad is not None and n.startswith("encoder."))


NO_JITTER = dict(brightness=0.0, contrast=0.0, gamma=0.0, noise=0.0, blur_prob=0.0)


def test_registered():
    assert get_method("densecl") is DenseCL


@pytest.mark.parametrize("d", [2, 3])
def test_geometric_views_correspond_exactly(d):
    x = torch.rand(3, 2, *([8] * d))
    views = make_views(x, DenseCLConfig(**NO_JITTER))
    assert views.ops is not None
    torch.testing.assert_close(align(views.v2, views), views.v1, rtol=0, atol=0)


def test_feature_views_are_independent_crops():
    x = torch.rand(3, 1, 16, 16)
    views = make_views(x, DenseCLConfig(match="feature", **NO_JITTER))
    assert views.ops is None and not torch.allclose(views.v1, views.v2)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("opts", [{}, {"match": "feature", "dense_source": "encoder"}, {"same_image_negatives": True}])
def test_one_training_step(d, opts):
    model = DenseCL(tiny_unet(d), DenseCLConfig(proj_hidden=16, proj_dim=8, dense_hidden=16, dense_dim=8, grid=4, **opts))
    loss, logs = model.training_step(images(d))
    assert torch.isfinite(loss) and logs["dense"] > 0 and logs["global"] > 0
    loss.backward()
    assert backbone_grad_norm(model) > 0
    if opts.get("dense_source", "decoder") == "decoder":
        assert model.backbone.decoder[-1][0].weight.grad.abs().sum() > 0  # decoder trained too


def test_bad_options():
    with pytest.raises(ConfigError, match="match"):
        DenseCLConfig(match="nearest")
    with pytest.raises(ConfigError, match="dense_source"):
        DenseCLConfig(dense_source="head")
